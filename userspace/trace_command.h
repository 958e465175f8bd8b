// `asyncprobe trace`: eBPF timeline of coroutine resumes, exact suspended times, blocking calls
// made inside coroutines and event-loop stalls of a running process. See docs/TRACE.md.
#pragma once

#include <string>
#include <vector>

#include "userspace/coroutine_index.h"
#include "userspace/trace_model.h"
#include "userspace/trace_session.h"

namespace asyncprobe {

// argv[0] is "trace". Parses its own options, prints the report, returns an ExitCode.
int trace_main(int argc, char** argv);

// The usage text of `asyncprobe trace`.
const char* trace_usage_text();

// Every coroutine function of the target's catalogs as probe specs (file offsets of its resume,
// destroy and cleanup functions, attached through /proc/PID/root) and, at the same positions,
// the model's function table. Objects that cannot be opened are skipped with a warning.
void collect_trace_functions(const CoroutineIndex& index, int pid,
                             std::vector<TraceFunctionSpec>* specs, std::vector<TraceFunction>* fns,
                             std::vector<std::string>* warnings);

}  // namespace asyncprobe
