// `asyncprobe run [options] -- CMD ARGS...`: runs CMD with libasyncprobe-preload.so (LD_PRELOAD),
// no privileges needed. asyncprobe execs CMD in its own place, so CMD keeps the pid, the parent,
// the terminal and the exit status it would have had; the library removes itself from the
// environment so that programs CMD starts do not inherit it (unless --follow-children).
#pragma once

#include <string>
#include <vector>

namespace asyncprobe::cli {

// argv[0] is "run". Returns only on error (an exit code: 2 usage, 1 the library is missing,
// 4 CMD is set-user-ID, 6 CMD is not a dynamic x86-64 program, 126 CMD not executable, 127 CMD
// not found); on success CMD replaces this process.
int run_main(int argc, char** argv);

const char* run_usage_text();

// What run_main would set up, without exec'ing: for tests and for --dry-run.
struct RunPlan {
  std::vector<std::string> argv;                         // CMD ARGS...
  std::vector<std::pair<std::string, std::string>> env;  // variables to set
  std::vector<std::string> unset;                        // variables to remove
};
// Parses options; false with a one-line error.
bool plan_run(const std::vector<std::string>& args, RunPlan* plan, std::string* error, bool* help);

// Where libasyncprobe-preload.so, the blocking library and the helper are looked for: the
// directory of $ASYNCPROBE_PRELOAD_DIR, then next to the asyncprobe binary, then ../lib/asyncprobe.
std::string find_preload_file(const std::string& name);

}  // namespace asyncprobe::cli
