// `asyncprobe snapshot -p PID` (the default subcommand): every live coroutine of a running
// process as an async stack, with a second look after --window to mark the stuck ones.
#pragma once

#include <string>
#include <vector>

#include "userspace/cli/cli_options.h"

namespace asyncprobe::cli {

struct SnapshotOptions {
  int pid = 0;
  std::string format = "text";  // text | json | csv
  std::string output;           // -o FILE; empty = stdout
  double window_s = 1.0;        // --window
  std::vector<std::string> debug_dirs;
  bool unicode = false;
  bool no_probe = false;    // --no-probe: the stuck check from memory only (never `stuck`)
  bool full_names = false;  // text report prints names unshortened
};

// argv[0] is "snapshot" (or the program, when the subcommand is implied).
ParseResult parse_snapshot_args(int argc, char** argv, SnapshotOptions* o);

// Parses its options, prints the report, returns an ExitCode.
int snapshot_main(int argc, char** argv);

extern const char kSnapshotUsage[];

}  // namespace asyncprobe::cli
