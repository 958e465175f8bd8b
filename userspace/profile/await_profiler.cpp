#include "userspace/profile/await_profiler.h"

#include <vector>

namespace asyncprobe::profile {

std::vector<bool> awaited_frames(const snapshot::AsyncForest& forest) {
  std::vector<bool> awaited(forest.links.size(), false);
  for (const snapshot::FrameLink& l : forest.links) {
    if (l.parent != snapshot::kNoFrame) awaited[l.parent] = true;
  }
  return awaited;
}

bool uncertain_edge(const model::CoroFrame& c, const snapshot::FrameLink& link) {
  return link.link == snapshot::LinkKind::kDangling || link.link == snapshot::LinkKind::kCycle ||
         (link.parent != snapshot::kNoFrame && coro::is_generic(c.awaiter_rule));
}

void AwaitProfiler::add(const model::Snapshot& snap, int64_t weight_ns) {
  stats_.snapshots++;
  snapshot::AsyncForest forest = snapshot::build_async_forest(snap);
  const std::vector<bool> awaited = awaited_frames(forest);
  for (size_t i = 0; i < snap.frames.size(); ++i) {
    const model::CoroFrame& leaf = snap.frames[i];
    if (leaf.state != model::FrameState::kSuspended || awaited[i] || forest.links[i].duplicate)
      continue;
    std::vector<uint32_t> stack;  // leaf first
    bool uncertain = false;
    size_t at = i;
    for (size_t guard = 0; guard <= forest.max_depth && at != snapshot::kNoFrame; ++guard) {
      const model::CoroFrame& c = snap.frames[at];
      const snapshot::FrameLink& link = forest.links[at];
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

}  // namespace asyncprobe::profile
