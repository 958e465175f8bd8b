#include "userspace/top/session.h"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <unordered_set>

#include "userspace/diagnose/diagnose.h"
#include "userspace/snapshot/snapshot_taker.h"
#include "userspace/snapshot/stuck_check.h"
#include "userspace/top/screen.h"
#include "userspace/top/view.h"
#include "userspace/util/exit_codes.h"

namespace asyncprobe::top {

namespace {

volatile std::sig_atomic_t g_signal = 0;

void on_signal(int sig) { g_signal = sig; }

// SIGINT and SIGTERM end the session through the loop (so the terminal is restored); the old
// handlers come back when it ends.
class SignalGuard {
 public:
  SignalGuard() {
    g_signal = 0;
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~SignalGuard() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  SignalGuard(const SignalGuard&) = delete;
  SignalGuard& operator=(const SignalGuard&) = delete;

 private:
  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
};

double now_s() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

// The latest look and what it was folded into. One resume probe session stays attached across
// looks on the functions of the look's coroutines (attaching thousands of uprobes takes seconds:
// the view must not freeze every interval); each look reads the counts, and the difference from
// the previous read is that interval's window (the stuck check: only a window that saw no resume
// makes a coroutine `stuck`). Coroutines the session does not count (created since it started)
// make the next look start a new one. Hot functions are detached by the probe's budget; their
// coroutines that looked the same stay `unchanged`.
struct Looks {
  model::Snapshot snap;
  // Failed coroutines by (frame, thrown object), when first seen: "failed in the last 5 minutes".
  std::unordered_map<uint64_t, double> failed_seen;
  std::vector<double> ages;
  WaitTracker tracker;
  snapshot::StuckCheck check;
  snapshot::ResumeProber* prober = nullptr;  // null: --no-probe, or it said it cannot
  std::unique_ptr<snapshot::ResumeProbeSession> probe;
  snapshot::ResumeProbeRequest request;
  std::unordered_set<uint64_t> counted;   // the frames the session counts
  snapshot::ResumeProbeResult last_read;  // cumulative counts at the previous look
  bool have_read = false;
  std::string no_probe_why;
  double took_ms = 0;
  uint64_t count = 0;
};

// This interval's window: the counts since the previous read, the probes live from then on.
snapshot::ResumeProbeResult since_last_read(const snapshot::ResumeProbeResult& now, Looks& looks) {
  snapshot::ResumeProbeResult w = now;
  if (looks.have_read) {
    const snapshot::ResumeProbeResult& before = looks.last_read;
    w.started_at_s = before.ended_at_s;
    w.hits = now.hits - std::min(now.hits, before.hits);
    for (auto& [frame, n] : w.entries) {
      auto it = before.entries.find(frame);
      if (it != before.entries.end()) n -= std::min(n, it->second);
    }
    for (auto& f : w.functions) f.attached_at_s = std::max(f.attached_at_s, before.ended_at_s);
  }
  looks.last_read = now;
  looks.have_read = true;
  return w;
}

void start_probe(const snapshot::SnapshotTaker& taker, Looks& looks) {
  looks.probe.reset();
  looks.have_read = false;
  looks.counted.clear();
  looks.request = looks.check.probe_request(looks.snap, taker.index(), 0.0);
  looks.request.pid = looks.snap.pid;
  if (looks.request.functions.empty() || looks.prober == nullptr) return;
  std::string why;
  looks.probe = looks.prober->start(looks.request, &why);
  if (looks.probe == nullptr) {
    looks.no_probe_why = why;
    looks.prober = nullptr;  // it will not do better next time: stop asking
    return;
  }
  for (const auto& fn : looks.request.functions)
    looks.counted.insert(fn.frames.begin(), fn.frames.end());
}

bool take_look(snapshot::SnapshotTaker& taker, Looks& looks, snapshot::SnapshotError* err) {
  double start = snapshot::stuck_clock_now();
  model::Snapshot next;
  if (!taker.take(&next, err)) return false;
  looks.took_ms = (snapshot::stuck_clock_now() - start) * 1e3;
  looks.check.observe(next, start);
  if (looks.probe != nullptr) {
    looks.check.apply_probe(looks.request, since_last_read(looks.probe->read(), looks), next);
  } else if (looks.count > 0) {
    looks.check.note_no_probe(next, looks.no_probe_why);
  }
  // Coroutines running on blocked threads: never stuck, and the detail view shows their threads.
  taker.mark_running(&next);
  // The diagnoses compare the two looks (a lock wait or an await cycle must hold in both).
  diagnose::diagnose(next, looks.count > 0 ? &looks.snap : nullptr);
  for (const model::CoroFrame& f : next.frames) {
    if (f.exception) looks.failed_seen.emplace(f.address ^ f.exception->object, start);
  }
  looks.snap = std::move(next);
  looks.ages = looks.tracker.update(looks.snap, start);
  ++looks.count;
  bool uncounted = looks.probe == nullptr;
  for (const auto& f : looks.snap.frames) uncounted |= looks.counted.count(f.address) == 0;
  if (uncounted) start_probe(taker, looks);
  return true;
}

size_t failed_recently(const Looks& looks, double now) {
  size_t n = 0;
  for (const auto& [key, seen] : looks.failed_seen) n += now - seen <= 300.0;
  return n;
}

std::string detail_title(const View& v, const ScreenState& s) {
  if (s.selected >= v.rows.size()) return "async stacks";
  const PointRow& r = v.rows[s.selected];
  return "async stacks through " + std::to_string(r.count) + " x " + r.function + "   (Esc: back)";
}

}  // namespace

int run_top(const TopOptions& opts, std::string* reason, bool* drawn) {
  snapshot::SnapshotTaker taker(snapshot::SnapshotSession{opts.pid, opts.debug_dirs});
  snapshot::SnapshotError err;
  Looks looks;
  looks.prober = opts.prober;
  if (looks.prober == nullptr) looks.no_probe_why = "--no-probe";
  if (!taker.attach(&err) || !take_look(taker, looks, &err)) {
    *reason = err.message;
    return err.code;
  }
  SignalGuard signals;
  Screen screen;
  if (!screen.open(opts.color, opts.unicode, reason)) return util::kExitUsage;
  if (drawn != nullptr) *drawn = true;
  ScreenState state;
  std::vector<std::string> detail;
  int code = util::kExitOk;
  double next_look = now_s() + opts.interval_s;
  for (;;) {
    View view = build_view(looks.snap, looks.ages, state.view, looks.took_ms, looks.count);
    view.header.failed_recent = failed_recently(looks, snapshot::stuck_clock_now());
    std::string title;
    if (state.page == Page::kDetail && state.selected < view.rows.size()) {
      detail = row_stacks(looks.snap, view.rows[state.selected], opts.unicode);
      title = detail_title(view, state);
    } else if (state.page == Page::kDiagnoses) {
      detail = diagnosis_lines(looks.snap, opts.unicode);
      title = "diagnoses of the last look   (Esc: back)";
    }
    screen.draw(view, state, detail, title);
    // While a probe window is open its budget is checked every 50 ms (hot functions detach).
    int wait_ms = std::max(static_cast<int>((next_look - now_s()) * 1e3), 0);
    if (looks.probe != nullptr) wait_ms = std::min(wait_ms, 50);
    int key = screen.read_key(wait_ms);
    if (looks.probe != nullptr) looks.probe->check_budget();
    if (g_signal != 0) {
      *reason = g_signal == SIGINT ? "interrupted" : "terminated by SIGTERM";
      break;
    }
    if (key >= 0 &&
        !handle_key(key, state, view.rows.size(),
                    state.page == Page::kTable ? screen.table_rows() : screen.page_rows(),
                    detail.size())) {
      *reason = "quit";
      break;
    }
    if (now_s() < next_look) continue;
    next_look = now_s() + opts.interval_s;
    if (state.paused) {
      // A paused view is not looking: no probe window may stay open meanwhile.
      looks.probe.reset();
      continue;
    }
    if (!take_look(taker, looks, &err)) {
      *reason = err.message;
      code = err.code == util::kExitTargetExited || err.code == util::kExitNoProcess ? util::kExitOk
                                                                                     : err.code;
      break;
    }
  }
  looks.probe.reset();  // detach before the terminal is handed back
  screen.close();
  return code;
}

}  // namespace asyncprobe::top
