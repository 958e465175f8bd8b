#include "userspace/snapshot/stuck_detector.h"

#include <algorithm>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

namespace asyncprobe::snapshot {

namespace {

using GroupKey = std::tuple<const std::string&, const std::string&, int, int, int64_t>;

GroupKey group_key(const model::CoroFrame& f) {
  return GroupKey(f.function, f.suspend.file, f.suspend.line, static_cast<int>(f.suspend.kind),
                  f.suspend.line == 0 ? f.suspend.index : -2);
}

}  // namespace

std::vector<StuckGroup> group_stuck(const model::Snapshot& snap) {
  // A frame that another frame names as its awaiter is awaiting that one, so it is not a leaf.
  std::unordered_set<uint64_t> awaiting;
  for (const model::CoroFrame& f : snap.frames) {
    if (f.awaiter != 0 && f.awaiter != f.address) awaiting.insert(f.awaiter);
  }
  std::vector<size_t> stuck;
  for (size_t i = 0; i < snap.frames.size(); ++i) {
    if (snap.frames[i].stuck) stuck.push_back(i);
  }
  std::sort(stuck.begin(), stuck.end(), [&](size_t a, size_t b) {
    const GroupKey ka = group_key(snap.frames[a]);
    const GroupKey kb = group_key(snap.frames[b]);
    if (ka != kb) return ka < kb;
    return a < b;
  });
  std::vector<StuckGroup> groups;
  for (size_t i = 0; i < stuck.size();) {
    const model::CoroFrame& f = snap.frames[stuck[i]];
    StuckGroup g;
    g.function = f.function;
    g.kind = f.suspend.kind;
    g.file = f.suspend.file;
    g.line = f.suspend.line;
    g.index = f.suspend.index;
    g.stuck_for_s = f.stuck_for_s;
    g.max_stuck_for_s = f.stuck_for_s;
    size_t j = i;
    for (; j < stuck.size() && group_key(snap.frames[stuck[j]]) == group_key(f); ++j) {
      const double s = snap.frames[stuck[j]].stuck_for_s;
      g.frames.push_back(stuck[j]);
      if (awaiting.count(snap.frames[stuck[j]].address) == 0) g.leaf_frames.push_back(stuck[j]);
      g.stuck_for_s = std::min(g.stuck_for_s, s);
      g.max_stuck_for_s = std::max(g.max_stuck_for_s, s);
    }
    std::sort(g.frames.begin(), g.frames.end());
    std::sort(g.leaf_frames.begin(), g.leaf_frames.end());
    groups.push_back(std::move(g));
    i = j;
  }
  // Sorted by key already; a stable sort on count keeps function/file/line order among ties.
  std::stable_sort(groups.begin(), groups.end(),
                   [](const StuckGroup& a, const StuckGroup& b) { return a.count() > b.count(); });
  return groups;
}

}  // namespace asyncprobe::snapshot
