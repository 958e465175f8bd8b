// Links frames into async stacks: for each frame, the frame that awaits it. Library adapters
// first (exact layouts), then the generic mutual-pointer rule for unknown task types. Every edge
// records the rule that found it.
#pragma once

#include <vector>

#include "userspace/model/snapshot_model.h"
#include "userspace/snapshot/frame_scanner.h"

namespace asyncprobe::snapshot {

struct StitchStats {
  size_t continuation_edges = 0;
  size_t asio_edges = 0;
  size_t folly_edges = 0;
  size_t generic_edges = 0;
  // Edges not counted (the awaited frame is then a root; each kind is counted in a warning):
  size_t torn_edges = 0;       // the two validation reads named different awaiters
  size_t misshapen_edges = 0;  // the awaiter had not started (at its initial suspend)
  size_t self_loops = 0;       // a frame named itself: kept as a cycle (uncertain)
};

// `frames` and `found` are parallel (decode_frame of each hit). Sets CoroFrame::awaiter and
// awaiter_rule. Reads frame memory through `read`; unreadable memory just yields no edge. A
// library-rule edge counts only when both validation reads of the promise name the same awaiter
// and the awaiter has started (a coroutine at its initial suspend awaits nothing); a frame that
// names itself keeps that edge, which the async stacks show as a cycle.
StitchStats stitch_awaiters(std::vector<model::CoroFrame>& frames,
                            const std::vector<FoundFrame>& found, const process::ReadMemory& read,
                            const process::ReadMemoryBatch& batch = {});

}  // namespace asyncprobe::snapshot
