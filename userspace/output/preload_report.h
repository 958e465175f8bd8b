// Reports of the in-process (LD_PRELOAD) engine: resume counts from in-process tracing and
// blocking calls made inside coroutines. The same code renders them in the library at exit
// (`asyncprobe run --trace-out/--blocking-out`) and in asyncprobe for a live process
// (`preload_trace_main`), so both read alike. JSON schemas: asyncprobe.preload-trace/1 and
// asyncprobe.preload-blocking/1 (docs/PRELOAD.md).
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "userspace/model/preload_reports.h"

namespace asyncprobe::output {

void write_trace_report_text(std::ostream& out, const model::PreloadTraceReport& r);
void write_trace_report_json(std::ostream& out, const model::PreloadTraceReport& r);

// Text groups identical calls (same call, call site and async stack) with count, total and max.
void write_blocking_report_text(std::ostream& out, const model::PreloadBlockingReport& r);
void write_blocking_report_json(std::ostream& out, const model::PreloadBlockingReport& r);

}  // namespace asyncprobe::output
