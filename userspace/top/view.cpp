#include "userspace/top/view.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <sstream>
#include <unordered_set>

#include "userspace/output/report_text.h"
#include "userspace/snapshot/async_stacks.h"
#include "userspace/util/format.h"

namespace asyncprobe::top {

const char* to_string(SortKey k) {
  switch (k) {
    case SortKey::kStuckFirst:
      return "stuck first";
    case SortKey::kCount:
      return "count";
    case SortKey::kOldest:
      return "oldest";
  }
  return "stuck first";
}

SortKey next(SortKey k) {
  switch (k) {
    case SortKey::kStuckFirst:
      return SortKey::kCount;
    case SortKey::kCount:
      return SortKey::kOldest;
    case SortKey::kOldest:
      return SortKey::kStuckFirst;
  }
  return SortKey::kStuckFirst;
}

std::string point_key(const model::CoroFrame& f) {
  std::string k = f.function;
  k += '\n';
  if (f.state == model::FrameState::kRunning && f.running) {
    // A running coroutine is where it runs now, not where it last suspended.
    k += f.running->file + ':' + std::to_string(f.running->line) + " thread " +
         std::to_string(f.running->thread);
  } else {
    k += f.suspend.file;
    k += ':';
    // An unplaced point keeps its raw index so that different unknown points stay apart.
    k +=
        f.suspend.line > 0 ? std::to_string(f.suspend.line) : "#" + std::to_string(f.suspend.index);
  }
  k += model::to_string(f.state);
  return k;
}

std::vector<double> WaitTracker::update(const model::Snapshot& snap, double now_s) {
  std::vector<double> ages(snap.frames.size(), 0.0);
  std::unordered_map<uint64_t, Seen> next;
  next.reserve(snap.frames.size());
  for (size_t i = 0; i < snap.frames.size(); ++i) {
    const model::CoroFrame& f = snap.frames[i];
    Seen s{point_key(f), f.resume_fn ^ f.destroy_fn ^ f.fingerprint, now_s};
    auto it = seen_.find(f.address);
    bool resumed = f.stuck_evidence == model::StuckEvidence::kResumed;
    if (it != seen_.end() && !resumed && it->second.point == s.point &&
        it->second.header == s.header) {
      s.since_s = it->second.since_s;
    }
    ages[i] = now_s - s.since_s;
    next.emplace(f.address, std::move(s));
  }
  seen_ = std::move(next);
  return ages;
}

namespace {

Header make_header(const model::Snapshot& snap) {
  Header h;
  h.pid = snap.pid;
  h.command = snap.command;
  h.threads = snap.threads.size();
  std::map<std::string, size_t> blocked;
  for (const auto& t : snap.threads) {
    if (!t.syscall.empty() && t.syscall != "running") blocked[t.syscall]++;
  }
  h.blocked.assign(blocked.begin(), blocked.end());
  std::sort(h.blocked.begin(), h.blocked.end(),
            [](const auto& a, const auto& b) { return a.second > b.second; });
  for (const auto& f : snap.frames) {
    switch (f.state) {
      case model::FrameState::kSuspended:
        ++h.suspended;
        break;
      case model::FrameState::kDone:
        ++h.done;
        break;
      case model::FrameState::kUnknown:
        ++h.unknown;
        break;
      case model::FrameState::kRunning:
        ++h.running;
        break;
    }
    if (f.stuck) ++h.stuck;
    if (f.unchanged) ++h.unchanged;
  }
  return h;
}

bool matches(const PointRow& r, const std::string& filter) {
  if (filter.empty()) return true;
  return r.function.find(filter) != std::string::npos || r.file.find(filter) != std::string::npos;
}

void sort_rows(std::vector<PointRow>& rows, SortKey key) {
  auto by_count = [](const PointRow& a, const PointRow& b) {
    if (a.count != b.count) return a.count > b.count;
    return a.function < b.function;
  };
  std::stable_sort(rows.begin(), rows.end(), [&](const PointRow& a, const PointRow& b) {
    switch (key) {
      case SortKey::kStuckFirst:
        if (a.stuck != b.stuck) return a.stuck > b.stuck;
        if (a.unchanged != b.unchanged) return a.unchanged > b.unchanged;
        return by_count(a, b);
      case SortKey::kCount:
        return by_count(a, b);
      case SortKey::kOldest:
        if (a.oldest_s != b.oldest_s) return a.oldest_s > b.oldest_s;
        return by_count(a, b);
    }
    return by_count(a, b);
  });
}

}  // namespace

View build_view(const model::Snapshot& snap, const std::vector<double>& ages,
                const ViewOptions& opts, double refresh_ms, uint64_t refreshes) {
  View v;
  v.header = make_header(snap);
  count_diagnoses(snap, &v.header);
  v.header.refresh_ms = refresh_ms;
  v.header.refreshes = refreshes;
  std::map<std::string, size_t> by_key;
  for (size_t i = 0; i < snap.frames.size(); ++i) {
    const model::CoroFrame& f = snap.frames[i];
    std::string key = point_key(f);
    auto [it, fresh] = by_key.emplace(key, v.rows.size());
    if (fresh) {
      PointRow r;
      r.function = f.function;
      r.file = f.suspend.file;
      r.line = f.suspend.line;
      r.index = f.suspend.index;
      r.kind = f.suspend.kind;
      if (f.state == model::FrameState::kRunning && f.running) {
        r.running_thread = f.running->thread;
        r.file = f.running->file;
        r.line = f.running->line;
      }
      v.rows.push_back(std::move(r));
    }
    PointRow& r = v.rows[it->second];
    r.count++;
    r.frames.push_back(i);
    if (i < ages.size()) r.oldest_s = std::max(r.oldest_s, ages[i]);
    if (f.stuck) r.stuck++;
    if (f.unchanged) r.unchanged++;
    // The probe counted this frame's resumes over the covered window.
    if (f.resumes >= 0 && snap.stuck_probe.covered_s > 0) {
      r.resumes_per_s = std::max(r.resumes_per_s, 0.0) +
                        static_cast<double>(f.resumes) / snap.stuck_probe.covered_s;
    }
  }
  std::vector<PointRow> kept;
  for (auto& r : v.rows) {
    if (matches(r, opts.filter)) kept.push_back(std::move(r));
  }
  v.rows = std::move(kept);
  sort_rows(v.rows, opts.sort);
  return v;
}

std::vector<std::string> row_stacks(const model::Snapshot& snap, const PointRow& row,
                                    bool unicode) {
  // The frames worth drawing: the row's own, every awaiter up to the root, and whatever the
  // row's frames await (found by walking awaiter edges from every frame up to a row frame).
  std::unordered_map<uint64_t, size_t> by_addr;
  for (size_t i = 0; i < snap.frames.size(); ++i) by_addr.emplace(snap.frames[i].address, i);
  std::vector<bool> keep(snap.frames.size(), false);
  std::unordered_set<size_t> row_set(row.frames.begin(), row.frames.end());
  for (size_t i = 0; i < snap.frames.size(); ++i) {
    std::vector<size_t> chain;
    size_t cur = i;
    bool through_row = false;
    // Bounded: a torn or cyclic chain stops at the frame count.
    for (size_t steps = 0; steps <= snap.frames.size(); ++steps) {
      chain.push_back(cur);
      if (row_set.count(cur) != 0) through_row = true;
      auto it = by_addr.find(snap.frames[cur].awaiter);
      if (snap.frames[cur].awaiter == 0 || it == by_addr.end() || it->second == cur) break;
      cur = it->second;
    }
    if (!through_row) continue;
    for (size_t c : chain) keep[c] = true;
  }
  model::Snapshot sub;
  sub.pid = snap.pid;
  sub.command = snap.command;
  for (size_t i = 0; i < snap.frames.size(); ++i) {
    if (keep[i]) sub.frames.push_back(snap.frames[i]);
  }
  std::ostringstream out;
  output::TextReportOptions opts;
  opts.unicode = unicode;
  opts.base_names = true;  // the table names files the same way
  output::write_async_stacks(out, sub, snapshot::build_async_forest(sub), opts);
  // A running coroutine's stack goes on below, on its thread: the native frames down to it.
  for (const model::ThreadInfo& t : snap.threads) {
    if (t.running_frame < 0 || row_set.count(static_cast<size_t>(t.running_frame)) == 0) continue;
    out << "\nthread " << t.tid << (t.name.empty() ? "" : " (" + t.name + ")") << ", " << t.syscall
        << ":\n";
    output::write_running_thread(out, snap, t, opts);
  }
  std::vector<std::string> lines;
  std::istringstream in(out.str());
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

void count_diagnoses(const model::Snapshot& snap, Header* h) {
  for (const model::Diagnosis& d : snap.diagnoses) {
    switch (d.kind) {
      case model::Diagnosis::Kind::kOrphaned:
        h->orphaned += d.frame_ids.size();
        break;
      case model::Diagnosis::Kind::kAwaitCycle:
        ++h->await_cycles;
        break;
      case model::Diagnosis::Kind::kThreadDeadlock:
      case model::Diagnosis::Kind::kLockOwnerGone:
        ++h->thread_deadlocks;
        break;
      case model::Diagnosis::Kind::kFailed:
        break;
    }
  }
}

std::vector<std::string> diagnosis_lines(const model::Snapshot& snap, bool unicode) {
  std::ostringstream out;
  output::TextReportOptions opts;
  opts.unicode = unicode;
  opts.base_names = true;
  output::write_diagnoses(out, snap, opts);
  std::vector<std::string> lines;
  std::istringstream in(out.str());
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string age_text(double seconds) {
  if (seconds <= 0) return "-";
  return util::format_lower_bound(seconds);
}

std::string rate_text(double per_s) {
  if (per_s < 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, per_s >= 10 ? "%.0f/s" : "%.1f/s", per_s);
  return buf;
}

}  // namespace asyncprobe::top
