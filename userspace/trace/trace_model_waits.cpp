// TraceModel's leaf-wait accounting for `asyncprobe profile --await --trace` (docs/PROFILE.md,
// "Exact await profile"). A wait is counted when it ends (the coroutine's resume) or at the end
// of the profile. Its parents' suspend points are known only when each parent resumes (or from
// the end snapshot), so waits are summed per (leaf point, parent frames in one suspension each)
// until every parent's point is known, then per chain of points: memory grows with the number
// of distinct waiting stacks, not with the number of waits.
#include <set>

#include "userspace/trace/trace_model.h"

namespace asyncprobe::trace {

namespace {

constexpr size_t kMaxWaitDepth = 256;  // awaiter chain bound, as for async stacks

}  // namespace

void TraceModel::seed_suspended(uint64_t frame, uint32_t fn, uint64_t since_ns, int64_t index,
                                uint64_t awaiter, bool uncertain_edge, bool awaited) {
  if (!valid_fn(fn) || frame == 0) return;
  FrameTrack& f = frames_[frame];
  f.fn = fn;
  f.suspended_since = since_ns;
  f.awaiter = awaiter;
  f.awaiter_rule = awaiter != 0 ? coro::AwaiterRule::kStartSnapshot : coro::AwaiterRule::kNone;
  f.uncertain_edge = uncertain_edge;
  f.awaited = awaited;
  f.seeded = true;
  f.seeded_index = index;
}

// A suspension of `f` at `index` is a leaf wait unless a coroutine awaited it meanwhile or it is
// the initial suspend point (a coroutine not started yet is not waiting for anything; GCC's
// probed ramps would show such intervals where Clang's unprobed ones do not). Counts the others.
bool TraceModel::counts_as_leaf_wait(const FrameTrack& f, int64_t index) {
  if (f.awaited) {
    ++wait_counters_.awaited;
    return false;
  }
  if (location(f.fn, index).kind == "initial") {
    ++wait_counters_.not_started;
    return false;
  }
  return true;
}

void TraceModel::add_leaf_wait(uint64_t frame, FrameTrack& f, int64_t index, uint64_t ns) {
  ++wait_counters_.waits;
  WaitKey key;
  key.fn = f.fn;
  key.index = index;
  bool uncertain = f.awaiter != 0 && f.uncertain_edge;
  bool unknown = f.awaiter == 0 && f.unknown_awaiter;
  std::vector<int64_t> fallback;
  std::set<uint64_t> seen{frame};
  for (uint64_t at = f.awaiter; at != 0 && key.parents.size() < kMaxWaitDepth;) {
    auto it = frames_.find(at);
    if (it == frames_.end()) {  // the awaiter was destroyed (or forgotten): the stack ends here
      unknown = true;
      break;
    }
    const FrameTrack& p = it->second;
    if (!seen.insert(at).second || p.running) {
      // A cycle, or an "awaiter" that is running: the edge is stale, not a wait under it.
      uncertain = true;
      break;
    }
    key.parents.emplace_back(at, p.generation);
    fallback.push_back(p.seeded && p.generation == 0 ? p.seeded_index : -1);
    if (p.awaiter != 0 && p.uncertain_edge) uncertain = true;
    if (p.awaiter == 0 && p.unknown_awaiter) unknown = true;
    at = p.awaiter;
  }
  if (unknown) ++wait_counters_.unknown_awaiter;
  if (uncertain) ++wait_counters_.uncertain;

  auto [idit, added] = wait_ids_.emplace(key, next_wait_id_);
  if (added) {
    const size_t id = next_wait_id_++;
    WaitInFlight& w = waits_in_flight_[id];
    w.key = key;
    w.fallback = std::move(fallback);
    AsyncFrameRef leaf;
    leaf.frame = frame;
    leaf.fn = f.fn;
    leaf.index = index;
    w.stack.push_back(leaf);
    for (const auto& [pf, gen] : key.parents) {
      FrameTrack& p = frames_.find(pf)->second;  // found while building the key
      AsyncFrameRef ref;
      ref.frame = pf;
      ref.fn = p.fn;
      w.stack.push_back(ref);
      p.pending.push_back(PendingSlot{SlotKind::kWait, id, w.stack.size() - 1});
    }
    w.unresolved = key.parents.size();
    wait_counters_.in_flight_max =
        std::max<uint64_t>(wait_counters_.in_flight_max, waits_in_flight_.size());
  }
  const size_t id = idit->second;
  WaitInFlight& w = waits_in_flight_[id];
  w.uncertain |= uncertain;
  w.coroutine = w.count == 0 || w.coroutine == frame ? frame : 0;
  ++w.count;
  w.total_ns += ns;
  if (w.unresolved == 0) finish_wait(id);  // a root: nothing to wait for
}

void TraceModel::wait_slot_filled(size_t id) {
  auto it = waits_in_flight_.find(id);
  if (it == waits_in_flight_.end()) return;
  if (it->second.unresolved > 0 && --it->second.unresolved == 0) finish_wait(id);
}

void TraceModel::finish_wait(size_t id) {
  auto it = waits_in_flight_.find(id);
  if (it == waits_in_flight_.end()) return;
  WaitInFlight& w = it->second;
  DoneKey key;
  key.second = w.uncertain;
  for (size_t i = 0; i < w.stack.size(); ++i) {
    int64_t index = w.stack[i].index;
    if (i > 0 && index < 0 && i - 1 < w.fallback.size()) index = w.fallback[i - 1];
    if (i > 0 && index < 0) wait_counters_.unresolved_points += w.count;
    key.first.emplace_back(w.stack[i].fn, index);
  }
  LeafWaitStack& done = waits_done_[key];
  if (done.count == 0) {
    done.stack = key.first;
    done.uncertain = key.second;
    done.coroutine = w.coroutine;
  } else if (done.coroutine != w.coroutine) {
    done.coroutine = 0;
  }
  done.count += w.count;
  done.total_ns += w.total_ns;
  wait_ids_.erase(w.key);
  waits_in_flight_.erase(it);
}

void TraceModel::close_open_waits(uint64_t end_ns,
                                  const std::unordered_map<uint64_t, int64_t>& suspended) {
  for (auto& [frame, f] : frames_) {
    if (f.running || f.suspended_since == 0 || f.suspended_since > end_ns) continue;
    auto it = suspended.find(frame);
    if (it == suspended.end()) {
      if (!f.awaited) ++wait_counters_.open_unconfirmed;
      continue;
    }
    if (!counts_as_leaf_wait(f, it->second)) continue;
    ++wait_counters_.open_at_end;
    if (f.seeded && f.generation == 0) ++wait_counters_.clipped_at_start;
    add_leaf_wait(frame, f, it->second, end_ns - f.suspended_since);
  }
}

std::vector<LeafWaitStack> TraceModel::take_leaf_waits() {
  std::vector<size_t> ids;
  ids.reserve(waits_in_flight_.size());
  for (const auto& [id, w] : waits_in_flight_) ids.push_back(id);
  for (size_t id : ids) finish_wait(id);
  std::vector<LeafWaitStack> out;
  out.reserve(waits_done_.size());
  for (auto& [key, done] : waits_done_) out.push_back(std::move(done));
  waits_done_.clear();
  return out;
}

}  // namespace asyncprobe::trace
