// The await profile (`asyncprobe profile --await`): where coroutines wait. Fed with periodic
// snapshots; every async stack's innermost suspended coroutine (the leaf: a coroutine nothing
// else in the process awaits) adds the time since the previous snapshot to the stack root..leaf,
// the leaf frame being its suspend point (function file:line). Parents are not counted on their
// own: their wait is the leaf's wait, and counting both would double it in a flame graph.
#pragma once

#include <cstdint>
#include <vector>

#include "userspace/model/profile_model.h"
#include "userspace/model/snapshot_model.h"
#include "userspace/profile/profile_builder.h"
#include "userspace/snapshot/async_stacks.h"

namespace asyncprobe::profile {

struct AwaitProfileStats {
  uint64_t snapshots = 0;
  uint64_t leaves = 0;     // leaf observations added
  uint64_t uncertain = 0;  // ... whose stack has a guessed edge
  uint64_t unplaced = 0;   // ... whose suspend point has no line
};

// For every frame of a snapshot's forest: whether another frame hangs under it (it awaits a
// coroutine, so its waiting is that coroutine's).
std::vector<bool> awaited_frames(const snapshot::AsyncForest& forest);
// Whether the edge from frame `c` to its parent is a guess (a generic rule, a dangling awaiter,
// a cut cycle).
bool uncertain_edge(const model::CoroFrame& c, const snapshot::FrameLink& link);

class AwaitProfiler {
 public:
  explicit AwaitProfiler(model::Profile* profile) : builder_(profile) {}
  // One snapshot standing for `weight_ns` of wall time.
  void add(const model::Snapshot& snap, int64_t weight_ns);
  const AwaitProfileStats& stats() const { return stats_; }

 private:
  ProfileBuilder builder_;
  AwaitProfileStats stats_;
};

}  // namespace asyncprobe::profile
