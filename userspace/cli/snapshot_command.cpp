#include "userspace/cli/snapshot_command.h"

#include <fstream>
#include <iostream>

#include "userspace/cli/startup_watch.h"
#include "userspace/diagnose/diagnose.h"
#include "userspace/kernel/resume_probe.h"
#include "userspace/output/report_csv.h"
#include "userspace/output/report_json.h"
#include "userspace/output/report_text.h"
#include "userspace/snapshot/snapshot_taker.h"
#include "userspace/snapshot/stuck_check.h"
#include "userspace/util/exit_codes.h"

namespace asyncprobe::cli {

const char kSnapshotUsage[] = R"(usage: asyncprobe [snapshot] -p PID [options]

Shows every live C++20 coroutine of a running process as an async stack: who awaits
whom, where each is suspended (file:line of its co_await), and which look stuck.
Reads the target's memory; never stops it, never writes to it.

options:
  -p, --pid PID          target process
  --window DURATION      stuck check: a second look after DURATION; a coroutine is stuck
                         when a resume probe saw it not resumed during the window (root or
                         CAP_BPF+CAP_PERFMON), unchanged when it only looked the same
                         (default 1s; 0 = off)
  --no-probe             no resume probe: coroutines that look the same are `unchanged`
  --json | --csv         machine-readable output (schema: docs/SNAPSHOT_FORMAT.md)
  --format FMT           text, json or csv (instead of --json or --csv)
  -o, --output FILE      write the report to FILE (a .json or .csv name needs that format)
  --debug-dir DIR        extra debug-file root (searched like /usr/lib/debug; repeatable)
  --unicode              draw trees with Unicode box characters
  --full-names           print long library function names whole (default: return types,
                         then template and parameter lists, folded past 100 characters)
  -h, --help             this text

exit codes: 0 ok, 1 internal error, 2 usage, 3 no such process, 4 permission denied,
  5 kernel thread or zombie, 6 not a 64-bit x86-64 ELF process, 7 no coroutine code in
  the target, 8 target exited during the scan
)";

ParseResult parse_snapshot_args(int argc, char** argv, SnapshotOptions* o) {
  OptionParser p("snapshot");
  p.pid(&o->pid);
  p.duration("--window", &o->window_s, DurationRange::kZeroOrMore);
  bool json = false, csv = false;
  CLI::Option* json_opt = p.flag("--json", &json);
  CLI::Option* csv_opt = p.flag("--csv", &csv);
  CLI::Option* format_opt = p.choice("--format", &o->format, {"text", "json", "csv"}, "format");
  p.conflict(json_opt, csv_opt);
  p.conflict(format_opt, json_opt);
  p.conflict(format_opt, csv_opt);
  p.text("-o,--output", &o->output);
  p.texts("--debug-dir", &o->debug_dirs);
  p.flag("--unicode", &o->unicode);
  p.flag("--full-names", &o->full_names);
  p.flag("--no-probe", &o->no_probe);
  ParseResult r = p.parse(argc, argv);
  if (!r.ok || r.help) return r;
  if (json) o->format = "json";
  if (csv) o->format = "csv";
  std::string error;
  if (o->pid == 0) {
    error = "no target: give -p PID";
  } else if (!o->output.empty()) {
    error = check_output_name(o->output, o->format, "choose the format with --json or --csv");
  }
  if (!error.empty()) {
    r.ok = false;
    r.error = error;
  }
  return r;
}

namespace {

// Set while the snapshot is taken: a failure then is "exited" when the target is gone.
StartupWatch* g_startup = nullptr;

int fail(const snapshot::SnapshotError& e) {
  return g_startup != nullptr ? g_startup->fail(e.message, e.code)
                              : fail_with_message(e.message, e.code);
}

void write_report(std::ostream& out, const model::Snapshot& snap, const SnapshotOptions& o) {
  if (o.format == "json") {
    output::write_json_report(out, snap);
  } else if (o.format == "csv") {
    output::write_csv_report(out, snap);
  } else {
    output::TextReportOptions text;
    text.unicode = o.unicode;
    if (o.full_names) text.max_name_chars = 0;
    output::write_text_report(out, snap, text);
  }
}

int run_snapshot(const SnapshotOptions& o) {
  StartupWatch watch(o.pid);
  watch.set_doing("taking the snapshot");
  g_startup = &watch;
  struct Clear {
    ~Clear() { g_startup = nullptr; }
  } clear;
  snapshot::SnapshotTaker taker(snapshot::SnapshotSession{o.pid, o.debug_dirs});
  snapshot::SnapshotError err;
  if (!taker.attach(&err)) return fail(err);
  model::Snapshot snap, first;
  if (o.window_s > 0) {
    kernel::BpfResumeProber prober;
    if (!snapshot::take_with_stuck_check(taker, o.window_s, o.no_probe ? nullptr : &prober,
                                         "--no-probe", &snap, &err, &first)) {
      return fail(err);
    }
  } else if (!taker.take(&snap, &err)) {
    return fail(err);
  }
  taker.mark_running(&snap);
  diagnose::diagnose(snap, o.window_s > 0 ? &first : nullptr);
  std::ofstream file;
  std::ostream* out = &std::cout;
  if (!o.output.empty()) {
    file.open(o.output);
    if (!file) return fail_with_message("cannot write " + o.output, util::kExitUsage);
    out = &file;
  }
  write_report(*out, snap, o);
  return util::kExitOk;
}

}  // namespace

int snapshot_main(int argc, char** argv) {
  SnapshotOptions o;
  if (int rc = finish_parse(parse_snapshot_args(argc, argv, &o), "snapshot", kSnapshotUsage);
      rc >= 0) {
    return rc;
  }
  return run_snapshot(o);
}

}  // namespace asyncprobe::cli
