#include "userspace/cli/cli_options.h"

#include <signal.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <iostream>

#include "userspace/util/exit_codes.h"

namespace asyncprobe::cli {

std::optional<double> parse_duration(const std::string& text) {
  if (text.empty() || text.size() > 32) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || errno != 0 || !std::isfinite(v) || v < 0) return std::nullopt;
  std::string unit(end);
  double scale = 0;
  if (unit.empty() || unit == "s") {
    scale = 1;
  } else if (unit == "ms") {
    scale = 1e-3;
  } else if (unit == "us") {
    scale = 1e-6;
  } else if (unit == "m" || unit == "min") {
    scale = 60;
  } else if (unit == "h") {
    scale = 3600;
  } else {
    return std::nullopt;
  }
  double seconds = v * scale;
  if (seconds > 7 * 24 * 3600.0) return std::nullopt;
  return seconds;
}

bool parse_pid(const std::string& s, int* pid) {
  if (s.empty() || s.size() > 10) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  long v = std::strtol(s.c_str(), nullptr, 10);
  if (v <= 0 || v > 0x3fffffff) return false;
  *pid = static_cast<int>(v);
  return true;
}

bool OptionCursor::next() {
  if (++i_ >= argc_) return false;
  name_ = argv_[i_];
  has_inline_ = false;
  auto eq = name_.find('=');
  if (name_.rfind("--", 0) == 0 && eq != std::string::npos) {
    inline_value_ = name_.substr(eq + 1);
    name_.resize(eq);
    has_inline_ = true;
  }
  return true;
}

bool OptionCursor::value(std::string* out, std::string* error) {
  if (has_inline_) {
    *out = inline_value_;
    return true;
  }
  if (i_ + 1 >= argc_) {
    *error = "option " + name_ + " needs a value";
    return false;
  }
  *out = argv_[++i_];
  return true;
}

bool parse_ringbuf_mb(const std::string& s, uint32_t* mb, std::string* error) {
  int v = 0;
  if (!parse_pid(s, &v) || v > 1024) {
    *error = "invalid --ringbuf-mb '" + s + "': 1..1024";
    return false;
  }
  *mb = static_cast<uint32_t>(v);
  return true;
}

int fail_with_message(const std::string& message, int code) {
  std::cerr << "asyncprobe: " << message << "\n";
  return code;
}

int check_subcommand_start(bool parsed, const std::string& parse_error, bool help,
                           const char* usage, int pid) {
  if (!parsed) return fail_with_message(parse_error, util::kExitUsage);
  if (help) {
    std::cout << usage;
    return util::kExitOk;
  }
  if (kill(pid, 0) != 0 && errno == ESRCH) {
    return fail_with_message("no process with pid " + std::to_string(pid), util::kExitNoProcess);
  }
  return -1;
}

bool parse_cli(int argc, char** argv, CliOptions* opts, std::string* error) {
  std::vector<std::string> args(argv + 1, argv + argc);
  size_t i = 0;
  if (!args.empty() && (args[0] == "snapshot" || args[0] == "watch" || args[0] == "trace" ||
                        args[0] == "profile" || args[0] == "run")) {
    opts->command = args[0];
    i = 1;
  }
  auto value_of = [&](const std::string& arg, const std::string& name, std::string* out) -> bool {
    // Accepts "--name=value" and "--name value" (and "-x value" for short names).
    if (arg.rfind(name + "=", 0) == 0 && name.size() > 2) {
      *out = arg.substr(name.size() + 1);
      return true;
    }
    if (arg == name) {
      if (i + 1 >= args.size()) return false;
      *out = args[++i];
      return true;
    }
    return false;
  };
  for (; i < args.size(); ++i) {
    const std::string& a = args[i];
    std::string v;
    if (a == "--") {
      opts->run_argv.assign(args.begin() + static_cast<long>(i) + 1, args.end());
      break;
    }
    if (a == "-h" || a == "--help") {
      opts->help = true;
    } else if (a == "-V" || a == "--version") {
      opts->version = true;
    } else if (a == "--json") {
      opts->format = "json";
    } else if (a == "--csv") {
      opts->format = "csv";
    } else if (a == "--unicode") {
      opts->unicode = true;
    } else if (a == "--full-names") {
      opts->full_names = true;
    } else if (a == "--no-probe") {
      opts->no_probe = true;
    } else if (value_of(a, "-p", &v) || value_of(a, "--pid", &v)) {
      if (!parse_pid(v, &opts->pid)) {
        *error = "invalid PID '" + v + "': expected a positive number";
        return false;
      }
    } else if (value_of(a, "-o", &v) || value_of(a, "--output", &v)) {
      opts->output = v;
    } else if (value_of(a, "--format", &v)) {
      if (v != "text" && v != "json" && v != "csv") {
        *error = "unknown format '" + v + "': expected text, json or csv";
        return false;
      }
      opts->format = v;
    } else if (value_of(a, "--window", &v) || value_of(a, "-d", &v) ||
               value_of(a, "--duration", &v) || value_of(a, "--interval", &v) ||
               value_of(a, "--stuck-threshold", &v)) {
      auto d = parse_duration(v);
      if (!d) {
        *error = "invalid duration '" + v + "': use e.g. 500ms, 1s, 2m or 0";
        return false;
      }
      if (a.rfind("--window", 0) == 0) {
        opts->window_s = *d;
      } else if (a.rfind("--interval", 0) == 0) {
        opts->interval_s = *d;
      } else if (a.rfind("--stuck-threshold", 0) == 0) {
        opts->stuck_threshold_s = *d;
      } else {
        opts->duration_s = *d;
      }
    } else if (value_of(a, "--debug-dir", &v)) {
      opts->debug_dirs.push_back(v);
    } else {
      *error = "unknown option '" + a + "' (see --help)";
      return false;
    }
  }
  if (!opts->help && !opts->version && opts->command != "run" && opts->pid == 0) {
    *error = "no target: give -p PID";
    return false;
  }
  return true;
}

const char* usage_text() {
  return R"(usage: asyncprobe [snapshot] -p PID [options]
       asyncprobe watch -p PID [--interval 1s] [--stuck-threshold 5s]

Shows every live C++20 coroutine of a running process as an async stack: who awaits
whom, where each is suspended (file:line of its co_await), and which look stuck.
Reads the target's memory; never stops it, never writes to it.

options:
  -p, --pid PID          target process
  --window DURATION      stuck detection: take a second look after DURATION (default 1s;
                         0 = off). [stuck] only when known not resumed in the window (a
                         resume probe, root or CAP_BPF+CAP_PERFMON); frames that merely
                         look the same are [unchanged]
  --no-probe             no resume probe (nothing attached to the target): frames that look
                         the same are [unchanged], never [stuck]
  --json | --csv         machine-readable output (schema: docs/SNAPSHOT_FORMAT.md)
  --format FMT           text, json or csv
  -o, --output FILE      write the report to FILE
  --debug-dir DIR        extra debug-file root (searched like /usr/lib/debug)
  --unicode              draw trees with Unicode box characters
  --full-names           print long library function names whole (default: return types,
                         then template and parameter lists, folded past 100 characters)
  -h, --help             this text
  -V, --version          version

exit codes: 0 ok, 1 internal error, 2 usage, 3 no such process, 4 permission denied,
  5 kernel thread or zombie, 6 not a 64-bit x86-64 ELF process, 7 no coroutine code in
  the target, 8 target exited during the scan
)";
}

}  // namespace asyncprobe::cli
