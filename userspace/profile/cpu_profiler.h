// Turns the CPU samples of `asyncprobe profile` (registers + user stack copy, optional kernel
// stack; cpu_sample.h) into symbolized stacks: DWARF CFI unwinding (TraceUnwinder), inlined frames,
// and the running coroutine's async parents joined above its resume frame (RunningCoroutineFinder).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "userspace/model/profile_model.h"
#include "userspace/process/kernel_symbols.h"
#include "userspace/process/stack_unwind.h"
#include "userspace/profile/cpu_sample.h"
#include "userspace/profile/profile_builder.h"
#include "userspace/profile/running_coroutine.h"

namespace asyncprobe::profile {

// What happened to the samples, for the profile's warnings and docs/PROFILE.md's figures.
struct CpuProfileStats {
  uint64_t samples = 0;
  uint64_t in_coroutine = 0;      // a resume function was on the unwound stack
  uint64_t joined = 0;            // ... and its async parents were joined
  uint64_t not_in_snapshot = 0;   // ... its frame was live but no snapshot had it
  uint64_t ambiguous = 0;         // ... several live frames of it among the words
  uint64_t no_candidate = 0;      // ... no word was a live frame of it
  uint64_t uncertain = 0;         // joined through a guessed edge
  uint64_t unwind_one_frame = 0;  // the walk stopped at the interrupted pc
  uint64_t traced = 0;            // in a coroutine, frame named by the trace probes (--trace)
  uint64_t trace_other = 0;       // ... the probes named no run of it: found from the stack
  // Boost.Asio: no resume function on the stack, but Asio's pump (asio_pump.h) working for a
  // suspended coroutine.
  uint64_t in_pump = 0;
  uint64_t pump_joined = 0;     // ... joined to the coroutine it works for (and its awaiters)
  uint64_t pump_unmatched = 0;  // ... its words pointed at no live frame, or not at one chain
  // The walk ended at a return address outside every mapped object (a wrong CFA): cut there.
  uint64_t unwind_left_code = 0;
  uint64_t in_uprobe = 0;  // --trace: sampled in a probe's out-of-line step, placed at the entry
  // CPU time of this thread per walk (unwinding + symbolizing). The first walks through an
  // object load its CFI and DWARF: the median is the steady cost.
  std::vector<float> unwind_cpu_us;
};

class CpuProfiler {
 public:
  CpuProfiler(model::Profile* profile, process::TraceUnwinder* unwinder,
              RunningCoroutineFinder* finder, const process::KernelSymbols* kernel);
  void add(const CpuSample& s);
  // profile --trace: samples name the running frame and its trace function id; `resume_starts`
  // maps that id to the function's resume address.
  void use_trace(std::vector<uint64_t> resume_starts) { trace_resume_ = std::move(resume_starts); }
  const CpuProfileStats& stats() const { return stats_; }

 private:
  void add_native(const process::UnwoundFrame& uf, model::ProfileFrame::Kind kind,
                  std::vector<uint32_t>* out);
  const std::string& thread_name(int tid);
  bool trace_names(const CpuSample& s, const ResumeFunction& running);
  // The parts of add(): kernel frames, the running coroutine's join (counted in stats_), and
  // its body frame with the inlined callees and the async parents above it.
  void add_kernel_frames(const CpuSample& s, std::vector<uint32_t>* stack);
  CoroutineJoin join_running(const CpuSample& s, const ResumeFunction& running,
                             const std::vector<process::UnwoundFrame>& frames, size_t k);
  void add_coroutine_frames(const process::UnwoundFrame& uf, const ResumeFunction& running,
                            const CoroutineJoin& join, std::vector<uint32_t>* stack);
  // Asio's pump frame (physical frame uf): its inlined functions up to the pump, the suspended
  // coroutine it works for and that one's awaiters, then the rest of its inlined functions.
  void add_pump_frames(const process::UnwoundFrame& uf, const CoroutineJoin& join,
                       std::vector<uint32_t>* stack);
  std::vector<uint64_t> after_suspend_arguments(const CpuSample& s,
                                                const std::vector<process::UnwoundFrame>& frames,
                                                size_t k);
  CoroutineJoin join_pumped(const CpuSample& s, const std::vector<process::UnwoundFrame>& frames,
                            size_t k);
  // --trace: a sample taken while a probe steps the probed function's first instruction out of
  // line ([uprobes] page) or at its breakpoint is placed at that function's entry.
  void place_probed_pc(const CpuSample& s, std::array<uint64_t, 17>* regs);

  model::Profile* profile_;
  ProfileBuilder builder_;
  process::TraceUnwinder* unwinder_;
  RunningCoroutineFinder* finder_;
  const process::KernelSymbols* kernel_;
  std::map<int, std::string> thread_names_;
  CpuProfileStats stats_;
  std::vector<uint64_t> trace_resume_;
  // The target's [uprobes] page ([start, end)), read from its maps on first need; end 0: none.
  // Asio pump call sites (return address) -> the stack slot of the after_suspend argument.
  std::unordered_map<uint64_t, std::optional<uint32_t>> arg_slot_;
  bool xol_known_ = false;
  uint64_t xol_start_ = 0, xol_end_ = 0;
};

}  // namespace asyncprobe::profile
