#include "userspace/cli/watch_command.h"

#include <signal.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <optional>

#include "userspace/cli/cli_options.h"
#include "userspace/kernel/resume_probe.h"
#include "userspace/util/exit_codes.h"
#include "userspace/watch/metrics_server.h"
#include "userspace/watch/watcher.h"

namespace asyncprobe::cli {

const char* watch_usage_text() {
  return R"(usage: asyncprobe watch (-p PID [-p PID ...] | --all) [options]

The resident daemon: watches coroutine processes and reports, as they happen, coroutines
stuck at one suspend point past a threshold (known not resumed: a short uprobe window on
their functions confirms it; without one they are reported `unchanged`), and when they move
on. One event per line on stdout or -o FILE; Prometheus
metrics on --listen. Ends on SIGTERM/SIGINT (exit 0); with -p, when every target has exited.

options:
  -p, --pid PID            a process to watch (repeatable)
  --all                    every process of the host that maps coroutine code, new ones
                           picked up within a few seconds
  --interval DURATION      re-check known frames this often (default 1s)
  --stuck-threshold DUR    report coroutines unchanged this long (default 5s)
  --json                   events as JSON lines (default: one-line text)
  --no-probe               no resume probes: coroutines unchanged past the threshold are
                           reported `unchanged`, never `stuck` (probes need root, or
                           CAP_BPF + CAP_PERFMON)
  -o, --output FILE        append events to FILE (flushed per event) instead of stdout
  --listen ADDR:PORT       serve Prometheus metrics at http://ADDR:PORT/metrics
                           (":PORT" binds to 127.0.0.1)
  --max-series N           suspend-point series per process (default 100; the rest are
                           summed into function="other")
  --debug-dir DIR          also look for separate debug files under DIR (repeatable)
  -h, --help               this text

Events and metrics: docs/WATCH_FORMAT.md. Exit codes: 0 done (signal, or targets exited),
2 usage error, 3/4/5/6/7 as for a snapshot when no -p target could be watched.
)";
}

namespace {

struct WatchArgs {
  std::vector<std::string> pids;
  bool all = false;
  bool json = false;
  std::string output;
  std::string listen;
  std::vector<std::string> debug_dirs;
  bool no_probe = false;
  double interval_s = 1.0;
  double threshold_s = 5.0;
  int max_series = 100;
};

double steady_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Runs the watcher until a stop signal or until it has nothing left to watch. SIGTERM and SIGINT
// are blocked in every thread and taken here with sigtimedwait, so a signal ends the wait
// between ticks and nothing is cut off mid-event.
int run_loop(watch::Watcher& watcher, const sigset_t& stop_signals) {
  for (;;) {
    const double now = steady_now();
    if (now >= watcher.next_wake() && !watcher.step(now)) return util::kExitOk;
    const double wait = std::max(0.0, watcher.next_wake() - steady_now());
    timespec ts{static_cast<time_t>(wait), static_cast<long>((wait - std::floor(wait)) * 1e9)};
    const int sig = sigtimedwait(&stop_signals, nullptr, &ts);
    if (sig == SIGTERM || sig == SIGINT) return util::kExitOk;
  }
}

// Parses and checks the options; a return >= 0 is the exit code (help or usage error).
int parse_watch_args(int argc, char** argv, WatchArgs* a) {
  OptionParser p("watch");
  p.texts("-p,--pid", &a->pids);
  p.flag("--all", &a->all);
  p.duration("--interval", &a->interval_s, DurationRange::kAboveZero);
  p.duration("--stuck-threshold", &a->threshold_s, DurationRange::kAboveZero);
  p.flag("--json", &a->json);
  p.flag("--no-probe", &a->no_probe);
  p.text("-o,--output", &a->output);
  p.text("--listen", &a->listen);
  p.count("--max-series", &a->max_series, 1, 100000, "number of suspend-point series");
  p.texts("--debug-dir", &a->debug_dirs);
  ParseResult r = p.parse(argc, argv);
  if (r.ok && !r.help) {
    if (a->all && !a->pids.empty()) {
      r = {false, false, "-p and --all exclude each other"};
    } else if (!a->all && a->pids.empty()) {
      r = {false, false, "give -p PID or --all"};
    } else if (a->interval_s < 0.01 || a->threshold_s < 0.01) {
      r = {false, false, "--interval and --stuck-threshold must be at least 10ms"};
    }
  }
  return finish_parse(r, "watch", watch_usage_text());
}

// The watcher's configuration from the options; a return >= 0 is a usage error's exit code.
int make_config(const WatchArgs& a, watch::WatcherConfig* config) {
  config->all = a.all;
  for (const std::string& pid_text : a.pids) {
    int pid = 0;
    if (!parse_pid(pid_text, &pid)) return usage_error("watch", "invalid pid '" + pid_text + "'");
    config->pids.push_back(pid);
  }
  config->settings.interval_s = a.interval_s;
  config->settings.stuck_threshold_s = a.threshold_s;
  config->settings.max_point_series = static_cast<size_t>(a.max_series);
  config->settings.debug_dirs = a.debug_dirs;
  return -1;
}

// Signals first: the server thread inherits the blocked mask, so only sigtimedwait takes them.
sigset_t block_stop_signals() {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return stop_signals;
}

// Binds the metrics server when --listen asks for one; a return >= 0 is a usage error's exit code.
int bind_server(const std::string& listen, watch::MetricsPage& page,
                std::optional<watch::MetricsServer>& server) {
  if (listen.empty()) return -1;
  std::string host, error;
  int port = 0;
  if (!watch::parse_listen_address(listen, &host, &port, &error))
    return usage_error("watch", error);
  server.emplace(page);
  if (!server->bind(host, port, &error)) return usage_error("watch", error);
  return -1;
}

// Starts the watcher and runs it to the end; the exit code.
int run_watcher(const watch::WatcherConfig& config, watch::EventSink& sink,
                watch::MetricsPage& page, std::optional<watch::MetricsServer>& server,
                snapshot::ResumeProber* prober, const sigset_t& stop_signals) {
  try {
    watch::Watcher watcher(config, sink, server ? &page : nullptr, prober);
    const int started = watcher.start(steady_now());
    if (started >= 0) return started;
    if (server) server->start();
    return run_loop(watcher, stop_signals);
  } catch (const std::exception& e) {
    std::cerr << "asyncprobe: internal error: " << e.what() << "\n";
    return util::kExitInternal;
  }
}

}  // namespace

int watch_main(int argc, char** argv) {
  WatchArgs a;
  if (int rc = parse_watch_args(argc, argv, &a); rc >= 0) return rc;
  watch::WatcherConfig config;
  if (int rc = make_config(a, &config); rc >= 0) return rc;
  const sigset_t stop_signals = block_stop_signals();

  watch::MetricsPage page;
  std::optional<watch::MetricsServer> server;
  if (int rc = bind_server(a.listen, page, server); rc >= 0) return rc;
  std::FILE* out = stdout;
  if (!a.output.empty()) {
    out = std::fopen(a.output.c_str(), "ae");
    if (out == nullptr) {
      return usage_error("watch",
                         "cannot open " + a.output + " for appending: " + std::strerror(errno));
    }
  }
  watch::EventSink sink(out, a.json);
  kernel::BpfResumeProber bpf_prober;
  const int code =
      run_watcher(config, sink, page, server, a.no_probe ? nullptr : &bpf_prober, stop_signals);
  if (server) server->stop();
  if (out != stdout) std::fclose(out);
  std::fflush(stdout);
  return code;
}

}  // namespace asyncprobe::cli
