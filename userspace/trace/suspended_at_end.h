// The coroutines of `asyncprobe trace` still suspended when the trace ended: the end snapshot's
// suspended frames, merged the way the snapshot merges its trees (one group per distinct async
// stack, with a count), each aged by what the trace saw: suspended since a run the trace saw end,
// or ran during the trace with its last suspension's start unknown, or already suspended at the
// start and never resumed, or created during the trace and never resumed.
//
// Memory and time are bounded per frame, whatever the await depth: an async stack is one walk up
// the snapshot's forest (shared by every frame of the chain), of at most kShownDepth entries, and
// only the innermost suspended coroutine of each chain starts one (its awaiters are in it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "userspace/model/snapshot_model.h"
#include "userspace/snapshot/async_stacks.h"
#include "userspace/trace/trace_model.h"

namespace asyncprobe::trace {

// One frame of an async stack as a report shows it.
struct AsyncStackEntry {
  std::string function;
  std::string file;  // suspend point (empty: unknown)
  int line = 0;
  std::string state;  // "running", "suspended", "done", "unknown"
  std::string rule;   // awaiter rule linking it to the entry before
};

// How long a coroutine suspended at the end has been suspended, as the trace knows it.
enum class SuspendedAge {
  kExact,        // resumed during the trace; suspended since the end of a run the trace saw
  kResumed,      // resumed during the trace; when its last suspension began is not known
  kBeforeTrace,  // suspended when the trace began and never resumed during it
  kNotStarted,   // created during the trace, never resumed
};
const char* to_string(SuspendedAge a);

// Innermost suspended coroutines with the same async stack (function and suspend point at every
// level, the same depth) and the same kind of age.
struct SuspendedGroup {
  SuspendedAge age = SuspendedAge::kBeforeTrace;
  size_t count = 0;
  // kExact: the earliest and latest start of the suspensions (CLOCK_MONOTONIC ns).
  uint64_t since_min_ts = 0, since_max_ts = 0;
  std::vector<uint64_t> frames;  // the innermost frames' addresses, the first kGroupFrames
  size_t depth = 0;              // coroutines in the stack, innermost to outermost
  std::vector<AsyncStackEntry> async_stack;  // innermost first, at most kShownDepth entries
  std::optional<AsyncStackEntry> outermost;  // when the stack is deeper than async_stack
};

struct SuspendedAtEnd {
  static constexpr size_t kShownDepth = 64;  // entries kept per async stack
  static constexpr size_t kGroupFrames = 8;  // frame addresses kept per group
  static constexpr size_t kMaxGroups = 1000;

  bool taken = false;                  // there was an end snapshot
  size_t coroutines = 0;               // suspended frames in it (not resumed while it was read)
  size_t stacks = 0;                   // innermost suspended coroutines: one async stack each
  size_t stacks_not_grouped = 0;       // stacks past kMaxGroups distinct ones, counted only
  bool interrupted = false;            // a stop signal ended the grouping early
  std::vector<SuspendedGroup> groups;  // before-trace first, then the oldest suspensions
};

struct SuspendedAtEndInput {
  const model::Snapshot* last = nullptr;
  const snapshot::AsyncForest* forest = nullptr;  // of *last
  const TraceModel* model = nullptr;
  // Frames of the first snapshot (address -> hash of the function name).
  const std::unordered_map<uint64_t, uint64_t>* at_start = nullptr;
  std::function<bool()> should_stop;  // polled every few thousand frames
};

// The hash kept per frame of the first snapshot.
uint64_t function_hash(const std::string& name);

SuspendedAtEnd group_suspended_at_end(const SuspendedAtEndInput& in);

}  // namespace asyncprobe::trace
