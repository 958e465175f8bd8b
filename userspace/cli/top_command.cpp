#include "userspace/cli/top_command.h"

#include <langinfo.h>
#include <unistd.h>

#include <clocale>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "userspace/cli/cli_options.h"
#include "userspace/cli/startup_watch.h"
#include "userspace/kernel/resume_probe.h"
#include "userspace/top/session.h"
#include "userspace/util/exit_codes.h"

namespace asyncprobe::cli {

namespace {

const char kTopUsage[] = R"(usage: asyncprobe top -p PID [options]

A live view of a process's coroutines, like top(1): one row per suspend point (how many
wait there, how many are stuck, the oldest wait, resumes per second where a probe counted
them), refreshed every interval. A coroutine is stuck when a resume probe watched it for a
whole interval and saw no resume (root or CAP_BPF+CAP_PERFMON); otherwise it can only be
counted as unchanged.

options:
  -p, --pid PID          target process
  --interval DURATION    time between refreshes (default 1s, at least 50ms)
  --no-probe             no resume probe: nothing is called stuck, only unchanged
  --unicode              Unicode tree glyphs (default: when the locale is UTF-8)
  --debug-dir DIR        extra debug-file root (repeatable)
  -h, --help             this text

keys: Up/Down or j/k move, Enter opens the point's async stacks, Esc goes back,
  / filters by function or file, s changes the sort, p pauses, ? helps, q or Ctrl-C quits.
Needs a terminal; for a stream of events use `asyncprobe watch`. NO_COLOR: no colour.
)";

// Unicode connectors when the terminal's locale is UTF-8 (this also sets the locale ncurses
// draws in).
bool utf8_locale() {
  std::setlocale(LC_ALL, "");
  const char* codeset = nl_langinfo(CODESET);
  return codeset != nullptr && std::strcmp(codeset, "UTF-8") == 0;
}

}  // namespace

int top_main(int argc, char** argv) {
  top::TopOptions opts;
  bool unicode = false, no_probe = false;
  OptionParser p("top");
  p.pid(&opts.pid);
  p.duration("--interval", &opts.interval_s, DurationRange::kAboveZero);
  p.flag("--no-probe", &no_probe);
  p.flag("--unicode", &unicode);
  p.texts("--debug-dir", &opts.debug_dirs);
  ParseResult r = p.parse(argc, argv);
  if (r.ok && !r.help && opts.pid == 0) {
    r.ok = false;
    r.error = "no target: give -p PID";
  }
  if (r.ok && !r.help && opts.interval_s < 0.05) {
    r.ok = false;
    r.error = "--interval must be at least 50ms";
  }
  if (int rc = finish_parse(r, "top", kTopUsage); rc >= 0) return rc;
  if (isatty(STDIN_FILENO) == 0 || isatty(STDOUT_FILENO) == 0) {
    return usage_error("top",
                       "top draws on a terminal and stdin or stdout is not one; for a "
                       "stream of events use `asyncprobe watch -p " +
                           std::to_string(opts.pid) + "`");
  }
  if (int rc = check_process_exists(opts.pid); rc >= 0) return rc;
  bool utf8 = utf8_locale();
  opts.unicode = unicode || utf8;
  // no-color.org: set and non-empty turns colour off.
  const char* no_color = std::getenv("NO_COLOR");
  opts.color = no_color == nullptr || *no_color == '\0';
  kernel::BpfResumeProber prober;
  if (!no_probe) opts.prober = &prober;
  StartupWatch watch(opts.pid);
  std::string reason;
  bool drawn = false;
  int code = top::run_top(opts, &reason, &drawn);
  if (!drawn && code != util::kExitOk && code != util::kExitUsage && watch.ended()) {
    // Gone before the first view: whatever the failing step said, the cause is the exit.
    watch.set_doing("starting top");
    return watch.fail(reason, code);
  }
  if (!reason.empty()) std::cerr << "asyncprobe top: " << reason << "\n";
  return code;
}

}  // namespace asyncprobe::cli
