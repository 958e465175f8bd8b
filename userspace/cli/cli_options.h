// Command-line parsing for the asyncprobe CLI, in the style of perf and bpftrace: a subcommand
// (default: snapshot), `-p PID`, `-o FILE`, `-d DURATION`, long options with `=` or a space.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace asyncprobe::cli {

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
  bool no_probe = false;    // --no-probe: stuck check from memory only (never `stuck`)
  bool full_names = false;  // --full-names: text report prints names unshortened
  bool help = false;
  bool version = false;
  std::vector<std::string> run_argv;  // after `--` for `run`
};

// Parses "1.5s", "500ms", "2m", "250us", "0", or a bare number of seconds. nullopt when invalid.
std::optional<double> parse_duration(const std::string& text);

// Parses a process id: decimal digits only, 1..0x3fffffff. false when invalid.
bool parse_pid(const std::string& s, int* pid);

// Walks a subcommand's arguments one option at a time: "--name=value" is split, otherwise an
// option's value is the next argument.
class OptionCursor {
 public:
  OptionCursor(int argc, char** argv) : argc_(argc), argv_(argv) {}
  // Moves to the next option (argv[1] first); false after the last.
  bool next();
  // The option as written, without any "=value": "-p", "--pid", "--format".
  const std::string& name() const { return name_; }
  // The option's value; false with "option X needs a value" in *error when there is none.
  bool value(std::string* out, std::string* error);

 private:
  int argc_;
  char** argv_;
  int i_ = 0;
  std::string name_;
  std::string inline_value_;
  bool has_inline_ = false;
};

// --ringbuf-mb: 1..1024 MiB. false with a one-line message in *error otherwise.
bool parse_ringbuf_mb(const std::string& s, uint32_t* mb, std::string* error);

// Prints "asyncprobe: MESSAGE" on stderr and returns `code`.
int fail_with_message(const std::string& message, int code);

// What every subcommand checks once its arguments are parsed: -1 to go on, else the exit code to
// return (usage error printed, --help printed, or no process with that pid).
int check_subcommand_start(bool parsed, const std::string& parse_error, bool help,
                           const char* usage, int pid);

// Parses argv. On error returns false with a one-line message in `error`.
bool parse_cli(int argc, char** argv, CliOptions* opts, std::string* error);

const char* usage_text();

}  // namespace asyncprobe::cli
