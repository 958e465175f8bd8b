// `asyncprobe trace -p PID` and blocking-call reports for a process started with
// `asyncprobe run --trace` / `--blocking`, through its socket: no root, no BPF. The events come
// from the library's in-process trampolines (userspace/preload/tracer.h); the counts are exact.
#pragma once

#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "userspace/model/preload_reports.h"
#include "userspace/preload/protocol.h"

namespace asyncprobe::trace {

struct PreloadTraceOptions {
  double duration_s = 10.0;
  bool events = true;             // also fetch every resume event (frames per coroutine)
  double poll_interval_s = 0.05;  // how often events are drained (their time resolution)
  // Polled between drains: stop early when it returns true (tests, or an interrupted CLI).
  std::function<bool()> stop_early;
  // Called once recording has begun.
  std::function<void()> on_started;
};

// Records for opts.duration_s (or until stop_early) and fills `report` (sorted). `events`, when
// not null, receives every resume event in arrival order. False with a one-line `why` and an
// ExitCode in `code`.
bool preload_trace_collect(int pid, const PreloadTraceOptions& opts,
                           model::PreloadTraceReport* report,
                           std::vector<preload_proto::ResumeEvent>* events, std::string* why,
                           int* code);

// The blocking calls the target recorded so far (it must run with `asyncprobe run --blocking`).
bool preload_blocking_collect(int pid, model::PreloadBlockingReport* report, std::string* why,
                              int* code);

}  // namespace asyncprobe::trace
