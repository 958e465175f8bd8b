// Grouping of the frames the stuck check (stuck_check.h) marked stuck, by suspend point, for the
// reports' STUCK sections.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "userspace/model/snapshot_model.h"

namespace asyncprobe::snapshot {

// Stuck frames sharing one suspend point (function, kind, file:line; the raw index too when the
// line is unknown, so unplaced points stay apart).
struct StuckGroup {
  std::string function;
  model::SuspendPoint::Kind kind = model::SuspendPoint::Kind::kUnknown;
  std::string file;
  int line = 0;
  int64_t index = -1;
  std::vector<size_t> frames;       // indices into Snapshot::frames, ascending
  std::vector<size_t> leaf_frames;  // those awaiting no other frame: where a stuck stack waits
                                    // (the others enclose such a frame, unmoved because it is)
  double stuck_for_s = 0.0;         // smallest among the frames: the bound that holds for all
  double max_stuck_for_s = 0.0;     // largest among the frames

  size_t count() const { return frames.size(); }
  size_t leaves() const { return leaf_frames.size(); }
};

// Groups the frames marked stuck in `snap`: largest count first, then function, file, line.
std::vector<StuckGroup> group_stuck(const model::Snapshot& snap);

}  // namespace asyncprobe::snapshot
