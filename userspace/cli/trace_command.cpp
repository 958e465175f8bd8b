#include "userspace/cli/trace_command.h"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>
#include <unordered_map>

#include "userspace/cli/startup_watch.h"
#include "userspace/kernel/trace_calibrate.h"
#include "userspace/kernel/trace_probes.h"
#include "userspace/kernel/trace_session.h"
#include "userspace/output/preload_report.h"
#include "userspace/output/trace_report.h"
#include "userspace/output/trace_timeline.h"
#include "userspace/process/preload_client.h"
#include "userspace/process/stack_unwind.h"
#include "userspace/snapshot/async_stacks.h"
#include "userspace/snapshot/snapshot_taker.h"
#include "userspace/trace/preload_trace.h"
#include "userspace/trace/suspended_at_end.h"
#include "userspace/trace/trace_model.h"
#include "userspace/util/exit_codes.h"
#include "userspace/util/stop_request.h"

namespace asyncprobe::cli {

namespace {

const char kUsage[] =
    "usage: asyncprobe trace -p PID [-d DURATION] [--block-threshold DURATION]\n"
    "                        [--timeline FILE.json] [--json] [-o FILE]\n"
    "  Traces the coroutines of a running process with eBPF (root, or CAP_BPF and\n"
    "  CAP_PERFMON): resumes, time running and suspended per coroutine function and suspend\n"
    "  point, blocking syscalls made inside coroutines, event-loop stalls, and the coroutines\n"
    "  still suspended at the end. A uprobe on every resume costs the target CPU time per\n"
    "  resume: 4.2 us to 28 us where measured so far (docs/TRACE.md). Each trace measures\n"
    "  it on this machine before attaching (unless --no-calibrate) and its report ends with\n"
    "  the measured cost and the estimated overhead.\n"
    "  Without those privileges, a process started with `asyncprobe run --trace` is traced\n"
    "  in-process instead, by its own user: exact resume counts per coroutine function.\n"
    "options:\n"
    "  -p, --pid PID              process to trace\n"
    "  -d, --duration DURATION    how long, above 0 (e.g. 10s, 500ms); without -d: until\n"
    "                             Ctrl-C, SIGTERM or the target's exit\n"
    "  --block-threshold DURATION report blocking calls and event-loop stalls at least this\n"
    "                             long (default 10ms)\n"
    "  --timeline FILE.json       write a Chrome trace event file (Perfetto UI,\n"
    "                             chrome://tracing): a track per thread, a slice per\n"
    "                             coroutine run, flows from awaiter to awaited\n"
    "  --json                     the report as JSON\n"
    "  -o, --output FILE          write the report to FILE (a .json name needs --json)\n"
    "  --debug-dir DIR            also look for debug files under DIR (repeatable)\n"
    "  --ringbuf-mb N             ring buffer size in MiB (default 16)\n"
    "  --no-calibrate             use default per-event costs for the overhead estimate\n"
    "                             instead of measuring them at start (saves ~0.2 s)\n"
    "  -h, --help                 this text\n"
    "exit codes: 0 ok, 2 usage, 3 no such process, 4 not permitted (privileges), 6 unsupported\n"
    "  (no kernel BTF / BPF), 7 no coroutine code in the target, 1 internal error\n";

// `trace -p` over the run socket: resume counts from the in-process engine.
int preload_trace_main(int pid, const trace::PreloadTraceOptions& opts, const std::string& format,
                       std::ostream& out, std::ostream& err) {
  model::PreloadTraceReport report;
  std::vector<preload_proto::ResumeEvent> events;
  std::string why;
  int code = util::kExitOk;
  if (!trace::preload_trace_collect(pid, opts, &report, opts.events ? &events : nullptr, &why,
                                    &code)) {
    err << "asyncprobe: " << why << "\n";
    return code;
  }
  if (format == "json") {
    output::write_trace_report_json(out, report);
  } else {
    output::write_trace_report_text(out, report);
  }
  return util::kExitOk;
}

using util::monotonic_ns;

// After the stop request that ends a trace, the end snapshot must be done this soon, so that the
// whole exit (snapshot, detach, report) takes well under a second whatever the target's size.
constexpr uint64_t kEndSnapshotBudgetNs = 300'000'000;

std::string read_first_line(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

// Set while the eBPF trace starts: a failure then is "exited" when the target is gone.
StartupWatch* g_startup = nullptr;

int fail(const std::string& message, int code) {
  return g_startup != nullptr ? g_startup->fail(message, code) : fail_with_message(message, code);
}

// The report goes to -o FILE or stdout. nullptr (message printed, *rc set) when FILE cannot be
// written.
std::ostream* open_output(const std::string& path, std::ofstream* file, int* rc) {
  if (path.empty()) return &std::cout;
  file->open(path);
  if (!*file) {
    *rc = fail("cannot write " + path, util::kExitUsage);
    return nullptr;
  }
  return file;
}

// Without root or BPF: a target started with `asyncprobe run --trace` counts its own resumes and
// serves them to its user over its socket. Returns nullopt when it does not, with a hint for
// the eBPF error the caller reports instead.
std::optional<int> trace_in_process(const TraceOptions& o, std::string* hint) {
  std::string why;
  int code = 0;
  auto c = process::PreloadConnection::open(o.pid, &why, &code);
  if (c == nullptr && code == util::kExitBusy) return fail_with_message(why, code);
  if (c == nullptr) {
    *hint = "; without them, start it with `asyncprobe run --trace` and trace it as its own user";
    return std::nullopt;
  }
  if (!c->has_feature(preload_proto::kFeatureTrace)) {
    *hint = "; pid " + std::to_string(o.pid) +
            " runs under `asyncprobe run` without --trace: restart it with `asyncprobe run "
            "--trace` to trace it without them";
    return std::nullopt;
  }
  c.reset();  // the session opens its own connection
  if (!o.timeline.empty()) {
    return usage_error("trace",
                       "--timeline needs the eBPF engine: in-process tracing records no syscall "
                       "or scheduler events");
  }
  std::ofstream file;
  int rc = util::kExitOk;
  std::ostream* out = open_output(o.output, &file, &rc);
  if (out == nullptr) return rc;
  util::install_stop_handlers();
  trace::PreloadTraceOptions opts;
  // -d, or until Ctrl-C / SIGTERM / the target's exit.
  opts.duration_s = o.duration_s > 0 ? o.duration_s : 365.0 * 24 * 3600;
  opts.stop_early = [] { return util::stop_count() != 0; };
  opts.on_started = [&o] {
    std::cerr << "asyncprobe: tracing pid " << o.pid
              << " in-process (`asyncprobe run --trace`, no root needed)"
              << (o.duration_s > 0 ? "" : "; Ctrl-C to stop") << "\n"
              << std::flush;
  };
  rc = preload_trace_main(o.pid, opts, o.json ? "json" : "text", *out, std::cerr);
  out->flush();
  return rc;
}

// One eBPF trace from attach to report: parse -> prepare -> attach -> record -> finish -> write.
struct EbpfTrace {
  EbpfTrace(const TraceOptions& opts, std::string btf_path)
      : o(opts),
        btf(std::move(btf_path)),
        taker(snapshot::SnapshotSession{opts.pid, opts.debug_dirs}) {}

  const TraceOptions& o;
  const std::string btf;
  snapshot::SnapshotTaker taker;
  std::optional<process::TraceUnwinder> unwinder;  // once the target is known to be traceable
  std::string comm;
  output::TraceReport report;
  kernel::TraceProbePlan plan;
  kernel::TraceCosts costs;
  std::unique_ptr<kernel::TraceSession> session;
  // Frames that exist at the start (address -> trace::function_hash of the name): if still
  // suspended at the end without having run, they were suspended before the trace began.
  std::unordered_map<uint64_t, uint64_t> at_start;
  bool have_start = false;         // the first snapshot was taken
  uint64_t start_snapshot_ns = 0;  // how long it took
  uint64_t stop_seen_ts = 0;       // when the recording noticed a stop request (0: it did not)
  // The trace's end: records after it (the probes run until detached) are not counted, so that
  // the model and the end snapshot describe the same moment (a frame destroyed, and its address
  // reused, while the probes were being detached is still the frame the snapshot saw).
  uint64_t end_ts = UINT64_MAX;
};

// The coroutine code of the target as the snapshot knows it, the probe plan, the costs. -1 to go
// on, else the exit code (message printed).
int prepare(EbpfTrace* t) {
  const TraceOptions& o = t->o;
  snapshot::SnapshotError serr;
  if (!t->taker.attach(&serr)) return fail(serr.message, serr.code);
  t->comm = g_startup != nullptr ? g_startup->command()
                                 : read_first_line("/proc/" + std::to_string(o.pid) + "/comm");
  output::TraceReport& report = t->report;
  report.pid = o.pid;
  report.command = t->comm;
  report.block_threshold_ns = static_cast<uint64_t>(o.block_threshold_s * 1e9);

  kernel::TraceError terr;
  if (!kernel::plan_trace_probes(t->taker.index(), o.pid, t->comm, &t->plan, &report.warnings,
                                 &terr)) {
    return fail(terr.message, terr.code);
  }
  report.functions_probed = t->plan.specs.size();
  if (o.calibrate) {
    std::string cerr;
    if (!kernel::calibrate_trace_costs(&t->costs, &cerr)) {
      report.warnings.push_back("cost calibration failed (" + cerr + "): default costs used");
    }
  }
  t->unwinder.emplace(o.pid, o.debug_dirs);
  if (!t->unwinder->ok()) {
    report.warnings.push_back("blocking calls will have no stacks: " + t->unwinder->error());
  }
  return -1;
}

// Attaches the probes and takes the first look at the frames. -1 to go on, else the exit code.
int attach(EbpfTrace* t) {
  const TraceOptions& o = t->o;
  output::TraceReport& report = t->report;
  kernel::TraceProbeSettings settings;
  settings.block_threshold_ns = report.block_threshold_ns;
  settings.stall_threshold_ns = report.block_threshold_ns;
  settings.ringbuf_bytes = o.ringbuf_mb << 20;
  settings.btf_path = t->btf;

  // From here on signals only count: the trace ends, detaches and reports.
  util::install_stop_handlers();

  kernel::TraceError terr;
  t->session = kernel::attach_trace_probes(t->plan, settings, &report.attach, &terr);
  if (t->session == nullptr) return fail(terr.message, terr.code);
  if (g_startup != nullptr) g_startup->started();
  report.start_ts = monotonic_ns();
  std::cerr << "asyncprobe: tracing pid " << o.pid << " (" << t->comm
            << "): " << report.attach.uprobes << " uprobes on " << t->plan.specs.size()
            << " coroutine functions + " << report.attach.tracepoints << " tracepoints attached in "
            << static_cast<int>(report.attach.attach_seconds * 1e3) << " ms"
            << (report.attach.uprobe_multi ? " (uprobe_multi)" : "") << "; "
            << (o.duration_s > 0 ? "" : "Ctrl-C to stop") << "\n"
            << std::flush;

  // A stop request during the first look ends it: the trace then ends at once.
  try {
    util::InterruptScope scope;
    model::Snapshot first;
    snapshot::SnapshotError serr;
    const uint64_t t0 = monotonic_ns();
    if (t->taker.take(&first, &serr)) {
      t->start_snapshot_ns = monotonic_ns() - t0;
      t->at_start.reserve(first.frames.size());
      for (const auto& f : first.frames) {
        t->at_start.emplace(f.address, trace::function_hash(f.function));
      }
      t->have_start = true;
    }
  } catch (const util::Interrupted&) {
    t->at_start.clear();
    report.warnings.push_back(
        "stopped during the first look at the process: no coroutine is "
        "listed as still suspended at the end");
  }
  return -1;
}

// Feeds the ring buffer to the model until -d passes, a stop signal arrives or the target exits.
void record(EbpfTrace* t, trace::TraceReorder* reorder,
            const kernel::TraceSession::EventHandler& intake,
            const std::function<void(const trace::TraceEvent&)>& sink) {
  const TraceOptions& o = t->o;
  output::TraceReport& report = t->report;
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, o.pid, 0));
  const uint64_t deadline =
      o.duration_s > 0 ? report.start_ts + static_cast<uint64_t>(o.duration_s * 1e9) : 0;
  for (;;) {
    if (util::stop_count() != 0) {
      t->stop_seen_ts = monotonic_ns();
      break;
    }
    uint64_t now = monotonic_ns();
    if (deadline != 0 && now >= deadline) break;
    int wait_ms = 100;
    if (deadline != 0)
      wait_ms = static_cast<int>(std::min<uint64_t>(100, (deadline - now) / 1'000'000 + 1));
    int r = t->session->poll(wait_ms, intake);
    if (r < 0 && r != -EINTR) {
      report.warnings.push_back(std::string("ring buffer poll failed: ") + strerror(-r));
      break;
    }
    reorder->release(sink, false);
    bool exited = false;
    if (pidfd >= 0) {
      pollfd p{pidfd, POLLIN, 0};
      exited = ::poll(&p, 1, 0) > 0;
    } else {
      exited = kill(o.pid, 0) != 0 && errno == ESRCH;
    }
    if (exited) {
      report.target_exited = true;
      break;
    }
  }
  if (pidfd >= 0) close(pidfd);
}

// Still suspended at the end: the last snapshot's frames, merged into async stacks and aged by the
// trace.
void add_suspended_at_end(EbpfTrace* t, trace::TraceModel* model, const model::Snapshot& last) {
  output::TraceReport& report = t->report;
  std::unordered_map<uint64_t, int64_t> index_at_end;
  index_at_end.reserve(last.frames.size());
  for (const auto& f : last.frames) index_at_end.emplace(f.address, f.suspend.index);
  model->resolve_pending(index_at_end);
  const snapshot::AsyncForest forest = snapshot::build_async_forest(last);
  trace::SuspendedAtEndInput in;
  in.last = &last;
  in.forest = &forest;
  in.model = model;
  in.at_start = &t->at_start;
  in.should_stop = [] { return util::interrupt_pending(); };
  report.suspended = trace::group_suspended_at_end(in);
  if (report.suspended.interrupted) {
    report.warnings.push_back(
        "stopped while grouping the coroutines still suspended at the end: "
        "the list is partial");
  }
  for (const auto& w : last.warnings) report.warnings.push_back(w);
}

// The end-of-trace snapshot, taken while the probes still run. After a stop request it must be
// done within kEndSnapshotBudgetNs of it (and a second request ends it at once): false then, with
// a warning saying why the list of suspended coroutines is missing.
bool take_last_snapshot(EbpfTrace* t, model::Snapshot* last) {
  output::TraceReport& report = t->report;
  if (!t->have_start) return false;
  const uint64_t deadline = t->stop_seen_ts != 0 ? t->stop_seen_ts + kEndSnapshotBudgetNs : 0;
  const char* abandoned =
      "the end snapshot was abandoned to honour the stop request within a second: no coroutine "
      "is listed as still suspended at the end (end the trace with -d to have them)";
  if (deadline != 0 && t->start_snapshot_ns > kEndSnapshotBudgetNs) {
    // The first look took longer than the budget: the last one would too. Not even begun.
    report.warnings.push_back(abandoned);
    return false;
  }
  try {
    util::InterruptScope scope(deadline);
    snapshot::SnapshotError serr;
    return t->taker.take(last, &serr);
  } catch (const util::Interrupted&) {
    report.warnings.push_back(abandoned);
    return false;
  }
}

// The end: the last look at the process while the probes still run, then detach and drain.
void finish(EbpfTrace* t, trace::TraceModel* model, trace::TraceReorder* reorder,
            const kernel::TraceSession::EventHandler& intake,
            const std::function<void(const trace::TraceEvent&)>& sink) {
  output::TraceReport& report = t->report;
  uint64_t end_ts = monotonic_ns();
  model::Snapshot last;
  bool have_last = false;
  if (!report.target_exited) {
    have_last = take_last_snapshot(t, &last);
    end_ts = monotonic_ns();
  }
  t->end_ts = end_ts;
  const kernel::TraceProbeEnd probes_end = kernel::detach_trace_probes(t->session.get(), intake);
  report.probes = probes_end.stats;
  report.detach_s = probes_end.detach_s;
  reorder->release(sink, true);
  model->finish(end_ts);
  if (!report.target_exited) {
    for (const trace::ThreadStateAtEnd& st : probes_end.threads) {
      model->add_in_progress(st, end_ts, report.block_threshold_ns, report.block_threshold_ns);
    }
  }
  report.end_ts = end_ts;
  report.duration_s = static_cast<double>(end_ts - report.start_ts) / 1e9;
  report.running_at_end = model->running_at_end();
  if (have_last) {
    // A further stop request cuts the grouping short (the report says so).
    util::InterruptScope scope;
    add_suspended_at_end(t, model, last);
  } else if (report.target_exited) {
    report.warnings.push_back("the target exited during the trace: no end-of-trace snapshot");
  }
  model->finalize();
}

// Thread names, the overhead estimate and the model's own losses.
void summarize(EbpfTrace* t, const trace::TraceModel& model) {
  output::TraceReport& report = t->report;
  for (uint32_t tid : model.threads_seen()) {
    std::string name = read_first_line("/proc/" + std::to_string(t->o.pid) + "/task/" +
                                       std::to_string(tid) + "/comm");
    report.thread_names[tid] = name;
  }
  for (const auto& b : model.blocking()) report.thread_names.emplace(b.tid, "");
  for (const auto& s : model.stalls()) report.thread_names.emplace(s.tid, "");

  report.overhead.calibrated = t->costs.measured;
  report.overhead.uprobe_ns = t->costs.uprobe_ns;
  report.overhead.syscall_pair_ns = t->costs.syscall_pair_ns;
  report.overhead.sched_ns = t->costs.sched_ns;
  // Losses (malformed records, runs beyond the timeline's cap, ...) are the report's to print.
  report.overhead.uprobe_hits = report.probes.resume_hits + report.probes.destroy_hits;
  report.overhead.syscall_hits = report.probes.syscall_hits;
  report.overhead.sched_hits = report.probes.context_switches;
}

// --timeline, then the report. The report is written even when the timeline cannot be.
int write_reports(const EbpfTrace& t, const trace::TraceModel& model) {
  const TraceOptions& o = t.o;
  const output::TraceReport& report = t.report;
  int rc = util::kExitOk;
  if (!o.timeline.empty()) {
    std::ofstream tl(o.timeline);
    if (!tl) {
      rc = fail("cannot write " + o.timeline, util::kExitUsage);
    } else {
      output::TimelineInfo info;
      info.pid = o.pid;
      info.command = t.comm;
      info.base_ts =
          std::min(report.start_ts, model.first_ts() != 0 ? model.first_ts() : report.start_ts);
      info.thread_names = report.thread_names;
      output::write_chrome_trace(tl, model, info);
    }
  }
  std::ofstream file;
  std::ostream* out = open_output(o.output, &file, &rc);
  if (out == nullptr) return rc;
  if (o.json) {
    output::write_trace_json(*out, report, model);
  } else {
    output::write_trace_text(*out, report, model);
  }
  out->flush();
  return rc;
}

int trace_with_ebpf(const TraceOptions& o, const std::string& btf) {
  StartupWatch watch(o.pid);
  watch.set_doing("starting the trace");
  g_startup = &watch;
  struct Clear {
    ~Clear() { g_startup = nullptr; }
  } clear;
  EbpfTrace t(o, btf);
  if (int rc = prepare(&t); rc >= 0) return rc;
  if (int rc = attach(&t); rc >= 0) return rc;
  trace::TraceModelOptions mopts;
  mopts.keep_slices = !o.timeline.empty();
  mopts.stall_threshold_ns = t.report.block_threshold_ns;
  trace::TraceModel model(t.plan.functions, mopts, &*t.unwinder);
  trace::TraceReorder reorder;
  const kernel::TraceSession::EventHandler intake = [&](trace::TraceEvent&& e) {
    reorder.push(std::move(e));
  };
  const std::function<void(const trace::TraceEvent&)> sink = [&](const trace::TraceEvent& e) {
    if (trace::header_of(e).ts <= t.end_ts) model.handle(e);
  };
  record(&t, &reorder, intake, sink);
  finish(&t, &model, &reorder, intake, sink);
  summarize(&t, model);
  return write_reports(t, model);
}

}  // namespace

ParseResult parse_trace_args(int argc, char** argv, TraceOptions* o) {
  OptionParser p("trace");
  p.pid(&o->pid);
  p.duration("-d,--duration", &o->duration_s, DurationRange::kAboveZero);
  p.duration("--block-threshold", &o->block_threshold_s, DurationRange::kAboveZero);
  p.text("--timeline", &o->timeline);
  p.flag("--json", &o->json);
  p.text("-o,--output", &o->output);
  p.texts("--debug-dir", &o->debug_dirs);
  bool no_calibrate = false;
  p.flag("--no-calibrate", &no_calibrate);
  p.ringbuf_mb(&o->ringbuf_mb);
  ParseResult r = p.parse(argc, argv);
  if (!r.ok || r.help) return r;
  o->calibrate = !no_calibrate;
  std::string error;
  if (o->pid == 0) {
    error = "trace needs -p PID";
  } else if (!o->output.empty()) {
    error = check_output_name(o->output, o->json ? "json" : "text", "choose JSON with --json");
  }
  if (!error.empty()) {
    r.ok = false;
    r.error = error;
  }
  return r;
}

int trace_main(int argc, char** argv) {
  TraceOptions o;
  if (int rc = finish_parse(parse_trace_args(argc, argv, &o), "trace", kUsage); rc >= 0) return rc;
  // Before anything is attached: a trace never runs to its end only to find it cannot write.
  for (const auto& [option, path] : {std::pair{"-o", o.output}, {"--timeline", o.timeline}}) {
    if (std::string m = check_output_path(option, path); !m.empty()) {
      return fail(m, util::kExitUsage);
    }
  }
  if (int rc = check_process_exists(o.pid); rc >= 0) return rc;
  kernel::TraceError terr;
  const std::string btf = kernel::kernel_btf_path();
  if (!kernel::check_trace_support(btf, &terr)) {
    std::string hint;
    if (auto rc = trace_in_process(o, &hint)) return *rc;
    return fail(terr.message + hint, terr.code);
  }
  return trace_with_ebpf(o, btf);
}

}  // namespace asyncprobe::cli
