// `asyncprobe trace`: eBPF timeline of coroutine resumes, exact suspended times, blocking calls
// made inside coroutines and event-loop stalls of a running process. See docs/TRACE.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "userspace/cli/cli_options.h"

namespace asyncprobe::cli {

struct TraceOptions {
  int pid = 0;
  double duration_s = 0;  // 0: until Ctrl-C, SIGTERM or the target's exit
  double block_threshold_s = 0.010;
  std::string timeline;
  bool json = false;
  std::string output;
  std::vector<std::string> debug_dirs;
  bool calibrate = true;
  uint32_t ringbuf_mb = 16;
};

// argv[0] is "trace".
ParseResult parse_trace_args(int argc, char** argv, TraceOptions* o);

// argv[0] is "trace". Parses its options, prints the report, returns an ExitCode.
int trace_main(int argc, char** argv);

}  // namespace asyncprobe::cli
