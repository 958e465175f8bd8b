// Await cycles as a diagnosis: a cycle of awaiter edges that is the same in both looks (the same
// frames, unchanged: address, resume and destroy words, suspend index) is a deadlock of the
// program, not a torn read. One look cannot tell the two apart; then every cycle is reported and
// the limits say so.
#include <algorithm>
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

std::set<std::set<FrameKey>> cycles_of(const model::Snapshot& snap,
                                       const snapshot::AsyncForest& forest) {
  std::set<std::set<FrameKey>> out;
  for (const snapshot::AwaitCycle& c : forest.cycles) {
    std::set<FrameKey> members;
    for (size_t f : c.frames) members.insert(key_of(snap.frames[f]));
    out.insert(std::move(members));
  }
  return out;
}

}  // namespace

std::vector<model::Diagnosis> await_cycles(const model::Snapshot& snap,
                                           const model::Snapshot* before) {
  const snapshot::AsyncForest forest = snapshot::build_async_forest(snap);
  std::set<std::set<FrameKey>> earlier;
  if (before != nullptr) earlier = cycles_of(*before, snapshot::build_async_forest(*before));
  std::vector<model::Diagnosis> out;
  for (const snapshot::AwaitCycle& c : forest.cycles) {
    std::set<FrameKey> members;
    for (size_t f : c.frames) members.insert(key_of(snap.frames[f]));
    if (before != nullptr && earlier.count(members) == 0) continue;
    model::Diagnosis d;
    d.kind = model::Diagnosis::Kind::kAwaitCycle;
    d.frame_ids = c.frames;  // the forest's order: frames[k] awaits frames[k + 1]
    d.summary = std::to_string(c.frames.size()) + " coroutines await each other: ";
    for (size_t f : d.frame_ids) d.summary += snap.frames[f].function + " awaits ";
    d.summary += snap.frames[d.frame_ids.front()].function;
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace asyncprobe::diagnose
