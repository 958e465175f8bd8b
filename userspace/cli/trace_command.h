// `asyncprobe trace`: eBPF timeline of coroutine resumes, exact suspended times, blocking calls
// made inside coroutines and event-loop stalls of a running process. See docs/TRACE.md.
#pragma once

#include <string>
#include <vector>

#include "userspace/kernel/trace_probes.h"  // collect_trace_functions (tools/bench, tests)

namespace asyncprobe::cli {

// argv[0] is "trace". Parses its own options, prints the report, returns an ExitCode.
int trace_main(int argc, char** argv);

// The usage text of `asyncprobe trace`.
const char* trace_usage_text();

}  // namespace asyncprobe::cli
