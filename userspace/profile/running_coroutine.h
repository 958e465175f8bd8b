// Finds which coroutine a CPU sample was running, and its async parents, from the sample alone
// plus snapshots (docs/PROFILE.md, "Finding the running coroutine"): the unwound stack holds
// the resume function of coroutine C; C's frame address (the resume function's first argument)
// survives in a callee-saved register or a stack slot, so every register and stack word of the
// sample is a candidate; a candidate is C's frame when a snapshot knows a live frame of C at
// that address and the target's memory still holds C's header there. The async parents are the
// snapshot's awaiter chain above that frame.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "userspace/model/snapshot_model.h"
#include "userspace/process/memory_reader.h"
#include "userspace/snapshot/async_stacks.h"
#include "userspace/snapshot/coroutine_index.h"
#include "userspace/snapshot/resume_functions.h"
#include "userspace/snapshot/snapshot_taker.h"

namespace asyncprobe::profile {

using ResumeFunction = snapshot::ResumeFunction;

struct CoroutineJoin {
  enum class Result {
    kJoined,         // exactly one live frame of the coroutine among the candidates
    kNoCandidate,    // no register or stack word is the address of a live frame of it
    kAmbiguous,      // several are: which one runs is unknown
    kNotInSnapshot,  // one live frame, but no snapshot has seen it (parents unknown)
  };
  Result result = Result::kNoCandidate;
  uint64_t frame = 0;                     // the running coroutine's frame address (kJoined,
                                          // kNotInSnapshot)
  std::vector<model::CoroFrame> parents;  // awaiting coroutines, nearest first (kJoined)
  bool uncertain = false;  // an edge of the chain rests on a guess (generic rule, cycle,
                           // dangling awaiter)
  // find_pumped(): parents[0] is the suspended coroutine itself (the one Asio's pump works for),
  // its awaiters follow.
  bool pumped = false;
};

struct RunningCoroutineStats {
  uint64_t snapshots = 0;          // snapshots taken (start + refreshes)
  double snapshot_seconds = 0;     // CPU time spent taking them
  uint64_t refreshes_skipped = 0;  // refreshes a sample wanted but the rate limit refused
  uint64_t header_reads = 0;       // frame headers read from the target
  double join_seconds = 0;         // CPU time spent in find() outside snapshots
};

class RunningCoroutineFinder {
 public:
  // `taker` must be attached. min_refresh_s: the least time between two snapshots taken because
  // a sample named a frame no snapshot had seen (raised to 20x the last snapshot's CPU time).
  RunningCoroutineFinder(snapshot::SnapshotTaker* taker, process::MemoryReader* memory,
                         double min_refresh_s);

  // Takes a snapshot now. false with *error when the target could not be read.
  bool refresh(snapshot::SnapshotError* error);
  const model::Snapshot& snapshot() const { return snap_; }

  // The coroutine whose resume function holds `pc` (an address inside the code, not a return
  // address), or nullptr.
  const ResumeFunction* resume_function_at(uint64_t pc) const;

  // Which frame of `fn` is running, given every word the sample holds that could be its
  // address (registers, recovered callee-saved registers, stack words).
  CoroutineJoin find(const ResumeFunction& fn, std::vector<uint64_t> candidates);

  // Which suspended coroutine Boost.Asio's pump is working for (asio_pump.h), from the
  // after_suspend arguments found in the pump's frame: each points at the awaiter object inside
  // the suspended coroutine's frame (use_awaitable's `result`, a deferred operation's
  // `awaitable_async_op`), and that object holds the same frame's promise pointer (`this_` /
  // `frame_`). The frame is read from memory now (Asio reuses frame addresses for the next
  // operation, so a snapshot rarely knows it); its awaiters are the snapshot's chain above the
  // frame its promise names (refreshed, rate-limited, when the snapshot has not seen that one).
  CoroutineJoin find_pumped(const std::vector<uint64_t>& args);

  // Reads the target's memory (code bytes for the pump's call site); false when unreadable.
  bool read_target(uint64_t addr, void* out, size_t len);

  const RunningCoroutineStats& stats() const { return stats_; }

 private:
  // The live frame of a known coroutine that holds the awaiter object at `object` and whose
  // promise one of the object's first words points at; decoded now. nullopt when none.
  std::optional<model::CoroFrame> frame_holding(uint64_t object, uint64_t* promise_words);
  // A frame the snapshot knows, by address, not finished; kNoFrame otherwise.
  size_t live_in_snapshot(uint64_t address) const;
  void index_snapshot();
  bool header_is(uint64_t addr, const ResumeFunction& fn);
  CoroutineJoin join_at(size_t frame_index);
  // Candidates whose frame header (read now) is one of fn's: live frames no snapshot has seen.
  std::vector<uint64_t> live_frames(const ResumeFunction& fn,
                                    const std::vector<uint64_t>& candidates);
  // Joins the live frame `frame` after a fresh snapshot, when the rate limit allows one; the
  // CPU time of that snapshot goes to *in_snapshots.
  CoroutineJoin join_unseen(const ResumeFunction& fn, uint64_t frame, double* in_snapshots);

  snapshot::SnapshotTaker* taker_;
  process::MemoryReader* memory_;
  double min_refresh_s_;
  double last_refresh_ = -1e18;     // monotonic seconds
  double last_snapshot_cpu_s_ = 0;  // CPU time of the last snapshot
  snapshot::ResumeFunctionTable functions_;
  model::Snapshot snap_;
  snapshot::AsyncForest forest_;
  std::unordered_map<uint64_t, size_t> by_address_;  // frame address -> first frame index
  RunningCoroutineStats stats_;
};

}  // namespace asyncprobe::profile
