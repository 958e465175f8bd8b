// One `asyncprobe top` session: attach once, take a look every interval (unless paused), fold it
// into the wait tracker, redraw, and answer keys in between. Ends on `q`, Ctrl-C, SIGTERM or the
// target's exit, always with the terminal restored and a one-line reason for the caller to print.
#pragma once

#include <string>
#include <vector>

#include "userspace/snapshot/stuck_check.h"

namespace asyncprobe::top {

struct TopOptions {
  int pid = 0;
  double interval_s = 1.0;
  bool unicode = false;
  bool color = true;
  // Confirms stuck coroutines (the kernel's resume probe, given by the CLI); null: --no-probe.
  snapshot::ResumeProber* prober = nullptr;
  std::vector<std::string> debug_dirs;
};

// The exit code (util::ExitCode); *reason gets the line to print once the terminal is back.
int run_top(const TopOptions& opts, std::string* reason, bool* drawn = nullptr);

}  // namespace asyncprobe::top
