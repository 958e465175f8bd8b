#include "userspace/top/session.h"

#include <chrono>
#include <csignal>

#include "userspace/snapshot/snapshot_taker.h"
#include "userspace/snapshot/stuck_detector.h"
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

// The latest look and what it was folded into.
struct Looks {
  model::Snapshot snap;
  model::Snapshot previous;
  std::vector<double> ages;
  WaitTracker tracker;
  double took_ms = 0;
  uint64_t count = 0;
  double last_s = 0;
};

bool take_look(snapshot::SnapshotTaker& taker, Looks& looks, snapshot::SnapshotError* err) {
  double start = now_s();
  model::Snapshot next;
  if (!taker.take(&next, err)) return false;
  looks.took_ms = (now_s() - start) * 1e3;
  if (looks.count > 0) snapshot::mark_stuck(looks.snap, next, start - looks.last_s);
  looks.previous = std::move(looks.snap);
  looks.snap = std::move(next);
  looks.ages = looks.tracker.update(looks.snap, start);
  looks.last_s = start;
  ++looks.count;
  return true;
}

std::string detail_title(const View& v, const ScreenState& s) {
  if (s.selected >= v.rows.size()) return "async stacks";
  const PointRow& r = v.rows[s.selected];
  return "async stacks through " + std::to_string(r.count) + " x " + r.function + "   (Esc: back)";
}

}  // namespace

int run_top(const TopOptions& opts, std::string* reason) {
  snapshot::SnapshotTaker taker(snapshot::SnapshotSession{opts.pid, opts.debug_dirs});
  snapshot::SnapshotError err;
  Looks looks;
  if (!taker.attach(&err) || !take_look(taker, looks, &err)) {
    *reason = err.message;
    return err.code;
  }
  SignalGuard signals;
  Screen screen;
  if (!screen.open(opts.color, opts.unicode, reason)) return util::kExitUsage;
  ScreenState state;
  std::vector<std::string> detail;
  int code = util::kExitOk;
  double next_look = now_s() + opts.interval_s;
  for (;;) {
    View view =
        build_view(looks.snap, looks.ages, looks.tracker, state.view, looks.took_ms, looks.count);
    if (state.page == Page::kDetail && state.selected < view.rows.size()) {
      detail = row_stacks(looks.snap, view.rows[state.selected], opts.unicode);
    }
    screen.draw(view, state, detail, detail_title(view, state));
    int wait_ms = static_cast<int>((next_look - now_s()) * 1e3);
    int key = screen.read_key(std::max(wait_ms, 0));
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
    if (state.paused) continue;
    if (!take_look(taker, looks, &err)) {
      *reason = err.message;
      code = err.code == util::kExitTargetExited || err.code == util::kExitNoProcess ? util::kExitOk
                                                                                     : err.code;
      break;
    }
  }
  screen.close();
  return code;
}

}  // namespace asyncprobe::top
