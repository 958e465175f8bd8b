// Command-line parsing for the asyncprobe CLI, in the style of perf and bpftrace: a subcommand
// (default: snapshot), `-p PID`, `-o FILE`, `-d DURATION`, long options with `=` or a space.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace asyncprobe {

struct CliOptions {
  std::string command = "snapshot";  // snapshot | watch | trace | profile | run
  int pid = 0;
  std::string format = "text";  // text | json | csv
  std::string output;           // -o FILE; empty = stdout
  double window_s = 1.0;        // --window
  double duration_s = 10.0;     // -d
  double interval_s = 1.0;      // watch --interval
  double stuck_threshold_s = 5.0;
  std::vector<std::string> debug_dirs;  // --debug-dir (repeatable)
  bool unicode = false;
  bool full_names = false;  // --full-names: text report prints names unshortened
  bool help = false;
  bool version = false;
  std::vector<std::string> run_argv;  // after `--` for `run`
};

// Parses "1.5s", "500ms", "2m", "250us", "0", or a bare number of seconds. nullopt when invalid.
std::optional<double> parse_duration(const std::string& text);

// Parses a process id: decimal digits only, 1..0x3fffffff. false when invalid.
bool parse_pid(const std::string& s, int* pid);

// Parses argv. On error returns false with a one-line message in `error`.
bool parse_cli(int argc, char** argv, CliOptions* opts, std::string* error);

const char* usage_text();

}  // namespace asyncprobe
