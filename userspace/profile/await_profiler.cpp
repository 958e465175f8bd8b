#include "userspace/profile/await_profiler.h"

#include <vector>

namespace asyncprobe {

std::vector<bool> awaited_frames(const AsyncForest& forest) {
  std::vector<bool> awaited(forest.links.size(), false);
  for (const FrameLink& l : forest.links) {
    if (l.parent != kNoFrame) awaited[l.parent] = true;
  }
  return awaited;
}

bool uncertain_edge(const CoroFrame& c, const FrameLink& link) {
  return link.link == LinkKind::kDangling || link.link == LinkKind::kCycle ||
         (link.parent != kNoFrame && is_generic_rule(c.awaiter_rule));
}

void AwaitProfiler::add(const Snapshot& snap, int64_t weight_ns) {
  stats_.snapshots++;
  AsyncForest forest = build_async_forest(snap);
  const std::vector<bool> awaited = awaited_frames(forest);
  for (size_t i = 0; i < snap.frames.size(); ++i) {
    const CoroFrame& leaf = snap.frames[i];
    if (leaf.state != FrameState::kSuspended || awaited[i] || forest.links[i].duplicate) continue;
    std::vector<uint32_t> stack;  // leaf first
    bool uncertain = false;
    size_t at = i;
    for (size_t guard = 0; guard <= forest.max_depth && at != kNoFrame; ++guard) {
      const CoroFrame& c = snap.frames[at];
      const FrameLink& link = forest.links[at];
      if (uncertain_edge(c, link)) uncertain = true;
      stack.push_back(builder_.intern(async_frame(c)));
      at = link.parent;
    }
    stats_.leaves++;
    if (uncertain) stats_.uncertain++;
    if (leaf.suspend.line == 0) stats_.unplaced++;
    builder_.add(stack, 0, std::string(), leaf.address, leaf.function, uncertain, 1, weight_ns);
  }
}

}  // namespace asyncprobe
