#include "userspace/watch/watcher.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

namespace asyncprobe::watch {

namespace {

const char* reason_of(int code) {
  switch (code) {
    case util::kExitNoProcess:
      return "no-process";
    case util::kExitPermission:
      return "permission";
    case util::kExitNotInspectable:
      return "not-inspectable";
    case util::kExitUnsupported:
      return "unsupported";
    case util::kExitNoCoroutines:
      return "no-coroutines";
    case util::kExitTargetExited:
      return "exited";
    default:
      return "internal";
  }
}

constexpr double kSweepBudgetSeconds = 1.0;
// How often an open probe window's hit budget is checked (as the one-shot --window does).
constexpr double kProbePollSeconds = 0.02;

const std::vector<double> kScanBuckets = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                          0.1,    0.25,  0.5,    1,     2.5,  5,     10};

}  // namespace

void EventSink::write(const Event& e) {
  const std::string line = (json_ ? format_json(e) : format_text(e)) + "\n";
  std::fwrite(line.data(), 1, line.size(), out_);
  std::fflush(out_);
}

Watcher::Watcher(WatcherConfig config, EventSink& sink, MetricsPage* page,
                 snapshot::ResumeProber* prober)
    : config_(std::move(config)),
      sink_(sink),
      page_(page),
      prober_(prober),
      catalogs_(std::make_shared<symbolizer::CatalogCache>()),
      sweep_(static_cast<int>(::getpid())) {}

Watcher::~Watcher() = default;

void Watcher::emit(const Event& e) {
  ++events_total_[to_string(e.kind)];
  sink_.write(e);
}

bool Watcher::attach(int pid, bool report_failures, int* code) {
  auto w = std::make_unique<ProcessWatch>(pid, config_.settings, prober_, catalogs_);
  std::vector<Event> events;
  snapshot::SnapshotError err;
  if (!w->attach(&events, &err)) {
    *code = err.code;
    ++scan_errors_[reason_of(err.code)];
    if (report_failures) {
      Event e;
      e.kind = EventKind::kError;
      e.time = std::chrono::system_clock::now();
      e.pid = pid;
      e.command = w->command();  // as read before the attempt: empty once the process exited
      e.reason = reason_of(err.code);
      e.message = err.message;
      e.container = container_id_of(pid);
      emit(e);
    }
    return false;
  }
  for (const Event& e : events) emit(e);
  processes_.emplace(std::make_pair(pid, start_time_of(pid)), std::move(w));
  return true;
}

int Watcher::start(double now) {
  int first_failure = -1;
  for (int pid : config_.pids) {
    int code = 0;
    if (!attach(pid, true, &code) && first_failure < 0) first_failure = code;
  }
  if (config_.all) sweep(now);
  next_tick_ = snapshot::stuck_clock_now() + config_.settings.interval_s;
  publish(now);
  if (!config_.all && processes_.empty())
    return first_failure < 0 ? util::kExitInternal : first_failure;
  return -1;
}

void Watcher::sweep(double now) {
  next_sweep_ = now + config_.sweep_interval_s;
  std::set<std::pair<int, uint64_t>> watched;
  for (const auto& [id, w] : processes_) watched.insert(id);
  // Attaching loads catalogs (up to a second for a new kind of process): a sweep stops after its
  // budget and the next one goes on, so ticks of watched processes are not held up for long.
  const double budget_end = snapshot::stuck_clock_now() + kSweepBudgetSeconds;
  for (int pid : sweep_.candidates(watched)) {
    if (snapshot::stuck_clock_now() > budget_end) break;
    int code = 0;
    // Host-wide, a process without coroutines is the rule, not news; one we may not read or
    // that failed otherwise is reported once.
    if (attach(pid, false, &code)) continue;
    if (code == util::kExitNoCoroutines) {
      sweep_.exclude_no_coroutines(pid);
    } else if (code != util::kExitTargetExited && code != util::kExitNoProcess &&
               code != util::kExitNotInspectable) {
      Event e;
      e.kind = EventKind::kError;
      e.time = std::chrono::system_clock::now();
      e.pid = pid;
      e.command = comm_of(pid);
      e.reason = reason_of(code);
      e.message = "not watched: " + std::string(reason_of(code));
      e.container = container_id_of(pid);
      emit(e);
      sweep_.exclude(pid);
    } else {
      sweep_.exclude(pid);
    }
  }
}

double Watcher::next_wake() const {
  return next_poll_ > 0 ? std::min(next_tick_, next_poll_) : next_tick_;
}

void Watcher::poll_probes(double now) {
  bool open = false;
  for (auto& [id, w] : processes_) open |= w->poll_probe();
  next_poll_ = open ? now + kProbePollSeconds : 0.0;
}

bool Watcher::step(double now) {
  if (now < next_tick_) {
    poll_probes(now);
    return true;
  }
  if (config_.all && now >= next_sweep_) sweep(now);
  for (auto it = processes_.begin(); it != processes_.end();) {
    std::vector<Event> events;
    TickReport report;
    const double t0 = snapshot::stuck_clock_now();
    const bool alive = it->second->tick(now, &events, &report);
    const double took = snapshot::stuck_clock_now() - t0;
    const std::string kind = report.rescan ? "rescan" : "recheck";
    ++scans_total_[kind];
    scan_seconds_.try_emplace(kind, kScanBuckets).first->second.observe(took);
    if (!report.error_reason.empty()) ++scan_errors_[report.error_reason];
    for (const Event& e : events) emit(e);
    it = alive ? std::next(it) : processes_.erase(it);
  }
  // Ticks keep to the interval's grid; a slow step skips the ticks it overran.
  next_tick_ += config_.settings.interval_s;
  if (next_tick_ <= now) next_tick_ = now + config_.settings.interval_s;
  poll_probes(now);
  publish(now);
  return config_.all || !processes_.empty();
}

namespace {

Labels process_labels(const ProcessWatch& w) {
  return {{"pid", std::to_string(w.pid())}, {"command", w.command()}, {"container", w.container()}};
}

// One process's point series, at most `max_series`; the rest summed into function="other".
void add_point_samples(const ProcessWatch& w, double now, size_t max_series, Family* stuck,
                       Family* unchanged) {
  std::vector<PointGauge> gauges = w.point_gauges(now);
  std::stable_sort(gauges.begin(), gauges.end(),
                   [](const PointGauge& a, const PointGauge& b) { return a.count > b.count; });
  size_t other[2] = {0, 0};
  bool has_other[2] = {false, false};
  size_t kept = 0;
  for (const PointGauge& g : gauges) {
    const int fam = g.confirmed ? 0 : 1;
    if (kept >= max_series) {
      other[fam] += g.count;
      has_other[fam] = true;
      continue;
    }
    ++kept;
    Labels l = process_labels(w);
    l.emplace_back("function", g.key.function);
    l.emplace_back("file", g.key.file);
    l.emplace_back("line", g.key.line > 0 ? std::to_string(g.key.line) : "");
    (g.confirmed ? stuck : unchanged)->samples.push_back({"", std::move(l), double(g.count)});
  }
  for (int fam = 0; fam < 2; ++fam) {
    if (!has_other[fam]) continue;
    Labels l = process_labels(w);
    l.emplace_back("function", "other");
    l.emplace_back("file", "");
    l.emplace_back("line", "");
    (fam == 0 ? stuck : unchanged)->samples.push_back({"", std::move(l), double(other[fam])});
  }
}

// The diagnoses reported at each process's last rescan (watch/diagnosis_watch.h).
void add_diagnosis_families(
    const std::map<std::pair<int, uint64_t>, std::unique_ptr<ProcessWatch>>& processes,
    std::vector<Family>* families) {
  Family failed{"asyncprobe_failed_coroutines",
                "Coroutines whose promise holds an exception, by exception type.",
                "gauge",
                {}};
  Family orphaned{"asyncprobe_orphaned_coroutines",
                  "Suspended coroutines no live memory points to (they can never resume).",
                  "gauge",
                  {}};
  Family cycles{
      "asyncprobe_await_cycles", "Await cycles (coroutines awaiting each other).", "gauge", {}};
  Family deadlocks{"asyncprobe_thread_deadlocks",
                   "Thread deadlocks (cycles of threads waiting on each other's locks).",
                   "gauge",
                   {}};
  Family gone{"asyncprobe_lock_owner_gone",
              "Threads waiting on a lock whose owner exited or died holding it.",
              "gauge",
              {}};
  for (const auto& [id, w] : processes) {
    const DiagnosisGauges& g = w->diagnosis_gauges();
    for (const auto& [type, n] : g.failed_by_type) {
      Labels l = process_labels(*w);
      l.emplace_back("exception_type", type);
      failed.samples.push_back({"", std::move(l), static_cast<double>(n)});
    }
    orphaned.samples.push_back({"", process_labels(*w), double(g.orphaned_coroutines)});
    cycles.samples.push_back({"", process_labels(*w), double(g.await_cycles)});
    deadlocks.samples.push_back({"", process_labels(*w), double(g.thread_deadlocks)});
    gone.samples.push_back({"", process_labels(*w), double(g.lock_owner_gone)});
  }
  for (Family* fam : {&failed, &orphaned, &cycles, &deadlocks, &gone})
    families->push_back(std::move(*fam));
}

void add_self_samples(std::vector<Family>* families) {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double cpu = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                     static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  families->push_back({"process_cpu_seconds_total",
                       "CPU time the daemon used (user and system).",
                       "counter",
                       {{"", {}, cpu}}});
  families->push_back({"process_max_resident_memory_bytes",
                       "The daemon's peak resident memory.",
                       "gauge",
                       {{"", {}, static_cast<double>(ru.ru_maxrss) * 1024.0}}});
}

}  // namespace

void Watcher::publish(double now) {
  if (page_ == nullptr) return;
  std::vector<Family> f;
  f.push_back({"asyncprobe_build_info",
               "asyncprobe version; value 1.",
               "gauge",
               {{"", {{"version", "0.1.0"}}, 1}}});
  f.push_back({"asyncprobe_watched_processes",
               "Processes being watched.",
               "gauge",
               {{"", {}, static_cast<double>(processes_.size())}}});
  Family coroutines{"asyncprobe_coroutines", "Coroutine frames found, by state.", "gauge", {}};
  Family stuck{"asyncprobe_stuck_coroutines",
               "Coroutines confirmed not resumed past the stuck threshold, by suspend point "
               "(0 once recovered).",
               "gauge",
               {}};
  Family unchanged{"asyncprobe_unchanged_coroutines",
                   "Coroutines unchanged in memory past the stuck threshold whose resumption "
                   "could not be ruled out, by suspend point (0 once recovered).",
                   "gauge",
                   {}};
  Family period{"asyncprobe_rescan_period_seconds",
                "Seconds between full rescans of a process (bounded by their CPU cost).",
                "gauge",
                {}};
  for (const auto& [id, w] : processes_) {
    for (const auto& [state, n] : w->state_counts()) {
      Labels l = process_labels(*w);
      l.emplace_back("state", state);
      coroutines.samples.push_back({"", std::move(l), static_cast<double>(n)});
    }
    add_point_samples(*w, now, config_.settings.max_point_series, &stuck, &unchanged);
    period.samples.push_back({"", process_labels(*w), w->rescan_period_s()});
  }
  f.push_back(std::move(coroutines));
  f.push_back(std::move(stuck));
  f.push_back(std::move(unchanged));
  f.push_back(std::move(period));
  add_diagnosis_families(processes_, &f);
  f.push_back({"asyncprobe_catalog_loads_total",
               "Objects whose coroutine catalog was loaded (ELF, debug file, DWARF).",
               "counter",
               {{"", {}, static_cast<double>(catalogs_->loads())}}});
  f.push_back({"asyncprobe_catalog_reuses_total",
               "Objects whose catalog another watched process had already loaded (shared).",
               "counter",
               {{"", {}, static_cast<double>(catalogs_->reuses())}}});
  Family scans{"asyncprobe_scans_total",
               "Ticks done, by kind (recheck of known frames, rescan).",
               "counter",
               {}};
  for (const char* kind : {"recheck", "rescan"}) {
    scans.samples.push_back({"", {{"kind", kind}}, static_cast<double>(scans_total_[kind])});
  }
  f.push_back(std::move(scans));
  Family errors{
      "asyncprobe_scan_errors_total", "Attach and scan failures, by reason.", "counter", {}};
  for (const auto& [reason, n] : scan_errors_) {
    errors.samples.push_back({"", {{"reason", reason}}, static_cast<double>(n)});
  }
  f.push_back(std::move(errors));
  Family events{"asyncprobe_events_total", "Events written, by event.", "counter", {}};
  for (const auto& [kind, n] : events_total_) {
    events.samples.push_back({"", {{"event", kind}}, static_cast<double>(n)});
  }
  f.push_back(std::move(events));
  Family durations{
      "asyncprobe_scan_duration_seconds", "Wall time of one tick, by kind.", "histogram", {}};
  for (const auto& [kind, h] : scan_seconds_) h.append_to(durations, {{"kind", kind}});
  f.push_back(std::move(durations));
  add_self_samples(&f);
  page_->set(render_exposition(f));
}

}  // namespace asyncprobe::watch
