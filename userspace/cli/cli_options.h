// Option parsing for every subcommand: CLI11 with asyncprobe's rules on top. An option given twice
// is an error (unless declared repeatable), a value-taking option without its value says so, and
// every usage error is one line, `asyncprobe: MESSAGE (see asyncprobe SUB --help)`, exit 2.
// The value rules (durations, pids, sizes) are CLI11 transformers built on the parsers below.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace asyncprobe::cli {

// Parses "1.5s", "500ms", "2m", "250us", "0", or a bare number of seconds. nullopt when invalid.
std::optional<double> parse_duration(const std::string& text);

// Parses a process id: decimal digits only, 1..0x3fffffff. false when invalid.
bool parse_pid(const std::string& s, int* pid);

// What a duration option accepts beyond parse_duration's rules.
enum class DurationRange {
  kZeroOrMore,  // 0 allowed (it means "off" or "until stopped")
  kAboveZero,
};

// The end of parsing a subcommand's arguments.
struct ParseResult {
  bool ok = true;     // false: a usage error, in `error`
  bool help = false;  // -h/--help: print the usage and exit 0
  std::string error;  // one line, without the "asyncprobe: " prefix
};

// One subcommand's options. Registers -h/--help itself; the subcommand adds the rest.
class OptionParser {
 public:
  explicit OptionParser(std::string command);

  CLI::Option* flag(const std::string& names, bool* value);
  CLI::Option* text(const std::string& names, std::string* value);
  // Repeatable: each occurrence appends.
  CLI::Option* texts(const std::string& names, std::vector<std::string>* values);
  CLI::Option* pid(int* value);  // -p, --pid
  CLI::Option* duration(const std::string& names, double* seconds, DurationRange range,
                        double max_s = 0);
  // --name or --name=VALUE (never the next argument): `default_value` when given bare.
  CLI::Option* flag_with_value(const std::string& name, const std::string& default_value,
                               std::string* value);
  // A whole number in first..last; `what` names it in the error ("frequency").
  CLI::Option* count(const std::string& names, int* value, int first, int last,
                     const std::string& what);
  // One of `allowed`; `what` names it in the error ("format").
  CLI::Option* choice(const std::string& names, std::string* value,
                      std::vector<std::string> allowed, const std::string& what);
  // --ringbuf-mb N: 1..1024 MiB.
  CLI::Option* ringbuf_mb(uint32_t* mb);

  // Options that cannot be given together.
  void conflict(CLI::Option* a, CLI::Option* b);

  // After the first argument that is not an option, the rest is left unparsed (`run CMD ...`).
  void stop_at_first_argument() { stop_at_argument_ = true; }

  // argv[0] is the subcommand's name (or the program's). On success with stop_at_first_argument,
  // *rest holds the first non-option argument and all after it ("--" removed).
  ParseResult parse(int argc, char** argv, std::vector<std::string>* rest = nullptr);

 private:
  std::string missing_value(const std::vector<std::string>& args) const;
  bool takes_value(const std::string& arg) const;
  bool is_option(const std::string& arg) const;
  std::string repeated_option() const;

  CLI::App app_;
  bool help_ = false;
  bool stop_at_argument_ = false;
  std::vector<const CLI::Option*> repeatable_;
};

// Prints "asyncprobe: MESSAGE (see asyncprobe COMMAND --help)" on stderr; returns kExitUsage.
// An empty COMMAND points at `asyncprobe --help`.
int usage_error(const std::string& command, const std::string& message);

// Prints "asyncprobe: MESSAGE" on stderr and returns `code`: errors that are not about usage.
int fail_with_message(const std::string& message, int code);

// What every subcommand does with a ParseResult: -1 to go on, else the exit code to return (usage
// printed for --help, or the usage error printed).
int finish_parse(const ParseResult& parsed, const std::string& command, const char* usage);

// -1 when the process exists, else the "no process with pid N" exit code (message printed).
int check_process_exists(int pid);

// Formats with no file-name inference (snapshot, trace): an -o name whose extension says another
// format than the one chosen is a usage error, so that `-o report.json` without --json does not
// write text into it. "" when fine, else the message. `choose` says how to pick the format.
std::string check_output_name(const std::string& path, const std::string& format,
                              const std::string& choose);

// Output files are checked before anything is attached, so that a trace or profile never runs to
// its end only to find it cannot write: "" when `path` can be written (its directory exists and
// is writable, and `path`, if it exists, is writable and not a directory; "-" is stdout), else
// "cannot write PATH (OPTION): REASON". Nothing is created.
std::string check_output_path(const std::string& option, const std::string& path);

}  // namespace asyncprobe::cli
