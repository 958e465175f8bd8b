// Timeline export of `asyncprobe trace --timeline FILE.json`, in the Chrome Trace Event Format
// (JSON object form: {"traceEvents": [...], "displayTimeUnit": "ns"}), which Perfetto UI and
// chrome://tracing open:
//   - "M" metadata events name the process and one track per thread;
//   - an "X" (complete) slice per coroutine run, nested when a run resumed another inside it;
//   - an "X" slice per blocking syscall made inside a coroutine (nested in the run that made it)
//     and per event-loop stall (enclosing the runs it consists of);
//   - flow events ("s" on the awaiting coroutine's run, "f" with "bp": "e" on the awaited
//     one's run) from awaiter to awaited.
// Timestamps are microseconds since the first event, with nanosecond decimals.
// tests/fixtures/trace_event_schema.json is the schema the output is checked against.
#pragma once

#include <cstdint>
#include <map>
#include <ostream>
#include <string>

#include "userspace/trace/trace_model.h"

namespace asyncprobe::output {

struct TimelineInfo {
  int pid = 0;
  std::string command;
  uint64_t base_ts = 0;  // CLOCK_MONOTONIC ns shown as 0
  std::map<uint32_t, std::string> thread_names;
};

struct TimelineStats {
  size_t slices = 0, flows = 0, blocking = 0, stalls = 0;
};

TimelineStats write_chrome_trace(std::ostream& out, const trace::TraceModel& model,
                                 const TimelineInfo& info);

// JSON string literal (with quotes) for arbitrary bytes: escapes control characters, quotes and
// backslashes, and replaces invalid UTF-8 with U+FFFD.
std::string json_quote(const std::string& s);

}  // namespace asyncprobe::output
