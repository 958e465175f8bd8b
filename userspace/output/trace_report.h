// The report of `asyncprobe trace`: per coroutine function and suspend point (resumes, time
// running, exact time suspended), blocking calls inside coroutines, event-loop stalls, the
// coroutines still suspended at the end with their age and async stack, and the accounting
// (events seen, everything dropped, estimated overhead). Text for people, JSON (--json) for
// machines. It reads the trace model and the probes' named statistics only, never the kernel
// session.
#pragma once

#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "userspace/trace/suspended_at_end.h"
#include "userspace/trace/trace_events.h"
#include "userspace/trace/trace_model.h"

namespace asyncprobe::output {

// An async-stack frame as the report shows it (trace/suspended_at_end.h).
using AsyncStackEntry = trace::AsyncStackEntry;

struct OverheadEstimate {
  bool calibrated = false;
  double uprobe_ns = 0;        // measured (or default) cost of one uprobe hit
  double syscall_pair_ns = 0;  // of one traced syscall (enter + exit programs)
  double sched_ns = 0;         // of one context switch program run
  uint64_t uprobe_hits = 0, syscall_hits = 0, sched_hits = 0;
  double total_ns() const {
    return uprobe_ns * static_cast<double>(uprobe_hits) +
           syscall_pair_ns * static_cast<double>(syscall_hits) +
           sched_ns * static_cast<double>(sched_hits);
  }
};

struct TraceReport {
  int pid = 0;
  std::string command;
  double duration_s = 0;
  uint64_t start_ts = 0;  // CLOCK_MONOTONIC ns when every probe was attached
  uint64_t end_ts = 0;
  bool target_exited = false;
  uint64_t block_threshold_ns = 0;
  size_t functions_probed = 0;
  trace::AttachStats attach;
  double detach_s = 0;
  trace::ProbeStats probes;
  OverheadEstimate overhead;
  trace::SuspendedAtEnd suspended;  // merged into async stacks
  size_t running_at_end = 0;
  std::map<uint32_t, std::string> thread_names;
  std::vector<std::string> warnings;
};

// The async stack of a trace-time moment, resolved to names and suspend points.
std::vector<AsyncStackEntry> resolve_async_stack(const trace::TraceModel& model,
                                                 const std::vector<trace::AsyncFrameRef>& refs);
// "where" of a blocking call: the innermost frame with a source line outside system headers and
// libraries; nullptr when there is none.
const symbolizer::InlineFrame* blocking_site(const trace::BlockingCall& call);

void write_trace_text(std::ostream& out, const TraceReport& report, const trace::TraceModel& model);
void write_trace_json(std::ostream& out, const TraceReport& report, const trace::TraceModel& model);

}  // namespace asyncprobe::output
