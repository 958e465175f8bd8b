#include "userspace/cli/top_command.h"

#include <langinfo.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <clocale>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "userspace/cli/cli_options.h"
#include "userspace/top/session.h"
#include "userspace/util/exit_codes.h"

namespace asyncprobe::cli {

namespace {

int usage_error(const std::string& message) {
  std::cerr << "asyncprobe: " << message << " (see --help)\n";
  return util::kExitUsage;
}

// Unicode connectors when asked for, or when the terminal's locale is UTF-8.
bool utf8_locale() {
  std::setlocale(LC_ALL, "");
  const char* codeset = nl_langinfo(CODESET);
  return codeset != nullptr && std::strcmp(codeset, "UTF-8") == 0;
}

}  // namespace

int top_main(int argc, char** argv) {
  CLI::App app{"asyncprobe top: a live view of a process's coroutines, like top(1)",
               "asyncprobe top"};
  std::string pid_text, interval_text = "1s";
  top::TopOptions opts;
  bool unicode = false;
  app.add_option("-p,--pid", pid_text, "process to watch")->required()->type_name("PID");
  app.add_option("--interval", interval_text, "time between refreshes (default 1s)")
      ->type_name("DURATION");
  bool no_probe = false;
  app.add_flag("--no-probe", no_probe,
               "never confirm stuck coroutines with a resume probe: they show as unchanged");
  app.add_flag("--unicode", unicode,
               "box-drawing characters in the stacks (default: when the locale is UTF-8)");
  app.add_option("--debug-dir", opts.debug_dirs, "extra debug-file root (repeatable)")
      ->type_name("DIR");
  app.footer(
      "Keys: arrows or j/k move, Enter opens the point's async stacks, / filters, s sorts,\n"
      "p pauses, ? helps, q quits. Needs a terminal; for a log use `asyncprobe watch`.\n"
      "NO_COLOR set: no colour.");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return util::kExitOk;
  } catch (const CLI::ParseError& e) {
    return usage_error(e.what());
  }
  if (!parse_pid(pid_text, &opts.pid)) return usage_error("invalid pid '" + pid_text + "'");
  auto interval = parse_duration(interval_text);
  if (!interval || *interval < 0.05) {
    return usage_error("invalid --interval '" + interval_text + "': at least 50ms");
  }
  opts.interval_s = *interval;
  if (isatty(STDIN_FILENO) == 0 || isatty(STDOUT_FILENO) == 0) {
    return usage_error(
        "top draws on a terminal and stdin or stdout is not one; "
        "for a stream of events use `asyncprobe watch -p " +
        pid_text + "`");
  }
  bool utf8 = utf8_locale();  // also sets the locale ncurses draws in
  opts.unicode = unicode || utf8;
  opts.color = std::getenv("NO_COLOR") == nullptr;
  opts.probe = !no_probe;
  std::string reason;
  int code = top::run_top(opts, &reason);
  if (!reason.empty()) std::cerr << "asyncprobe top: " << reason << "\n";
  return code;
}

}  // namespace asyncprobe::cli
