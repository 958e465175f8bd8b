// `asyncprobe run [options] -- CMD ARGS...`: runs CMD with libasyncprobe-preload.so (LD_PRELOAD),
// no privileges needed. asyncprobe execs CMD in its own place, so CMD keeps the pid, the parent,
// the terminal and the exit status it would have had; the library removes itself from the
// environment so that programs CMD starts do not inherit it (unless --follow-children).
#pragma once

#include <string>
#include <vector>

#include "userspace/cli/cli_options.h"

namespace asyncprobe::cli {

// What `asyncprobe run` was asked for.
struct RunOptions {
  std::string crash_report, trace_out, blocking_out, socket_dir;  // absolute paths, or empty
  std::vector<std::string> debug_dirs;                            // absolute paths
  bool trace = false, trace_from_start = false, blocking = false, follow = false, json = false;
  bool crash = true, socket = true;
  double blocking_s = 0.010;
  double crash_wait_s = 30;
  std::vector<std::string> argv;  // CMD ARGS...
};

// argv[0] is "run". The command starts at the first argument that is not an option, or after
// "--".
ParseResult parse_run_args(int argc, char** argv, RunOptions* o);

// What run_main sets up before it execs CMD (tests look at it without exec'ing).
struct RunPlan {
  std::vector<std::string> argv;                         // CMD ARGS...
  std::vector<std::pair<std::string, std::string>> env;  // variables to set
  std::vector<std::string> unset;                        // variables to remove
};
// false with a one-line error when the preload library is not installed.
bool plan_run(const RunOptions& o, RunPlan* plan, std::string* error);

// argv[0] is "run". Returns only on error (an exit code: 2 usage, 1 the library is missing,
// 4 CMD is set-user-ID, 6 CMD is not a dynamic x86-64 program, 126 CMD not executable, 127 CMD
// not found); on success CMD replaces this process.
int run_main(int argc, char** argv);

// Where libasyncprobe-preload.so, the blocking library and the helper are looked for: the
// directory of $ASYNCPROBE_PRELOAD_DIR, then next to the asyncprobe binary, then ../lib/asyncprobe.
std::string find_preload_file(const std::string& name);

}  // namespace asyncprobe::cli
