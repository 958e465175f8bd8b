// The daemon's engine: the watched processes (-p PIDs, or every coroutine process of the host with
// --all, found by a /proc sweep), ticked every interval, their events written as lines, and the
// metrics page rebuilt after each step. The caller owns time and signals: it calls step() and
// sleeps until next_wake().
#pragma once

#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "userspace/snapshot/stuck_check.h"
#include "userspace/watch/discovery.h"
#include "userspace/watch/event.h"
#include "userspace/watch/metrics.h"
#include "userspace/watch/process_watch.h"

namespace asyncprobe::watch {

// Writes each event as one line and flushes it, so `tail -f` and log agents see it at once.
class EventSink {
 public:
  EventSink(std::FILE* out, bool json) : out_(out), json_(json) {}
  void write(const Event& e);

 private:
  std::FILE* out_;
  bool json_;
};

struct WatcherConfig {
  WatchSettings settings;
  std::vector<int> pids;  // -p
  bool all = false;       // --all
  double sweep_interval_s = 2.0;
};

class Watcher {
 public:
  // `prober` (may be null: no confirming probes) is shared by every watched process.
  Watcher(WatcherConfig config, EventSink& sink, MetricsPage* page, snapshot::ResumeProber* prober);
  ~Watcher();

  // Attaches to the -p targets (an `error` event for each that fails). Returns -1 to go on, or
  // the exit code when no -p target could be attached (the first failure's code).
  int start(double now);
  // One step at steady time `now`: before the tick is due, only the open probe windows' budgets
  // are checked; then sweep when due, tick every process, publish metrics. false
  // when there is nothing left to watch (every -p target has gone); never false with --all.
  bool step(double now);
  // The next tick; sooner while a resume probe window is open (its hit budget is polled).
  double next_wake() const;
  size_t watched() const { return processes_.size(); }

 private:
  void emit(const Event& e);
  void sweep(double now);
  bool attach(int pid, bool report_failures, int* code);
  void publish(double now);
  void poll_probes(double now);

  WatcherConfig config_;
  EventSink& sink_;
  MetricsPage* page_;
  snapshot::ResumeProber* prober_;
  std::shared_ptr<symbolizer::CatalogCache> catalogs_;  // shared by every watched process
  std::map<std::pair<int, uint64_t>, std::unique_ptr<ProcessWatch>> processes_;
  ProcessSweep sweep_;
  double next_tick_ = 0.0;
  double next_sweep_ = 0.0;
  double next_poll_ = 0.0;  // while a probe window is open; 0: none is
  // The daemon's own health.
  std::map<std::string, uint64_t> scans_total_;    // by kind
  std::map<std::string, uint64_t> scan_errors_;    // by reason
  std::map<std::string, uint64_t> events_total_;   // by event
  std::map<std::string, Histogram> scan_seconds_;  // by kind
};

}  // namespace asyncprobe::watch
