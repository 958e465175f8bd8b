#include "userspace/watch/diagnosis_watch.h"

#include <algorithm>

namespace asyncprobe::watch {

namespace {

StackFrame frame_of(const model::CoroFrame& f) {
  return {f.function, f.suspend.line > 0 ? f.suspend.file : "", f.suspend.line};
}

std::string point_text(const model::CoroFrame& f) {
  return f.function + "@" + f.suspend.file + ":" + std::to_string(f.suspend.line) + "#" +
         std::to_string(f.suspend.index);
}

// What a diagnosis names, independent of addresses that change between looks where they may
// (frames: by their points) and dependent where they identify it (threads: by TID).
std::string key_of(const model::Snapshot& snap, const model::Diagnosis& d) {
  std::string key = model::to_string(d.kind);
  switch (d.kind) {
    case model::Diagnosis::Kind::kFailed:
      if (d.exception) key += "|" + d.exception->type + "|" + d.exception->what;
      break;
    case model::Diagnosis::Kind::kThreadDeadlock:
    case model::Diagnosis::Kind::kLockOwnerGone: {
      std::vector<int> tids = d.threads;
      for (const auto& l : d.locks) tids.insert(tids.end(), l.waiters.begin(), l.waiters.end());
      std::sort(tids.begin(), tids.end());
      tids.erase(std::unique(tids.begin(), tids.end()), tids.end());
      for (int t : tids) key += "|" + std::to_string(t);
      break;
    }
    default: {
      std::set<std::string> points;
      for (size_t id : d.frame_ids) {
        if (id < snap.frames.size()) points.insert(point_text(snap.frames[id]));
      }
      for (const auto& p : points) key += "|" + p;
    }
  }
  return key;
}

// The first stack of an orphaned group: frame_ids hold each stack root first, and each frame
// after the root awaits... is awaited by the one before it (its awaiter is the previous frame).
size_t first_stack_depth(const model::Snapshot& snap, const std::vector<size_t>& ids) {
  size_t depth = ids.empty() ? 0 : 1;
  while (depth < ids.size() && ids[depth] < snap.frames.size() &&
         ids[depth - 1] < snap.frames.size() &&
         snap.frames[ids[depth]].awaiter == snap.frames[ids[depth - 1]].address) {
    ++depth;
  }
  return depth;
}

bool changed_by_factor(size_t count, size_t reported) {
  return count >= 2 * reported || 2 * count <= reported;
}

}  // namespace

Event DiagnosisWatch::describe(const model::Snapshot& snap, const model::Diagnosis& d,
                               size_t* count) const {
  Event e;
  e.summary = d.summary;
  switch (d.kind) {
    case model::Diagnosis::Kind::kOrphaned: {
      e.kind = EventKind::kOrphaned;
      const size_t depth = first_stack_depth(snap, d.frame_ids);
      for (size_t k = 0; k < depth; ++k) e.stack.push_back(frame_of(snap.frames[d.frame_ids[k]]));
      e.count = depth > 0 ? d.frame_ids.size() / depth : 0;
      e.frames = d.frame_ids.size();
      break;
    }
    case model::Diagnosis::Kind::kAwaitCycle:
      e.kind = EventKind::kAwaitCycle;
      for (size_t id : d.frame_ids) {
        if (id < snap.frames.size()) e.stack.push_back(frame_of(snap.frames[id]));
      }
      e.count = e.stack.size();
      break;
    case model::Diagnosis::Kind::kThreadDeadlock:
    case model::Diagnosis::Kind::kLockOwnerGone:
      e.kind = d.kind == model::Diagnosis::Kind::kThreadDeadlock ? EventKind::kThreadDeadlock
                                                                 : EventKind::kLockOwnerGone;
      e.threads = d.threads;
      e.locks = d.locks;
      e.count = d.threads.size();
      break;
    case model::Diagnosis::Kind::kFailed: {
      e.kind = EventKind::kFailed;
      if (d.exception) e.exception = *d.exception;
      std::map<std::string, size_t> by_function;
      for (size_t id : d.frame_ids) {
        if (id < snap.frames.size()) ++by_function[snap.frames[id].function];
      }
      e.failed_in.assign(by_function.begin(), by_function.end());
      e.count = d.frame_ids.size();
      break;
    }
  }
  *count = e.count;
  return e;
}

// Failed frames are remembered by identity with the time each was first seen: the group's
// failures within the window are those first seen since now - window. Returns how many were first
// seen after `since` (the group's last report).
size_t DiagnosisWatch::note_failed(const model::Snapshot& snap, const model::Diagnosis& d,
                                   double now, double since, Event* e) {
  size_t in_window = 0, newer = 0;
  for (size_t id : d.frame_ids) {
    if (id >= snap.frames.size()) continue;
    const model::CoroFrame& f = snap.frames[id];
    auto [it, fresh] =
        failed_first_seen_.try_emplace(FailedFrame{f.address, f.resume_fn, f.destroy_fn}, now);
    (void)fresh;
    if (now - it->second <= failed_window_s_) ++in_window;
    if (it->second > since) ++newer;
  }
  e->in_window = in_window;
  e->window_s = failed_window_s_;
  gauges_.failed_by_type[d.exception && !d.exception->type.empty() ? d.exception->type : "?"] +=
      d.frame_ids.size();
  return newer;
}

void DiagnosisWatch::update(const model::Snapshot& snap, double now, std::vector<Event>* events) {
  gauges_ = DiagnosisGauges{};
  for (auto& [key, ep] : episodes_) ep.seen_now = false;
  // Failed frames no longer present are forgotten (freed, or the process reused the memory).
  std::set<FailedFrame> failed_now;
  for (const model::CoroFrame& f : snap.frames) {
    if (f.exception) failed_now.insert(FailedFrame{f.address, f.resume_fn, f.destroy_fn});
  }
  for (auto it = failed_first_seen_.begin(); it != failed_first_seen_.end();) {
    it = failed_now.count(it->first) == 0 ? failed_first_seen_.erase(it) : std::next(it);
  }
  for (const model::Diagnosis& d : snap.diagnoses) {
    const std::string key = key_of(snap, d);
    size_t count = 0;
    Event e = describe(snap, d, &count);
    auto [it, fresh] = episodes_.try_emplace(key);
    Episode& ep = it->second;
    ep.seen_now = true;
    const bool failed = d.kind == model::Diagnosis::Kind::kFailed;
    const size_t newer = failed ? note_failed(snap, d, now, fresh ? -1.0 : ep.reported_at, &e) : 0;
    // Everything but `failed` waits for a second look.
    if (fresh && !failed) continue;
    switch (d.kind) {
      case model::Diagnosis::Kind::kOrphaned:
        gauges_.orphaned_coroutines += d.frame_ids.size();
        break;
      case model::Diagnosis::Kind::kAwaitCycle:
        ++gauges_.await_cycles;
        break;
      case model::Diagnosis::Kind::kThreadDeadlock:
        ++gauges_.thread_deadlocks;
        break;
      case model::Diagnosis::Kind::kLockOwnerGone:
        ++gauges_.lock_owner_gone;
        break;
      case model::Diagnosis::Kind::kFailed:
        break;
    }
    bool report = ep.reported == 0;
    if (!report && failed) {
      // New failures of the group: again, at most once per window.
      report = newer > 0 && now - ep.reported_at >= failed_window_s_;
    } else if (!report) {
      report = changed_by_factor(count, ep.reported);
    }
    if (!report) continue;
    e.previous_count = ep.reported;
    ep.reported = std::max<size_t>(count, 1);
    ep.reported_at = now;
    events->push_back(std::move(e));
  }
  for (auto it = episodes_.begin(); it != episodes_.end();) {
    it = it->second.seen_now ? std::next(it) : episodes_.erase(it);
  }
}

}  // namespace asyncprobe::watch
