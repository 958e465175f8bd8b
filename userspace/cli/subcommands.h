// The dispatch table of the asyncprobe CLI: one row per subcommand (name, one-line summary, main).
// `asyncprobe --help` is generated from it and main() dispatches through it, so a subcommand is
// its own file plus one row here.
#pragma once

#include <string>
#include <vector>

namespace asyncprobe::cli {

struct Subcommand {
  const char* name;
  const char* summary;                 // one line, for `asyncprobe --help`
  int (*main)(int argc, char** argv);  // argv[0] is the subcommand's name
};

// The subcommands in the order `asyncprobe --help` lists them; the first is the default.
const std::vector<Subcommand>& subcommands();

// The row named `name`, or nullptr.
const Subcommand* find_subcommand(const std::string& name);

// `asyncprobe --help`.
std::string help_text();

extern const char kVersion[];

// Runs the command line: `asyncprobe SUB ...`, `asyncprobe -p PID ...` (the default subcommand),
// --help, --version. Returns the exit code.
int dispatch(int argc, char** argv);

}  // namespace asyncprobe::cli
