// Links frames into async stacks: for each frame, the frame that awaits it. Library adapters
// first (exact layouts), then the generic mutual-pointer rule for unknown task types, then the
// weaker rules for what is still a root (via-heap-object, held-by-frame: coro/awaiter_rules.h).
// Every edge records the rule that found it.
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
  size_t via_heap_edges = 0;
  size_t held_by_edges = 0;
  // Edges not counted (the awaited frame is then a root; each kind is counted in a warning):
  size_t torn_edges = 0;       // the two validation reads named different awaiters
  size_t misshapen_edges = 0;  // the awaiter had not started (at its initial suspend)
  size_t self_loops = 0;       // a frame named itself: kept as a cycle (uncertain)
};

// Memory that may hold heap objects (writable, not a thread stack), as sorted [start, end)
// ranges: the via-heap-object rule follows a root's pointers only into these.
using HeapRanges = std::vector<std::pair<uint64_t, uint64_t>>;

// `frames` and `found` are parallel (decode_frame of each hit). Sets CoroFrame::awaiter and
// awaiter_rule. Reads frame memory through `read`; unreadable memory just yields no edge. A
// library-rule edge counts only when both validation reads of the promise name the same awaiter
// and the awaiter has started (a coroutine at its initial suspend awaits nothing); a frame that
// names itself keeps that edge, which the async stacks show as a cycle.
StitchStats stitch_awaiters(std::vector<model::CoroFrame>& frames,
                            const std::vector<FoundFrame>& found, const process::ReadMemory& read,
                            const process::ReadMemoryBatch& batch = {},
                            const HeapRanges& heap = {});

}  // namespace asyncprobe::snapshot
