#include "userspace/snapshot/running_coroutines.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace asyncprobe::snapshot {

namespace {

constexpr size_t kMaxNativeFrames = 64;
// Of the resume function's own stack frame, the words looked at (its locals and spills).
constexpr uint64_t kMaxResumeFrameBytes = uint64_t{16} * 1024;
// When the walk stopped at the resume function, how far above its sp to look.
constexpr uint64_t kLastFrameBytes = 512;

model::NativeFrame native_frame(const process::UnwoundFrame& f) {
  model::NativeFrame nf;
  nf.pc = f.pc;
  if (!f.functions.empty()) {
    nf.function = f.functions.front().function;
    nf.file = f.functions.front().location.file;
    nf.line = f.functions.front().location.line;
  }
  return nf;
}

// The innermost frame inside a coroutine's resume function. Frame 0 is the interrupted pc;
// every other pc is a return address, looked up one byte back (in the call instruction).
struct ResumeActivation {
  size_t index = 0;
  const ResumeFunction* fn = nullptr;
};

std::optional<ResumeActivation> innermost_resume(const std::vector<process::UnwoundFrame>& frames,
                                                 const ResumeFunctionTable& functions) {
  for (size_t k = 0; k < frames.size(); ++k) {
    const uint64_t pc = k == 0 ? frames[k].pc : frames[k].pc - 1;
    if (const ResumeFunction* fn = functions.at(pc)) return ResumeActivation{k, fn};
  }
  return std::nullopt;
}

// Words the activation holds that could be the address of the frame it resumed: the
// callee-saved registers its callees saved for it, and every word of its own stack frame
// [its sp, its caller's sp).
std::set<uint64_t> activation_words(const std::vector<process::UnwoundFrame>& frames, size_t k,
                                    uint64_t stack_base, const std::vector<uint8_t>& stack) {
  std::set<uint64_t> words;
  for (uint64_t r : frames[k].callee_saved) {
    if (r != 0) words.insert(r);
  }
  const uint64_t lo = frames[k].sp;
  uint64_t hi =
      k + 1 < frames.size() && frames[k + 1].sp > lo ? frames[k + 1].sp : lo + kLastFrameBytes;
  hi = std::min(hi, lo + kMaxResumeFrameBytes);
  const uint64_t stack_end = stack_base + stack.size();
  for (uint64_t a = lo & ~uint64_t{7}; a >= stack_base && a + 8 <= std::min(hi, stack_end);
       a += 8) {
    uint64_t w = 0;
    std::memcpy(&w, stack.data() + (a - stack_base), sizeof w);
    if (w != 0) words.insert(w);
  }
  return words;
}

// Where in the coroutine body the activation is: the line of the physical function (the last
// inline frame) at the return address, i.e. the call site of what blocks.
std::pair<std::string, int> body_location(const process::UnwoundFrame& f) {
  if (f.functions.empty()) return {"", 0};
  const symbolizer::SourceLine& l = f.functions.back().location;
  return {l.file, l.line};
}

void mark_joined(model::CoroFrame& f, model::RunningOn on) {
  f.state = model::FrameState::kRunning;
  f.running = std::move(on);
  // It was resumed (it is executing): neither stuck nor merely unchanged.
  f.stuck = false;
  f.stuck_for_s = 0;
  f.unchanged = false;
  f.unchanged_for_s = 0;
  f.stuck_evidence = model::StuckEvidence::kRunning;
}

void mark_candidate(model::CoroFrame& f, model::RunningOn on) {
  on.uncertain = true;
  f.running = std::move(on);
  // It may be the one executing: "stuck" would be a claim we cannot make.
  if (f.stuck) {
    f.unchanged = true;
    f.unchanged_for_s = std::max(f.unchanged_for_s, f.stuck_for_s);
    f.stuck = false;
    f.stuck_for_s = 0;
    f.stuck_evidence = model::StuckEvidence::kMaybeRunning;
  }
}

// Joins the activation of fn on thread t to one of fn's frames (see the header).
bool join_thread(model::Snapshot& snap, model::ThreadInfo& t, const ResumeFunction& fn,
                 const std::set<uint64_t>& words, model::RunningOn on) {
  std::vector<size_t> matches, all;
  for (size_t i = 0; i < snap.frames.size(); ++i) {
    const model::CoroFrame& f = snap.frames[i];
    if (f.resume_fn != fn.start) continue;
    all.push_back(i);
    if (words.count(f.address) != 0) matches.push_back(i);
  }
  on.rule = "frame-address";
  if (matches.empty()) {
    // The address lives only in a register nobody saved (registers at a syscall cannot be read
    // without a stop): every live frame of fn is a candidate, and a lone one is the running one.
    matches = all;
    on.rule = "only-frame";
  }
  if (matches.size() == 1) {
    t.running_frame = static_cast<int64_t>(matches.front());
    mark_joined(snap.frames[matches.front()], std::move(on));
    return true;
  }
  t.running_candidates = matches;
  for (size_t i : matches) mark_candidate(snap.frames[i], on);
  return false;
}

}  // namespace

RunningScan mark_running_coroutines(model::Snapshot& snap, const ResumeFunctionTable& functions,
                                    process::TraceUnwinder& unwinder,
                                    const process::ReadMemory& read) {
  RunningScan scan;
  if (!unwinder.ok()) return scan;
  for (model::ThreadInfo& t : snap.threads) {
    if (t.sp == 0 || t.pc == 0) continue;
    std::vector<uint8_t> stack;
    const std::vector<process::UnwoundFrame> frames =
        unwinder.unwind_blocked(t.sp, t.pc, t.stack_hi, read, kMaxNativeFrames, &stack);
    if (frames.empty()) continue;
    ++scan.threads_unwound;
    t.native_stack.clear();
    for (const process::UnwoundFrame& f : frames) t.native_stack.push_back(native_frame(f));
    if (functions.empty()) continue;
    const std::optional<ResumeActivation> act = innermost_resume(frames, functions);
    if (!act) continue;
    ++scan.in_coroutine;
    t.running_function = act->fn->name;
    t.resume_native_frame = static_cast<int64_t>(act->index);
    // The resume function's frame is named by the function itself at the line in its body, not
    // by what is inlined there (std::mutex::lock): that is the frame the stack leads down to.
    const process::UnwoundFrame& rf = frames[act->index];
    if (!rf.functions.empty()) {
      model::NativeFrame& nf = t.native_stack[act->index];
      nf.function = rf.functions.back().function;
      std::tie(nf.file, nf.line) = body_location(rf);
    }
    model::RunningOn on;
    on.thread = t.tid;
    on.syscall = t.syscall;
    std::tie(on.file, on.line) = body_location(frames[act->index]);
    const std::set<uint64_t> words = activation_words(frames, act->index, t.sp, stack);
    if (join_thread(snap, t, *act->fn, words, std::move(on))) {
      ++scan.joined;
    } else if (!t.running_candidates.empty()) {
      ++scan.uncertain;
    }
  }
  return scan;
}

}  // namespace asyncprobe::snapshot
