// `asyncprobe profile`: async-aware CPU profiles (perf_event sampling, DWARF unwinding, the
// running coroutine's async parents joined above its resume frame) and await profiles (where
// coroutines wait, from periodic snapshots). See docs/PROFILE.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "userspace/cli/cli_options.h"

namespace asyncprobe::cli {

struct ProfileOptions {
  int pid = 0;
  double duration_s = 0;  // 0: until Ctrl-C, SIGTERM or the target's exit
  int hz = 0;             // after parsing: the mode's default when -F was not given
  std::string output;
  std::string format;  // empty: from -o's extension, else text
  bool await = false;
  bool trace = false;  // take the running / waiting coroutines from the trace probes
  bool kernel = false;
  bool full_names = false;
  std::vector<std::string> debug_dirs;
  uint32_t ringbuf_mb = 32;
  bool ringbuf_mb_given = false;  // CPU profile without it: sized to the rate and CPUs
};

// argv[0] is "profile".
ParseResult parse_profile_args(int argc, char** argv, ProfileOptions* o);

// argv[0] is "profile". Parses its options, writes the profile, returns an ExitCode.
int profile_main(int argc, char** argv);

}  // namespace asyncprobe::cli
