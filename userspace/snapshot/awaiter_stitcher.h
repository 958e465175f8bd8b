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
};

// `frames` and `found` are parallel (decode_frame of each hit). Sets CoroFrame::awaiter and
// awaiter_rule. Reads frame memory through `read`; unreadable memory just yields no edge.
StitchStats stitch_awaiters(std::vector<model::CoroFrame>& frames,
                            const std::vector<FoundFrame>& found, const process::ReadMemory& read,
                            const process::ReadMemoryBatch& batch = {});

}  // namespace asyncprobe::snapshot
