#include "userspace/profile/cpu_profiler.h"
#include "userspace/util/format.h"

#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>

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

constexpr size_t kMaxTimings = 100'000;

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
    f.function = util::hex(uf.pc);
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

void CpuProfiler::add(const CpuSample& s) {
  stats_.samples++;
  const double t0 = util::thread_cpu_seconds();
  std::vector<process::UnwoundFrame> frames =
      unwinder_->unwind(s.regs.data(), s.stack_addr, s.stack.data(), s.stack.size(), kMaxFrames);
  if (stats_.unwind_cpu_us.size() < kMaxTimings) {
    stats_.unwind_cpu_us.push_back(static_cast<float>((util::thread_cpu_seconds() - t0) * 1e6));
  }
  if (frames.size() <= 1) stats_.unwind_one_frame++;

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

  for (size_t i = 0; i < frames.size(); ++i) {
    if (i == k) {
      add_coroutine_frames(frames[i], *running, join, &stack);
    } else {
      add_native(frames[i], model::ProfileFrame::Kind::kNative, &stack);
    }
  }

  const int tid = static_cast<int>(s.tid);
  const bool uncertain = join.result == CoroutineJoin::Result::kJoined && join.uncertain;
  builder_.add(stack, tid, thread_name(tid), join.frame,
               running != nullptr ? running->name : std::string(), uncertain, 1,
               profile_->period_ns);
}

}  // namespace asyncprobe::profile
