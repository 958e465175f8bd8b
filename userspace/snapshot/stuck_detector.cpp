#include "userspace/snapshot/stuck_detector.h"

#include <algorithm>
#include <cmath>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

namespace asyncprobe::snapshot {

namespace {

bool same_point(const model::CoroFrame& a, const model::CoroFrame& b) {
  if (a.resume_fn != b.resume_fn || a.destroy_fn != b.destroy_fn || a.state != b.state) {
    return false;
  }
  // An unread index proves nothing about progress, except for a done frame, which cannot move.
  if (a.state != model::FrameState::kDone && (a.suspend.index < 0 || b.suspend.index < 0)) return false;
  return a.suspend.index == b.suspend.index;
}

using GroupKey = std::tuple<const std::string&, const std::string&, int, int, int64_t>;

GroupKey group_key(const model::CoroFrame& f) {
  return GroupKey(f.function, f.suspend.file, f.suspend.line, static_cast<int>(f.suspend.kind),
                  f.suspend.line == 0 ? f.suspend.index : -2);
}

}  // namespace

size_t mark_stuck(const model::Snapshot& before, model::Snapshot& after, double window_s) {
  for (model::CoroFrame& f : after.frames) {
    f.stuck = false;
    f.stuck_for_s = 0.0;
  }
  const bool window_ok = std::isfinite(window_s) && window_s > 0.0;
  after.window_seconds = window_ok ? window_s : 0.0;
  if (!window_ok || before.pid != after.pid) return 0;

  // Address -> frames of `before`; a multimap because torn reads may repeat an address.
  std::unordered_multimap<uint64_t, size_t> earlier;
  earlier.reserve(before.frames.size());
  for (size_t i = 0; i < before.frames.size(); ++i) earlier.emplace(before.frames[i].address, i);

  size_t marked = 0;
  for (model::CoroFrame& f : after.frames) {
    auto [lo, hi] = earlier.equal_range(f.address);
    // Of several matches take the one with the longest history; ties cannot change the result.
    bool found = false;
    double prior = 0.0;
    for (auto it = lo; it != hi; ++it) {
      const model::CoroFrame& b = before.frames[it->second];
      if (!same_point(b, f)) continue;
      const double p =
          b.stuck && std::isfinite(b.stuck_for_s) && b.stuck_for_s > 0.0 ? b.stuck_for_s : 0.0;
      if (!found || p > prior) prior = p;
      found = true;
    }
    if (!found) continue;
    f.stuck = true;
    f.stuck_for_s = window_s + prior;
    ++marked;
  }
  return marked;
}

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
