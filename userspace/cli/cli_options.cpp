#include "userspace/cli/cli_options.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "userspace/output/profile_export.h"
#include "userspace/util/exit_codes.h"
#include "userspace/util/format.h"

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

namespace {

// CLI11 converts the transformed text to the bound variable: doubles are written exactly.
std::string exact(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

// "--word": an option (ours or not), never meant as the value of the option before it. A value
// that really starts with "--" can be given as --name=--value.
bool looks_like_long_option(const std::string& arg) {
  return arg.size() > 2 && starts_with(arg, "--") &&
         std::isalpha(static_cast<unsigned char>(arg[2])) != 0;
}

// CLI11's messages for the errors our own checks do not catch first, as one lower-case line.
std::string cli11_message(const CLI::ParseError& e) {
  std::string m = e.what();
  if (!m.empty()) m[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(m[0])));
  return m;
}

}  // namespace

OptionParser::OptionParser(std::string command) : app_("", std::move(command)) {
  app_.set_help_flag();
  app_.allow_extras();  // unknown options are reported by parse() in our words
  // Repeats are counted and reported by parse(); CLI11 must not throw or silently keep one.
  app_.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  flag("-h,--help", &help_);
}

CLI::Option* OptionParser::flag(const std::string& names, bool* value) {
  return app_.add_flag(names, *value)->disable_flag_override();
}

CLI::Option* OptionParser::flag_with_value(const std::string& name,
                                           const std::string& default_value, std::string* value) {
  return app_.add_flag(name + "{" + default_value + "}", *value);
}

CLI::Option* OptionParser::text(const std::string& names, std::string* value) {
  return app_.add_option(names, *value);
}

CLI::Option* OptionParser::texts(const std::string& names, std::vector<std::string>* values) {
  CLI::Option* o =
      app_.add_option(names, *values)->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  repeatable_.push_back(o);
  return o;
}

CLI::Option* OptionParser::pid(int* value) {
  return app_.add_option("-p,--pid", *value)
      ->transform(CLI::Validator(
          [](std::string& s) -> std::string {
            int pid = 0;
            if (!parse_pid(s, &pid)) return "invalid PID '" + s + "': expected a positive number";
            return "";
          },
          "PID"));
}

CLI::Option* OptionParser::duration(const std::string& names, double* seconds, DurationRange range,
                                    double max_s) {
  // The message names the option as the user is most likely to have written it (its long name).
  const std::string shown = names.substr(names.rfind(',') + 1);
  return app_.add_option(names, *seconds)
      ->transform(CLI::Validator(
          [range, max_s, shown](std::string& s) -> std::string {
            const std::string what = "invalid duration '" + s + "' for " + shown;
            const std::optional<double> d = parse_duration(s);
            if (!d) return what + ": use e.g. 500ms, 10s, 2m";
            if (range == DurationRange::kAboveZero && *d <= 0) return what + ": must be above 0";
            if (max_s > 0 && *d > max_s) return what + ": at most " + util::format_duration(max_s);
            s = exact(*d);
            return "";
          },
          "DURATION"));
}

CLI::Option* OptionParser::count(const std::string& names, int* value, int first, int last,
                                 const std::string& what) {
  return app_.add_option(names, *value)
      ->transform(CLI::Validator(
          [first, last, what](std::string& s) -> std::string {
            int v = 0;
            if (!parse_pid(s, &v) || v < first || v > last) {
              return "invalid " + what + " '" + s + "': " + std::to_string(first) + ".." +
                     std::to_string(last);
            }
            return "";
          },
          "N"));
}

CLI::Option* OptionParser::choice(const std::string& names, std::string* value,
                                  std::vector<std::string> allowed, const std::string& what) {
  std::string list;
  for (size_t i = 0; i < allowed.size(); ++i) {
    list += (i == 0 ? "" : i + 1 == allowed.size() ? " or " : ", ") + allowed[i];
  }
  return app_.add_option(names, *value)
      ->check(CLI::Validator(
          [allowed, list, what](std::string& s) -> std::string {
            if (std::find(allowed.begin(), allowed.end(), s) != allowed.end()) return "";
            return "unknown " + what + " '" + s + "': expected " + list;
          },
          "NAME"));
}

CLI::Option* OptionParser::ringbuf_mb(uint32_t* mb) {
  return app_.add_option("--ringbuf-mb", *mb)
      ->transform(CLI::Validator(
          [](std::string& s) -> std::string {
            int v = 0;
            if (!parse_pid(s, &v) || v > 1024) return "invalid --ringbuf-mb '" + s + "': 1..1024";
            return "";
          },
          "N"));
}

void OptionParser::conflict(CLI::Option* a, CLI::Option* b) { a->excludes(b); }

bool OptionParser::is_option(const std::string& arg) const {
  const std::string name = arg.substr(0, arg.find('='));
  for (const CLI::Option* o : app_.get_options()) {
    if (o->check_name(name)) return true;
  }
  return false;
}

bool OptionParser::takes_value(const std::string& arg) const {
  for (const CLI::Option* o : app_.get_options()) {
    if (o->check_name(arg)) return o->get_items_expected_min() > 0;
  }
  return false;
}

// A value-taking option at the end, or followed by another option: CLI11 would report it in its
// own words, or take the next option as the value (`-o --json` writing a file named "--json").
std::string OptionParser::missing_value(const std::vector<std::string>& args) const {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") break;
    if (!starts_with(a, "-")) {
      if (stop_at_argument_) break;
      continue;
    }
    const size_t eq = a.find('=');
    if (starts_with(a, "--") && eq != std::string::npos) {
      // --name=VALUE: the value is in the same argument, and may be missing (`--pid=`).
      const std::string name = a.substr(0, eq);
      if (eq + 1 == a.size() && takes_value(name)) return "option " + name + " needs a value";
      continue;
    }
    if (!takes_value(a)) continue;
    if (i + 1 >= args.size() || args[i + 1] == "--" || is_option(args[i + 1]) ||
        looks_like_long_option(args[i + 1])) {
      return "option " + a + " needs a value";
    }
    ++i;
  }
  return "";
}

std::string OptionParser::repeated_option() const {
  for (const CLI::Option* o : app_.get_options()) {
    if (o->count() <= 1) continue;
    if (std::find(repeatable_.begin(), repeatable_.end(), o) != repeatable_.end()) continue;
    return "option " + o->get_name() + " given more than once";
  }
  return "";
}

ParseResult OptionParser::parse(int argc, char** argv, std::vector<std::string>* rest) {
  ParseResult r;
  std::vector<std::string> args(argv + 1, argv + argc);
  auto fail = [&r](std::string message) {
    r.ok = false;
    r.error = std::move(message);
    return r;
  };
  if (std::string m = missing_value(args); !m.empty()) return fail(m);
  if (stop_at_argument_) app_.prefix_command();
  try {
    app_.parse(argc, argv);
  } catch (const CLI::ValidationError& e) {
    // "--pid: invalid PID 'x': ..." from our transformers: the value's own message.
    std::string m = e.what();
    const size_t colon = m.find(": ");
    return fail(colon == std::string::npos ? m : m.substr(colon + 2));
  } catch (const CLI::ExcludesError& e) {
    std::string m = e.what();  // "--json excludes --csv"
    const size_t at = m.find(" excludes ");
    if (at != std::string::npos) m = m.substr(0, at) + " and " + m.substr(at + 10) + " conflict";
    return fail(m);
  } catch (const CLI::ParseError& e) {
    return fail(cli11_message(e));
  }
  r.help = help_;
  if (help_) return r;
  if (std::string m = repeated_option(); !m.empty()) return fail(m);
  std::vector<std::string> left = app_.remaining();
  if (!left.empty() && left.front() == "--" && stop_at_argument_) {
    left.erase(left.begin());
  } else if (!left.empty() && starts_with(left.front(), "-") && left.front() != "-" &&
             left.front() != "--") {
    return fail("unknown option '" + left.front() + "'");
  } else if (!left.empty() && !stop_at_argument_) {
    return fail("unexpected argument '" + left.front() + "'");
  }
  if (rest != nullptr) *rest = std::move(left);
  return r;
}

int fail_with_message(const std::string& message, int code) {
  std::cerr << "asyncprobe: " << message << "\n";
  return code;
}

int usage_error(const std::string& command, const std::string& message) {
  const std::string help =
      command.empty() ? "asyncprobe --help" : "asyncprobe " + command + " --help";
  return fail_with_message(message + " (see " + help + ")", util::kExitUsage);
}

int finish_parse(const ParseResult& parsed, const std::string& command, const char* usage) {
  if (!parsed.ok) return usage_error(command, parsed.error);
  if (parsed.help) {
    std::cout << usage;
    return util::kExitOk;
  }
  return -1;
}

int check_process_exists(int pid) {
  if (kill(pid, 0) != 0 && errno == ESRCH) {
    return fail_with_message("no process with pid " + std::to_string(pid), util::kExitNoProcess);
  }
  return -1;
}

std::string check_output_name(const std::string& path, const std::string& format,
                              const std::string& choose) {
  std::string lower = path;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::string named;
  if (lower.size() > 4 && lower.compare(lower.size() - 4, 4, ".csv") == 0) {
    named = "csv";
  } else {
    const output::ProfileFormat f =
        output::profile_format_for_path(lower, output::ProfileFormat::kText);
    if (f != output::ProfileFormat::kText) named = output::profile_format_name(f);
  }
  if (named.empty() || named == format) return "";
  return "-o " + path + " names a " + named + " file but the report is " + format + ": " + choose;
}

std::string check_output_path(const std::string& option, const std::string& path) {
  if (path.empty() || path == "-") return "";
  auto fail = [&](const std::string& why) {
    return "cannot write " + path + " (" + option + "): " + why;
  };
  struct stat st {};
  if (stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return fail("it is a directory");
    if (access(path.c_str(), W_OK) != 0) return fail(std::strerror(errno));
    return "";
  }
  if (errno != ENOENT) return fail(std::strerror(errno));
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  if (stat(dir.c_str(), &st) != 0) return fail(std::strerror(errno));
  if (!S_ISDIR(st.st_mode)) return fail(dir + " is not a directory");
  if (access(dir.c_str(), W_OK | X_OK) != 0) return fail(std::strerror(errno));
  return "";
}

}  // namespace asyncprobe::cli
