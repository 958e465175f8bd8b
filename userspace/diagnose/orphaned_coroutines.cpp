// Orphaned coroutines grouped like the trees: identical orphaned stacks (the same functions at the
// same suspend points, root to leaf) are one diagnosis listing every frame, with the leaf's
// suspend point: where the wakeup was lost.
#include <map>
#include <set>
#include <tuple>

#include "userspace/diagnose/diagnose.h"
#include "userspace/snapshot/async_stacks.h"

namespace asyncprobe::diagnose {

namespace {

using FrameKey = std::tuple<uint64_t, uint64_t, uint64_t, int64_t>;

FrameKey key_of(const model::CoroFrame& f) {
  return {f.address, f.resume_fn, f.destroy_fn, f.suspend.index};
}

std::string point_of(const model::CoroFrame& f) {
  return f.function + " at " +
         (f.suspend.line > 0 ? f.suspend.file + ":" + std::to_string(f.suspend.line)
                             : "suspend index " + std::to_string(f.suspend.index));
}

}  // namespace

std::vector<model::Diagnosis> orphaned_coroutines(const model::Snapshot& snap,
                                                  const model::Snapshot* before) {
  std::set<FrameKey> earlier;
  if (before != nullptr) {
    for (const model::CoroFrame& f : before->frames) {
      if (f.orphaned) earlier.insert(key_of(f));
    }
  }
  auto counts = [&](size_t i) {
    const model::CoroFrame& f = snap.frames[i];
    return f.orphaned && (before == nullptr || earlier.count(key_of(f)) != 0);
  };
  const snapshot::AsyncForest forest = snapshot::build_async_forest(snap);
  // Each orphaned frame's stack, leaf to root, through orphaned frames only; grouped by signature.
  std::vector<bool> has_orphaned_child(snap.frames.size(), false);
  for (size_t i = 0; i < snap.frames.size(); ++i) {
    const size_t a = forest.links[i].awaiter;
    if (counts(i) && a != snapshot::kNoFrame && counts(a)) has_orphaned_child[a] = true;
  }
  std::map<std::vector<std::string>, model::Diagnosis> groups;
  std::vector<std::vector<std::string>> order;
  for (size_t leaf = 0; leaf < snap.frames.size(); ++leaf) {
    if (!counts(leaf) || has_orphaned_child[leaf]) continue;
    std::vector<size_t> chain;  // leaf first
    std::set<size_t> seen;
    for (size_t at = leaf; at != snapshot::kNoFrame && counts(at) && seen.insert(at).second;
         at = forest.links[at].awaiter) {
      chain.push_back(at);
    }
    std::vector<std::string> signature;
    signature.reserve(chain.size());
    for (size_t f : chain) signature.push_back(point_of(snap.frames[f]));
    auto [it, fresh] = groups.try_emplace(signature);
    if (fresh) {
      order.push_back(signature);
      it->second.kind = model::Diagnosis::Kind::kOrphaned;
    }
    it->second.frame_ids.insert(it->second.frame_ids.end(), chain.rbegin(), chain.rend());
  }
  std::vector<model::Diagnosis> out;
  for (const auto& sig : order) {
    model::Diagnosis d = std::move(groups[sig]);
    const size_t stacks = d.frame_ids.size() / sig.size();
    d.summary = std::to_string(stacks) + "x " + (sig.size() > 1 ? "stack " : "coroutine ");
    for (size_t k = sig.size(); k-- > 0;) {
      d.summary += snap.frames[d.frame_ids[sig.size() - 1 - k]].function + (k > 0 ? " > " : "");
    }
    d.summary += " can never resume: no live memory points to " +
                 std::string(stacks * sig.size() == 1 ? "it" : "them") + "; wakeup lost at " +
                 sig.front();
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace asyncprobe::diagnose
