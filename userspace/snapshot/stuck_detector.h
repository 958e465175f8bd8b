// Stuck detection from two snapshots of one process: a frame that sits at the same address with
// the same header and the same suspend index after `window` seconds has not moved (as far as
// memory can tell), so it has been suspended there for at least `window`. Without tracing, a
// coroutine that resumed and re-suspended at the same point in between looks the same: the mark
// is "did not move", and the reports say so.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "userspace/model/snapshot_model.h"

namespace asyncprobe::snapshot {

// Marks frames of `after` that match a frame of `before` (address, resume_fn, destroy_fn, state and
// suspend index; the index must be known unless the frame is done) as stuck. stuck_for_s becomes
// window_s, plus the matching frame's stuck_for_s when `before` was itself marked, so repeated
// snapshots (watch mode) accumulate a growing lower bound. Clears earlier marks in `after`, sets
// after.window_seconds. A window that is not a positive finite number, or snapshots of different
// pids, mark nothing (window_seconds becomes 0 for a bad window). Returns the number marked.
size_t mark_stuck(const model::Snapshot& before, model::Snapshot& after, double window_s);

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
