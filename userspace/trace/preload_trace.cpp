#include "userspace/trace/preload_trace.h"

#include <chrono>
#include <map>
#include <set>
#include <thread>
#include <unordered_map>

#include "userspace/process/preload_client.h"
#include "userspace/util/exit_codes.h"

namespace asyncprobe::trace {

namespace {

using FramesByFunction = std::unordered_map<uint32_t, std::set<uint64_t>>;

// Drains the target's events every poll interval until the duration ends (or stop_early), then
// once more; `absorb` gets every batch. `last` is the final poll (counts and totals).
bool record(process::PreloadConnection& c, const PreloadTraceOptions& opts,
            const std::function<void(const process::PreloadConnection::TracePoll&)>& absorb,
            process::PreloadConnection::TracePoll* last, std::string* why, int* code) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(opts.duration_s);
  auto interval =
      std::chrono::duration<double>(opts.poll_interval_s > 0 ? opts.poll_interval_s : 0.05);
  while (std::chrono::steady_clock::now() < deadline) {
    if (opts.stop_early && opts.stop_early()) break;
    std::this_thread::sleep_for(std::min<std::chrono::duration<double>>(
        interval, std::chrono::duration<double>(deadline - std::chrono::steady_clock::now())));
    if (!c.trace_poll(last, false, why)) {
      *code = util::kExitTargetExited;
      return false;
    }
    absorb(*last);
  }
  if (!c.trace_poll(last, true, why)) {
    *code = util::kExitTargetExited;
    return false;
  }
  absorb(*last);
  return true;
}

// The report of a session: the target's function table (waiting, bounded, for its names) joined
// with the per-function counts and frames.
void fill_report(int pid, process::PreloadConnection& c, uint64_t start_ns,
                 const process::PreloadConnection::TracePoll& poll, uint64_t event_count,
                 const FramesByFunction& frames,
                 const std::vector<preload_proto::ResumeEvent>* events,
                 model::PreloadTraceReport* report) {
  // Names come from the target's tables, computed outside it after start: a session right after
  // start may have to wait for them (bounded).
  for (int i = 0;
       i < 300 && c.refresh_hello() && !c.has_feature(preload_proto::kFeatureTablesComplete); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::vector<process::PreloadConnection::TraceFunction> fns;
  c.trace_functions(&fns);
  std::string comm;
  c.proc_file("comm", &comm);
  while (!comm.empty() && comm.back() == '\n') comm.pop_back();

  *report = model::PreloadTraceReport{};
  report->pid = pid;
  report->command = comm;
  report->mode = "live session";
  report->duration_s = static_cast<double>(poll.now_ns - start_ns) / 1e9;
  report->total_resumes = poll.total_resumes;
  report->events = event_count;
  report->lost_events = poll.lost_events;
  for (const auto& f : fns) report->untraced += f.traced ? 0 : 1;
  for (const auto& cr : poll.counts) {
    model::PreloadTraceFunction f = process::trace_report_function(fns, cr);
    if (auto it = frames.find(cr.function); it != frames.end()) f.frames = it->second.size();
    report->functions.push_back(std::move(f));
  }
  std::map<uint32_t, uint64_t> threads;
  if (events != nullptr) {
    for (const auto& e : *events) threads[e.tid]++;
  }
  for (const auto& [tid, n] : threads) report->threads.emplace_back(static_cast<int>(tid), n);
  model::sort_trace_report(report);
}

}  // namespace

bool preload_trace_collect(int pid, const PreloadTraceOptions& opts,
                           model::PreloadTraceReport* report,
                           std::vector<preload_proto::ResumeEvent>* events, std::string* why,
                           int* code) {
  int dummy = 0;
  if (code == nullptr) code = &dummy;
  auto c = process::PreloadConnection::open(pid, why, code);
  if (c == nullptr) return false;
  if (!c->has_feature(preload_proto::kFeatureTrace)) {
    *why = "pid " + std::to_string(pid) +
           " does not trace in-process: start it with `asyncprobe run --trace`";
    *code = util::kExitUsage;
    return false;
  }
  uint64_t start_ns = 0;
  if (!c->trace_start(opts.events, &start_ns, why)) {
    *code = util::kExitUsage;
    return false;
  }
  if (opts.on_started) opts.on_started();
  FramesByFunction frames;
  uint64_t event_count = 0;
  auto absorb = [&](const process::PreloadConnection::TracePoll& p) {
    for (const auto& e : p.events) {
      frames[e.function].insert(e.frame);
      if (events != nullptr) events->push_back(e);
    }
    event_count += p.events.size();
  };
  process::PreloadConnection::TracePoll poll;
  if (!record(*c, opts, absorb, &poll, why, code)) return false;
  fill_report(pid, *c, start_ns, poll, event_count, frames, events, report);
  return true;
}

bool preload_blocking_collect(int pid, model::PreloadBlockingReport* report, std::string* why,
                              int* code) {
  int dummy = 0;
  if (code == nullptr) code = &dummy;
  auto c = process::PreloadConnection::open(pid, why, code);
  if (c == nullptr) return false;
  if (!c->has_feature(preload_proto::kFeatureBlocking)) {
    *why = "pid " + std::to_string(pid) +
           " does not record blocking calls: start it with `asyncprobe run --blocking`";
    *code = util::kExitUsage;
    return false;
  }
  process::PreloadConnection::BlockingPoll poll;
  if (!c->blocking_poll(0, &poll, why)) {
    *code = util::kExitTargetExited;
    return false;
  }
  std::string comm;
  c->proc_file("comm", &comm);
  while (!comm.empty() && comm.back() == '\n') comm.pop_back();
  *report = model::PreloadBlockingReport{};
  report->pid = pid;
  report->command = comm;
  report->threshold_ns = poll.threshold_ns;
  report->dropped = poll.dropped;
  report->calls = std::move(poll.calls);
  return true;
}

}  // namespace asyncprobe::trace
