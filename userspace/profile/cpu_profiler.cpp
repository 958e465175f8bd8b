#include "userspace/profile/cpu_profiler.h"
#include "userspace/util/format.h"

#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "userspace/process/process_maps.h"
#include "userspace/profile/asio_pump.h"
#include "userspace/util/thread_cpu_clock.h"

namespace asyncprobe::profile {

namespace {

// Every word of sample `s` that can hold the frame address of the coroutine whose resume
// function is frames[k]: the interrupted registers, the callee-saved registers the CFI walk
// recovered for the frames up to it, and the stack from the interrupted sp up to its CFA (the
// caller's sp).
std::vector<uint64_t> frame_address_candidates(const CpuSample& s,
                                               const std::vector<process::UnwoundFrame>& frames,
                                               size_t k) {
  std::vector<uint64_t> words(s.regs.begin(), s.regs.end());
  for (size_t i = 0; i <= k; ++i) {
    words.insert(words.end(), std::begin(frames[i].callee_saved), std::end(frames[i].callee_saved));
  }
  const uint64_t cfa = k + 1 < frames.size() ? frames[k + 1].sp : frames[k].sp + 512;
  // Not below sp: the red zone copy may hold stale words of calls that already returned.
  const uint64_t sp = s.regs[7];
  if (cfa > sp && sp >= s.stack_addr) {
    const uint64_t span = std::min<uint64_t>(cfa - s.stack_addr, s.stack.size());
    for (uint64_t off = sp - s.stack_addr; off + 8 <= span; off += 8) {
      uint64_t w;
      std::memcpy(&w, s.stack.data() + off, 8);
      words.push_back(w);
    }
  }
  return words;
}

// The stack words of frames[k]'s own frame, [its sp, its caller's sp): where Asio's pump keeps
// its resume_context (asio_pump.h).
std::vector<uint64_t> own_frame_words(const CpuSample& s,
                                      const std::vector<process::UnwoundFrame>& frames, size_t k) {
  std::vector<uint64_t> words;
  const uint64_t lo = frames[k].sp;
  const uint64_t hi = k + 1 < frames.size() ? frames[k + 1].sp : lo + 512;
  if (lo < s.stack_addr || hi <= lo) return words;
  const uint64_t end = std::min<uint64_t>(hi - s.stack_addr, s.stack.size());
  for (uint64_t off = lo - s.stack_addr; off + 8 <= end; off += 8) {
    uint64_t w;
    std::memcpy(&w, s.stack.data() + off, 8);
    words.push_back(w);
  }
  return words;
}

constexpr size_t kMaxTimings = 100'000;

// The position in uf.functions (innermost first) of the outermost Asio pump function, or -1.
long pump_position(const process::UnwoundFrame& uf) {
  long at = -1;
  for (size_t j = 0; j < uf.functions.size(); ++j) {
    if (is_asio_pump(uf.functions[j].function)) at = static_cast<long>(j);
  }
  return at;
}

// uprobes step the probed instruction in slots of this size on the [uprobes] page
// (UPROBE_XOL_SLOT_BYTES, include/linux/uprobes.h), each slot starting on a multiple of it.
constexpr uint64_t kXolSlotBytes = 128;

constexpr size_t kMaxFrames = 128;

}  // namespace

CpuProfiler::CpuProfiler(model::Profile* profile, process::TraceUnwinder* unwinder,
                         RunningCoroutineFinder* finder, const process::KernelSymbols* kernel)
    : profile_(profile), builder_(profile), unwinder_(unwinder), finder_(finder), kernel_(kernel) {}

const std::string& CpuProfiler::thread_name(int tid) {
  auto it = thread_names_.find(tid);
  if (it != thread_names_.end()) return it->second;
  std::ifstream in("/proc/" + std::to_string(profile_->pid) + "/task/" + std::to_string(tid) +
                   "/comm");
  std::string name;
  std::getline(in, name);
  return thread_names_.emplace(tid, name).first->second;
}

void CpuProfiler::add_native(const process::UnwoundFrame& uf, model::ProfileFrame::Kind kind,
                             std::vector<uint32_t>* out) {
  if (uf.functions.empty()) {
    model::ProfileFrame f;
    f.kind = kind;
    // A pc in no mapped object is no function: never print it as if it were one (a heap address
    // shown as the root of a stack).
    f.function = uf.object.empty() ? "[outside mapped code]" : util::hex(uf.pc);
    f.object = uf.object;
    f.address = uf.pc;
    out->push_back(builder_.intern(f));
    return;
  }
  for (const symbolizer::InlineFrame& fn : uf.functions) {
    model::ProfileFrame f;
    f.kind = kind;
    f.function = fn.function.empty() ? util::hex(uf.pc) : fn.function;
    f.file = fn.location.file;
    f.line = fn.location.line;
    f.object = uf.object;
    f.address = uf.pc;
    f.inlined = fn.inlined;
    out->push_back(builder_.intern(f));
  }
}

bool CpuProfiler::trace_names(const CpuSample& s, const ResumeFunction& running) {
  if (trace_resume_.empty()) return false;
  const bool named = s.coro_frame != 0 && s.coro_fn < trace_resume_.size() &&
                     trace_resume_[s.coro_fn] == running.start;
  (named ? stats_.traced : stats_.trace_other)++;
  return named;
}

void CpuProfiler::add_kernel_frames(const CpuSample& s, std::vector<uint32_t>* stack) {
  for (const uint64_t a : s.kstack) {
    model::ProfileFrame f;
    f.kind = model::ProfileFrame::Kind::kKernel;
    std::string name = kernel_ != nullptr ? kernel_->name_at(a) : std::string();
    f.function = name.empty() ? util::hex(a) : name;
    f.address = a;
    stack->push_back(builder_.intern(f));
  }
}

CoroutineJoin CpuProfiler::join_running(const CpuSample& s, const ResumeFunction& running,
                                        const std::vector<process::UnwoundFrame>& frames,
                                        size_t k) {
  stats_.in_coroutine++;
  // profile --trace: the probes named the running frame; the words are the fallback.
  CoroutineJoin join = trace_names(s, running)
                           ? finder_->find(running, {s.coro_frame})
                           : finder_->find(running, frame_address_candidates(s, frames, k));
  switch (join.result) {
    case CoroutineJoin::Result::kJoined:
      stats_.joined++;
      if (join.uncertain) stats_.uncertain++;
      break;
    case CoroutineJoin::Result::kNotInSnapshot:
      stats_.not_in_snapshot++;
      break;
    case CoroutineJoin::Result::kAmbiguous:
      stats_.ambiguous++;
      break;
    case CoroutineJoin::Result::kNoCandidate:
      stats_.no_candidate++;
      break;
  }
  return join;
}

void CpuProfiler::add_coroutine_frames(const process::UnwoundFrame& uf,
                                       const ResumeFunction& running, const CoroutineJoin& join,
                                       std::vector<uint32_t>* stack) {
  // The resume function: its inlined callees stay native, the function itself is the coroutine
  // body, named as the coroutine (not "[clone .resume]") at the sampled line.
  model::ProfileFrame body;
  body.kind = model::ProfileFrame::Kind::kCoroutine;
  body.function = running.name;
  body.object = uf.object;
  body.address = uf.pc;
  for (const symbolizer::InlineFrame& fn : uf.functions) {
    if (fn.inlined) {
      model::ProfileFrame f;
      f.function = fn.function.empty() ? util::hex(uf.pc) : fn.function;
      f.file = fn.location.file;
      f.line = fn.location.line;
      f.object = uf.object;
      f.address = uf.pc;
      f.inlined = true;
      stack->push_back(builder_.intern(f));
    } else {
      body.file = fn.location.file;
      body.line = fn.location.line;
    }
  }
  stack->push_back(builder_.intern(body));
  for (const model::CoroFrame& p : join.parents) stack->push_back(builder_.intern(async_frame(p)));
}

void CpuProfiler::place_probed_pc(const CpuSample& s, std::array<uint64_t, 17>* regs) {
  if (trace_resume_.empty() || s.coro_frame == 0 || s.coro_fn >= trace_resume_.size()) return;
  const uint64_t entry = trace_resume_[s.coro_fn];
  uint64_t& pc = (*regs)[16];
  if (pc == entry + 1) {  // stopped at the breakpoint (int3 is one byte): not executed yet
    pc = entry;
    stats_.in_uprobe++;
    return;
  }
  if (!xol_known_) {
    xol_known_ = true;
    process::MapsParseResult maps;
    if (process::read_maps_file("/proc/" + std::to_string(profile_->pid) + "/maps", &maps) == 0) {
      for (const process::Mapping& m : maps.mappings) {
        if (m.path == "[uprobes]") xol_start_ = m.start, xol_end_ = m.end;
      }
    }
  }
  if (pc < xol_start_ || pc >= xol_end_) return;
  // The probes name the run they just started, so the slot steps that function's first
  // instruction; its offset in the slot is 0 before the step and the instruction's length after.
  pc = entry + (pc - xol_start_) % kXolSlotBytes;
  stats_.in_uprobe++;
}

std::vector<uint64_t> CpuProfiler::after_suspend_arguments(
    const CpuSample& s, const std::vector<process::UnwoundFrame>& frames, size_t k) {
  // resume()'s resume_context {after_suspend_fn_, after_suspend_arg_} sits in the pump's frame
  // and the pump has called after_suspend_fn_ (frames[k - 1]). The call site names the slot
  // it loaded the argument from; older contexts of other pumps may linger in other slots.
  std::vector<uint64_t> args;
  if (k == 0) return args;
  const uint64_t ret = frames[k].pc;
  auto cached = arg_slot_.find(ret);
  if (cached == arg_slot_.end()) {
    uint8_t code[10] = {};
    std::optional<uint32_t> slot;
    if (ret > sizeof code && finder_->read_target(ret - sizeof code, code, sizeof code)) {
      slot = after_suspend_arg_slot(code, sizeof code);
    }
    cached = arg_slot_.emplace(ret, slot).first;
  }
  if (cached->second) {
    const uint64_t at = frames[k].sp + *cached->second;
    if (at >= s.stack_addr && at + 8 <= s.stack_addr + s.stack.size()) {
      uint64_t w;
      std::memcpy(&w, s.stack.data() + (at - s.stack_addr), 8);
      args.push_back(w);
    }
    return args;
  }
  // Other code: the pair whose first word is the entry of the function the pump called.
  if (frames[k - 1].functions.empty()) return args;
  const std::string& callee = frames[k - 1].functions.back().function;
  const std::vector<uint64_t> words = own_frame_words(s, frames, k);
  for (size_t i = 0; i + 1 < words.size(); ++i) {
    if (words[i] == 0) continue;
    const process::UnwoundFrame at = unwinder_->describe(words[i], false);
    if (!at.object.empty() && !at.functions.empty() && at.functions.back().function == callee) {
      args.push_back(words[i + 1]);
    }
  }
  return args;
}

CoroutineJoin CpuProfiler::join_pumped(const CpuSample& s,
                                       const std::vector<process::UnwoundFrame>& frames, size_t k) {
  stats_.in_pump++;
  CoroutineJoin join = finder_->find_pumped(after_suspend_arguments(s, frames, k));
  if (join.result == CoroutineJoin::Result::kJoined) {
    stats_.pump_joined++;
    if (join.uncertain) stats_.uncertain++;
  } else {
    stats_.pump_unmatched++;
  }
  return join;
}

void CpuProfiler::add_pump_frames(const process::UnwoundFrame& uf, const CoroutineJoin& join,
                                  std::vector<uint32_t>* stack) {
  process::UnwoundFrame inner = uf;
  process::UnwoundFrame outer = uf;
  const auto split = uf.functions.begin() + pump_position(uf) + 1;
  inner.functions.assign(uf.functions.begin(), split);
  outer.functions.assign(split, uf.functions.end());
  add_native(inner, model::ProfileFrame::Kind::kNative, stack);
  for (const model::CoroFrame& p : join.parents) stack->push_back(builder_.intern(async_frame(p)));
  if (!outer.functions.empty()) add_native(outer, model::ProfileFrame::Kind::kNative, stack);
}

void CpuProfiler::add(const CpuSample& s) {
  stats_.samples++;
  const double t0 = util::thread_cpu_seconds();
  std::array<uint64_t, 17> regs = s.regs;
  place_probed_pc(s, &regs);
  std::vector<process::UnwoundFrame> frames =
      unwinder_->unwind(regs.data(), s.stack_addr, s.stack.data(), s.stack.size(), kMaxFrames);
  if (stats_.unwind_cpu_us.size() < kMaxTimings) {
    stats_.unwind_cpu_us.push_back(static_cast<float>((util::thread_cpu_seconds() - t0) * 1e6));
  }
  if (frames.size() <= 1) stats_.unwind_one_frame++;
  // A return address in no mapped object: the walk computed a wrong CFA; what follows is noise.
  for (size_t i = 1; i < frames.size(); ++i) {
    if (frames[i].object.empty() && frames[i].functions.empty()) {
      frames.resize(i);
      stats_.unwind_left_code++;
      break;
    }
  }

  std::vector<uint32_t> stack;   // leaf first
  add_kernel_frames(s, &stack);  // kernel frames sit below (leafward of) the user stack

  // The innermost resume function on the stack: the coroutine this thread was running.
  size_t k = frames.size();
  const ResumeFunction* running = nullptr;
  for (size_t i = 0; i < frames.size() && running == nullptr; ++i) {
    const uint64_t pc = i == 0 ? frames[i].pc : frames[i].pc - 1;
    running = finder_->resume_function_at(pc);
    if (running != nullptr) k = i;
  }
  CoroutineJoin join;
  if (running != nullptr) join = join_running(s, *running, frames, k);
  // No coroutine on the thread: Asio may be pumping work for one that just suspended.
  size_t pump = frames.size();
  for (size_t i = 0; i < frames.size() && running == nullptr; ++i) {
    if (pump_position(frames[i]) >= 0) {
      pump = i;
      join = join_pumped(s, frames, i);
      break;
    }
  }

  for (size_t i = 0; i < frames.size(); ++i) {
    if (i == k && running != nullptr) {
      add_coroutine_frames(frames[i], *running, join, &stack);
    } else if (i == pump) {
      add_pump_frames(frames[i], join, &stack);
    } else {
      add_native(frames[i], model::ProfileFrame::Kind::kNative, &stack);
    }
  }

  const int tid = static_cast<int>(s.tid);
  const bool uncertain = join.result == CoroutineJoin::Result::kJoined && join.uncertain;
  std::string coroutine_function;
  if (running != nullptr) {
    coroutine_function = running->name;
  } else if (join.pumped && !join.parents.empty()) {
    coroutine_function = join.parents.front().function;
  }
  builder_.add(stack, tid, thread_name(tid), join.frame, coroutine_function, uncertain, 1,
               profile_->period_ns);
}

}  // namespace asyncprobe::profile
