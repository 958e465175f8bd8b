#include "userspace/cli/profile_command.h"

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
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "userspace/cli/startup_watch.h"
#include "userspace/kernel/profile_session.h"
#include "userspace/kernel/trace_probes.h"
#include "userspace/output/profile_export.h"
#include "userspace/process/kernel_symbols.h"
#include "userspace/process/memory_reader.h"
#include "userspace/process/stack_unwind.h"
#include "userspace/process/target_process.h"
#include "userspace/profile/await_profiler.h"
#include "userspace/profile/await_trace_profile.h"
#include "userspace/profile/cpu_profiler.h"
#include "userspace/profile/running_coroutine.h"
#include "userspace/snapshot/snapshot_taker.h"
#include "userspace/util/exit_codes.h"
#include "userspace/util/stop_request.h"

namespace asyncprobe::cli {

namespace {

// After the stop request that ends a profile, its last snapshot must be done this soon, so that the
// whole exit takes well under a second whatever the target's size (as in trace_command.cpp).
constexpr uint64_t kEndSnapshotBudgetNs = 300'000'000;

constexpr int kDefaultCpuHz = 99;
constexpr int kDefaultAwaitHz = 10;
constexpr int kMaxCpuHz = 1000;
constexpr int kMaxAwaitHz = 100;  // a snapshot scans the heap: more often costs the target

const char kUsage[] =
    "usage: asyncprobe profile -p PID [-d DURATION] [-F HZ] [-o FILE] [--format NAME]\n"
    "                          [--await] [--trace] [--kernel]\n"
    "  CPU profile of a running process (root, or CAP_BPF and CAP_PERFMON): samples every\n"
    "  CPU at HZ with perf events, unwinds each thread's user stack with DWARF CFI, and joins\n"
    "  the async stack of the coroutine that was running above its resume frame, so a hot\n"
    "  coroutine shows under the coroutines awaiting it although they are not on the thread.\n"
    "  --await profiles where coroutines wait instead: suspended wall time per async stack\n"
    "  and suspend point, from periodic snapshots (no BPF needed); with --trace, exact: every\n"
    "  wait from the uprobes `asyncprobe trace` attaches to every coroutine resume.\n"
    "options:\n"
    "  -p, --pid PID           process to profile\n"
    "  -d, --duration DURATION how long, above 0 (e.g. 10s, 500ms); without -d: until\n"
    "                          Ctrl-C, SIGTERM or the target's exit\n"
    "  -F, --frequency HZ      samples per second per CPU (1..1000, default 99); with --await\n"
    "                          snapshots per second (1..100, default 10)\n"
    "  -o, --output FILE       write the profile to FILE (default: stdout)\n"
    "  --format NAME           text, folded, svg, speedscope, pprof or json; default: from\n"
    "                          the extension of -o (.folded .svg .speedscope.json .pb.gz\n"
    "                          .json .txt), else text\n"
    "  --await                 await profile (suspended time) instead of CPU\n"
    "  --trace                 attach the trace probes of `asyncprobe trace` (a uprobe per\n"
    "                          resume: 4.2 us to 28 us of the target's CPU per resume where\n"
    "                          measured, see trace --help): with\n"
    "                          --await every wait is measured exactly (no -F); without, the\n"
    "                          running coroutine is the one the probes name\n"
    "  --kernel                also record kernel stacks of samples taken in the kernel\n"
    "  --full-names            text format: print long function names whole (default: names\n"
    "                          over 100 characters are shortened; other formats keep them)\n"
    "  --debug-dir DIR         also look for debug files under DIR (repeatable)\n"
    "  --ringbuf-mb N          sample ring buffer in MiB (default: CPU profile 0.1 s of\n"
    "                          samples on every CPU, at least 1; --trace 32)\n"
    "  -h, --help              this text\n"
    "exit codes: 0 ok (also when the target exits during the profile: the output says so),\n"
    "  2 usage, 3 no such process, 4 not permitted (privileges), 5 not inspectable,\n"
    "  6 unsupported (no kernel BTF / BPF / perf events), 7 no coroutine code (--await,\n"
    "  --trace),\n"
    "  1 internal error\n";

using util::monotonic_ns;

int64_t realtime_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::string read_first_line(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

std::string read_link(const std::string& path) {
  char buf[4096];
  ssize_t n = readlink(path.c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

// Set while the profile starts: a failure then is "exited" when the target is gone.
StartupWatch* g_startup = nullptr;

int fail(const std::string& message, int code) {
  return g_startup != nullptr ? g_startup->fail(message, code) : fail_with_message(message, code);
}

using util::install_stop_handlers;

// A snapshot that a stop request (or `deadline_ns`, 0: none) cuts short: false with *interrupted
// set then, and the taker's error otherwise.
bool take_interruptible(snapshot::SnapshotTaker* taker, model::Snapshot* out,
                        snapshot::SnapshotError* error, uint64_t deadline_ns, bool* interrupted) {
  *interrupted = false;
  try {
    util::InterruptScope scope(deadline_ns);
    return taker->take(out, error);
  } catch (const util::Interrupted&) {
    *interrupted = true;
    error->message = "interrupted by a stop request";
    return false;
  }
}

std::string seconds_text(double s) {
  std::ostringstream o;
  o.precision(3);
  o << std::fixed << s << " s";
  return o.str();
}

// The target ended the profile: said in the profile and on stderr.
void note_target_exit(model::Profile* p) {
  const std::string msg = "the target exited after " +
                          seconds_text(static_cast<double>(p->duration_ns) / 1e9) +
                          ": the profile covers its life until then";
  p->warnings.push_back(msg);
  std::cerr << "asyncprobe: " << msg << "\n";
}

void fill_header(model::Profile* p, const ProfileOptions& o) {
  p->pid = o.pid;
  p->command = g_startup != nullptr ? g_startup->command()
                                    : read_first_line("/proc/" + std::to_string(o.pid) + "/comm");
  p->executable = read_link("/proc/" + std::to_string(o.pid) + "/exe");
  p->start_unix_ns = realtime_ns();
}

// Runs until the duration passes, a stop signal arrives or the target exits; calls `step` with
// at most `slice_ms` to spend waiting. Returns true when the target exited.
template <typename Step>
bool run_until_end(const ProfileOptions& o, uint64_t start, int slice_ms, Step step) {
  g_startup->started();  // set by profile_main, which watches the target's end too
  const uint64_t deadline =
      o.duration_s > 0 ? start + static_cast<uint64_t>(o.duration_s * 1e9) : 0;
  for (;;) {
    if (util::stop_count() != 0) return false;
    const uint64_t now = monotonic_ns();
    if (deadline != 0 && now >= deadline) return false;
    int wait_ms = slice_ms;
    if (deadline != 0) {
      wait_ms = static_cast<int>(
          std::min<uint64_t>(static_cast<uint64_t>(slice_ms), (deadline - now) / 1'000'000 + 1));
    }
    if (!step(wait_ms)) return false;
    if (g_startup->ended()) return true;
  }
}

int write_output(const ProfileOptions& o, const model::Profile& p) {
  output::ProfileFormat fmt = output::ProfileFormat::kText;
  if (!o.format.empty()) {
    output::parse_profile_format(o.format, &fmt);
  } else if (!o.output.empty()) {
    fmt = output::profile_format_for_path(o.output, output::ProfileFormat::kText);
  }
  std::ofstream file;
  std::ostream* out = &std::cout;
  if (!o.output.empty() && o.output != "-") {
    file.open(o.output, std::ios::binary);
    if (!file) return fail("cannot write " + o.output, util::kExitUsage);
    out = &file;
  }
  std::string error;
  output::ProfileTextOptions text;
  if (o.full_names) text.max_name_chars = 0;
  if (!output::write_profile(*out, p, fmt, &error, text)) return fail(error, util::kExitInternal);
  out->flush();
  return util::kExitOk;
}

// Far above any real blocking call or stall: the profile wants runs and resumes only, not the
// stacks `trace` copies for those.
constexpr uint64_t kNoBlockingReports = 3600ull * 1'000'000'000;

// --trace: the probes of `asyncprobe trace` (runs and resumes only). nullptr with *rc set (the
// message printed) when they cannot be attached.
std::unique_ptr<kernel::TraceSession> attach_profile_probes(const ProfileOptions& o,
                                                            const snapshot::SnapshotTaker& taker,
                                                            model::Profile* p,
                                                            kernel::TraceProbePlan* plan,
                                                            kernel::AttachStats* attach, int* rc) {
  kernel::TraceError terr;
  if (!kernel::plan_trace_probes(taker.index(), o.pid, p->command, plan, &p->warnings, &terr)) {
    *rc = fail(terr.message, terr.code);
    return nullptr;
  }
  kernel::TraceProbeSettings settings;
  settings.block_threshold_ns = kNoBlockingReports;
  settings.stall_threshold_ns = kNoBlockingReports;
  settings.ringbuf_bytes = o.ringbuf_mb << 20;
  settings.btf_path = kernel::kernel_btf_path();
  std::unique_ptr<kernel::TraceSession> session =
      kernel::attach_trace_probes(*plan, settings, attach, &terr);
  if (session == nullptr) *rc = fail(terr.message, terr.code);
  return session;
}

// --await --trace: every leaf wait measured by the trace probes (docs/PROFILE.md).
int run_await_traced(const ProfileOptions& o, snapshot::SnapshotTaker* taker) {
  model::Profile p;
  p.type = model::Profile::Type::kAwait;
  fill_header(&p, o);
  install_stop_handlers();
  kernel::TraceProbePlan plan;
  kernel::AttachStats attach;
  int rc = util::kExitOk;
  std::unique_ptr<kernel::TraceSession> session =
      attach_profile_probes(o, *taker, &p, &plan, &attach, &rc);
  if (session == nullptr) return rc;
  const uint64_t start = monotonic_ns();

  trace::TraceModelOptions mopts;
  mopts.leaf_waits = true;
  mopts.keep_durations = false;  // 16 bytes per resume the profile does not use
  mopts.max_blocking = 0;
  mopts.max_stalls = 0;
  mopts.stall_threshold_ns = kNoBlockingReports;
  trace::TraceModel model(plan.functions, mopts, nullptr);
  // Coroutines already waiting: from the start, with the awaiter edges the snapshot sees.
  model::Snapshot first;
  snapshot::SnapshotError serr;
  bool interrupted = false;
  if (take_interruptible(taker, &first, &serr, 0, &interrupted)) {
    profile::seed_suspended_at_start(first, start, &model);
  } else {
    p.warnings.push_back("the snapshot at the start failed (" + serr.message +
                         "): waits that began before the profile are not counted");
  }
  std::cerr << "asyncprobe: await profile of pid " << o.pid << " (" << p.command
            << "), exact from the trace probes: " << attach.uprobes << " uprobes on "
            << plan.specs.size() << " coroutine functions"
            << (o.duration_s > 0 ? "" : "; Ctrl-C to stop") << "\n"
            << std::flush;

  trace::TraceReorder reorder;
  const kernel::TraceSession::EventHandler intake = [&](trace::TraceEvent&& e) {
    reorder.push(std::move(e));
  };
  // Records after the end (the probes run until detached) would lengthen waits past it.
  uint64_t end = UINT64_MAX;
  auto sink = [&](const trace::TraceEvent& e) {
    if (trace::header_of(e).ts <= end) model.handle(e);
  };
  int poll_error = 0;
  const bool exited = run_until_end(o, start, 100, [&](int wait_ms) {
    const int r = session->poll(wait_ms, intake);
    if (r < 0 && r != -EINTR) {
      poll_error = -r;
      return false;
    }
    reorder.release(sink, false);
    return true;
  });
  // The last look while the probes still run: which waits are still open, and where. After a
  // stop request it must be quick (kEndSnapshotBudgetNs) or it is left out.
  end = monotonic_ns();
  model::Snapshot last;
  const uint64_t deadline = util::stop_count() != 0 ? end + kEndSnapshotBudgetNs : 0;
  const bool have_last =
      !exited && !interrupted && take_interruptible(taker, &last, &serr, deadline, &interrupted);
  if (interrupted) {
    p.warnings.push_back(
        "the snapshot at the end was abandoned to honour the stop request within "
        "a second: waits still open at the end are not counted");
  }
  if (have_last) end = monotonic_ns();
  const kernel::TraceProbeEnd probes_end = kernel::detach_trace_probes(session.get(), intake);
  reorder.release(sink, true);
  model.finish(end);
  const std::unordered_map<uint64_t, int64_t> open =
      have_last ? profile::suspended_at_end(last, model) : std::unordered_map<uint64_t, int64_t>();
  model.close_open_waits(end, open);
  model.resolve_pending(open);
  profile::add_leaf_waits(model, model.take_leaf_waits(), &p);
  p.duration_ns = static_cast<int64_t>(end - start);
  profile::add_leaf_wait_warnings(model, probes_end.stats, &p);
  if (poll_error != 0) {
    p.warnings.push_back(std::string("ring buffer poll failed: ") + strerror(poll_error));
  }
  if (exited) note_target_exit(&p);
  const trace::LeafWaitCounters& c = model.leaf_wait_counters();
  std::cerr << "asyncprobe: " << c.waits << " waits, " << probes_end.stats.resume_hits
            << " resumes, " << probes_end.stats.lost << " records lost\n";
  return write_output(o, p);
}

int run_await(const ProfileOptions& o, snapshot::SnapshotTaker* taker) {
  model::Profile p;
  p.type = model::Profile::Type::kAwait;
  fill_header(&p, o);
  const int64_t interval_ns = 1'000'000'000 / o.hz;
  p.period_ns = interval_ns;
  profile::AwaitProfiler profiler(&p);
  install_stop_handlers();
  std::cerr << "asyncprobe: await profile of pid " << o.pid << " (" << p.command << "): " << o.hz
            << " snapshots/s" << (o.duration_s > 0 ? "" : "; Ctrl-C to stop") << "\n"
            << std::flush;
  const uint64_t start = monotonic_ns();
  uint64_t last = 0;  // start of the previous snapshot
  uint64_t next = start;
  double scan_s = 0;
  uint64_t failed = 0;
  const bool exited = run_until_end(o, start, 50, [&](int wait_ms) {
    uint64_t now = monotonic_ns();
    if (now < next) {
      const uint64_t sleep_ns = std::min<uint64_t>(next - now, uint64_t(wait_ms) * 1'000'000);
      timespec ts{static_cast<time_t>(sleep_ns / 1'000'000'000),
                  static_cast<long>(sleep_ns % 1'000'000'000)};
      nanosleep(&ts, nullptr);
      return true;
    }
    model::Snapshot snap;
    snapshot::SnapshotError err;
    const uint64_t t0 = monotonic_ns();
    bool interrupted = false;
    if (!take_interruptible(taker, &snap, &err, 0, &interrupted)) {
      if (interrupted) return false;  // a stop request: the profile ends now
      failed++;
      next = t0 + static_cast<uint64_t>(interval_ns);
      return true;
    }
    scan_s += static_cast<double>(monotonic_ns() - t0) / 1e9;
    // Each snapshot stands for the wall time since the previous one (the first: one interval).
    const int64_t weight = last == 0 ? interval_ns : static_cast<int64_t>(t0 - last);
    profiler.add(snap, weight);
    last = t0;
    next = std::max(next + static_cast<uint64_t>(interval_ns), t0);
    return true;
  });
  p.duration_ns = static_cast<int64_t>(monotonic_ns() - start);
  const profile::AwaitProfileStats& st = profiler.stats();
  p.warnings.push_back(
      "await profile from " + std::to_string(st.snapshots) +
      " snapshots: each waiting stack is weighted by the time between snapshots (waits shorter "
      "than an interval are sampled, not exact); a coroutine running at a snapshot's instant "
      "counts as waiting at its last suspend point");
  if (st.uncertain > 0) {
    p.warnings.push_back(std::to_string(st.uncertain) +
                         " waiting-stack observations rest on a guessed awaiter edge");
  }
  if (st.unplaced > 0) {
    p.warnings.push_back(std::to_string(st.unplaced) +
                         " waiting-stack observations have a suspend point without a line");
  }
  if (failed > 0) p.warnings.push_back(std::to_string(failed) + " snapshots failed");
  if (exited) note_target_exit(&p);
  std::cerr << "asyncprobe: " << st.snapshots << " snapshots, "
            << static_cast<int>(st.snapshots > 0 ? scan_s * 1e3 / double(st.snapshots) : 0)
            << " ms each\n";
  return write_output(o, p);
}

// The CPU profile's losses and guesses, each counted in a warning.
void add_cpu_warnings(const profile::SamplerStats& c, const profile::CpuProfileStats& st,
                      model::Profile* p) {
  auto note = [p](uint64_t n, const std::string& what) {
    if (n > 0) p->warnings.push_back(std::to_string(n) + " " + what);
  };
  note(c.lost, "samples lost (ring buffer full): raise --ringbuf-mb");
  note(c.stack_failed, "samples without a user stack copy (shown at their pc)");
  note(st.unwind_one_frame, "samples whose stack could not be unwound past the sampled pc");
  note(st.ambiguous,
       "samples in a coroutine with several live frames of it on the stack: not joined");
  note(st.no_candidate,
       "samples in a coroutine whose frame address was not found on the stack: not joined");
  note(st.not_in_snapshot,
       "samples in a coroutine no snapshot had seen yet: its async parents are missing");
  note(st.uncertain, "samples joined through a guessed awaiter edge (marked uncertain)");
  note(st.pump_unmatched,
       "samples in Boost.Asio's pump whose after_suspend argument named no suspended coroutine "
       "(or several): not joined");
  note(st.unwind_left_code,
       "samples whose unwinding reached a return address outside mapped code: cut there");
  note(c.kstack_failed, "kernel stacks could not be read");
  note(st.trace_other,
       "samples in a coroutine of which the trace probes named no run (started before the "
       "probes, or a run they do not follow): its frame was found from the stack words");
}

// The one-line summary on stderr, and with ASYNCPROBE_PROFILE_STATS the costs line.
void print_cpu_stats(const ProfileOptions& o, const profile::CpuProfileStats& st,
                     const profile::RunningCoroutineStats& fs, const profile::SamplerStats& c,
                     const kernel::ProfileSession& session) {
  std::cerr << "asyncprobe: " << st.samples << " samples (" << st.in_coroutine << " in coroutines, "
            << st.joined << " joined"
            << (st.in_pump > 0
                    ? ", " + std::to_string(st.pump_joined) + " of " + std::to_string(st.in_pump) +
                          " in Asio's pump joined to the coroutine it works for"
                    : std::string())
            << (o.trace ? ", " + std::to_string(st.traced) + " named by the trace probes" : "")
            << "), " << c.lost << " lost; " << fs.snapshots << " snapshots\n";
  if (std::getenv("ASYNCPROBE_PROFILE_STATS") != nullptr) {
    // Costs for docs/PROFILE.md (tools/bench/profile-overhead reads this line).
    std::vector<float> t = st.unwind_cpu_us;
    std::sort(t.begin(), t.end());
    std::cerr << "profile-stats samples=" << st.samples
              << " unwind_cpu_us_median=" << (t.empty() ? 0.f : t[t.size() / 2])
              << " unwind_cpu_us_max=" << (t.empty() ? 0.f : t.back()) << " join_cpu_us_per_sample="
              << (st.in_coroutine > 0 ? fs.join_seconds * 1e6 / double(st.in_coroutine) : 0)
              << " snapshots=" << fs.snapshots << " snapshot_cpu_ms_each="
              << (fs.snapshots > 0 ? fs.snapshot_seconds * 1e3 / double(fs.snapshots) : 0)
              << " header_reads=" << fs.header_reads
              << " refreshes_skipped=" << fs.refreshes_skipped << " traced=" << st.traced;
    // The BPF program's time in the target's context per sample (ticks of other processes,
    // which return at the pid filter, included).
    const kernel::ProfileSession::ProgramCpu prog = session.program_cpu();
    const uint64_t target_ticks = c.target_ticks;
    std::cerr << " bpf_ns_per_sample="
              << (prog.runs > 0 && target_ticks > 0 ? prog.run_ns / target_ticks : 0) << "\n";
  }
}

// --trace: the probes keep each thread's running coroutine and the samples read it. nullptr with
// *rc set when they cannot be attached.
std::unique_ptr<kernel::TraceSession> attach_running_probes(const ProfileOptions& o,
                                                            const snapshot::SnapshotTaker& taker,
                                                            model::Profile* p,
                                                            profile::CpuProfiler* profiler,
                                                            int* rc) {
  kernel::TraceProbePlan plan;
  kernel::AttachStats attach;
  std::unique_ptr<kernel::TraceSession> trace =
      attach_profile_probes(o, taker, p, &plan, &attach, rc);
  if (trace == nullptr) return nullptr;
  std::vector<uint64_t> resume_starts;
  for (const trace::TraceFunction& f : plan.functions) {
    resume_starts.push_back(f.fn != nullptr && f.loaded != nullptr ? f.fn->resume + f.loaded->bias
                                                                   : 0);
  }
  profiler->use_trace(std::move(resume_starts));
  return trace;
}

// Starts the perf-event sampling. nullptr with *rc set (the message printed) when refused.
std::unique_ptr<kernel::ProfileSession> start_sampling(const ProfileOptions& o,
                                                       kernel::TraceSession* trace,
                                                       const model::Profile& p, int* rc) {
  kernel::ProfileSessionOptions sopts;
  sopts.pid = o.pid;
  sopts.frequency_hz = o.hz;
  sopts.kernel_stacks = o.kernel;
  sopts.ringbuf_bytes = o.ringbuf_mb_given ? uint64_t{o.ringbuf_mb} << 20 : 0;
  sopts.btf_path = kernel::kernel_btf_path();
  sopts.measure_program = std::getenv("ASYNCPROBE_PROFILE_STATS") != nullptr;
  sopts.trace_threads_fd = trace != nullptr ? trace->threads_map_fd() : -1;
  kernel::TraceError terr;
  std::unique_ptr<kernel::ProfileSession> session = kernel::ProfileSession::start(sopts, &terr);
  if (session == nullptr) {
    *rc = fail(terr.message, terr.code);
    return nullptr;
  }
  std::cerr << "asyncprobe: profiling pid " << o.pid << " (" << p.command << ") at " << o.hz
            << " Hz on " << session->cpus() << " CPUs"
            << (o.duration_s > 0 ? "" : "; Ctrl-C to stop") << "\n"
            << std::flush;
  return session;
}

int run_cpu(const ProfileOptions& o, snapshot::SnapshotTaker* taker, bool have_coroutines) {
  model::Profile p;
  p.type = model::Profile::Type::kCpu;
  fill_header(&p, o);
  p.frequency_hz = o.hz;
  p.period_ns = 1'000'000'000 / o.hz;

  process::TraceUnwinder unwinder(o.pid, o.debug_dirs);
  if (!unwinder.ok()) p.warnings.push_back("stacks are not unwound: " + unwinder.error());
  std::unique_ptr<process::MemoryReader> memory;
  try {
    memory = std::make_unique<process::MemoryReader>(o.pid);
  } catch (const process::TargetError& e) {
    return fail(e.what(), e.code());
  }
  // Samples that name a frame no snapshot has seen refresh it, at most 20 times a second.
  profile::RunningCoroutineFinder finder(taker, memory.get(), 0.05);
  if (have_coroutines) {
    snapshot::SnapshotError serr;
    if (!finder.refresh(&serr)) return fail(serr.message, serr.code);
  } else {
    p.warnings.push_back("the target maps no coroutine code: stacks are not joined");
  }
  process::KernelSymbols kernel;
  if (o.kernel && !kernel.load()) {
    p.warnings.push_back("/proc/kallsyms gave no addresses: kernel frames are shown by address");
  }
  profile::CpuProfiler profiler(&p, &unwinder, &finder, o.kernel ? &kernel : nullptr);
  std::unique_ptr<kernel::TraceSession> trace;
  if (o.trace) {
    int rc = util::kExitOk;
    trace = attach_running_probes(o, *taker, &p, &profiler, &rc);
    if (trace == nullptr) return rc;
  }

  install_stop_handlers();
  // A stop request cuts short a snapshot the running-coroutine finder is taking (it then gives up
  // that refresh), so that the loop below sees the request within its slice.
  util::InterruptScope interrupt_snapshots;
  int rc = util::kExitOk;
  std::unique_ptr<kernel::ProfileSession> session = start_sampling(o, trace.get(), p, &rc);
  if (session == nullptr) return rc;

  // ASYNCPROBE_PROFILE_DISCARD (benchmarks only): drain the ring, process nothing.
  const bool discard = std::getenv("ASYNCPROBE_PROFILE_DISCARD") != nullptr;
  const kernel::ProfileSession::SampleHandler handle = [&](const profile::CpuSample& s) {
    if (!discard) profiler.add(s);
  };
  const uint64_t start = monotonic_ns();
  int poll_error = 0;
  // Short slices: a sample is joined while its coroutine is most likely still alive.
  const bool exited = run_until_end(o, start, 20, [&](int wait_ms) {
    int r = session->poll(wait_ms, handle);
    if (r < 0 && r != -EINTR) {
      poll_error = -r;
      return false;
    }
    if (trace != nullptr) trace->drain([](trace::TraceEvent&&) {});  // only its thread map is read
    return true;
  });
  p.duration_ns = static_cast<int64_t>(monotonic_ns() - start);
  session->stop();
  trace.reset();  // --trace: the probes go as soon as sampling ends
  session->drain(handle);
  const profile::SamplerStats c = session->stats();
  p.lost_samples = static_cast<int64_t>(c.lost);

  add_cpu_warnings(c, profiler.stats(), &p);
  if (poll_error != 0) {
    p.warnings.push_back(std::string("ring buffer poll failed: ") + strerror(poll_error));
  }
  if (exited) note_target_exit(&p);
  print_cpu_stats(o, profiler.stats(), finder.stats(), c, *session);
  return write_output(o, p);
}

// The rules between options that CLI11 does not express: -F's range depends on the mode.
std::string check_profile_options(ProfileOptions* o) {
  if (o->pid == 0) return "profile needs -p PID";
  if (o->await && o->trace && o->hz != 0) {
    return "-F does not apply to --await --trace: every wait is measured";
  }
  const int max_hz = o->await ? kMaxAwaitHz : kMaxCpuHz;
  if (o->hz == 0) o->hz = o->await ? kDefaultAwaitHz : kDefaultCpuHz;
  if (o->hz > max_hz) {
    return "-F " + std::to_string(o->hz) + " is out of range: " +
           (o->await ? "1..100 snapshots per second with --await" : "1..1000 Hz");
  }
  if (o->await && o->kernel) return "--kernel applies to CPU profiles, not --await";
  return "";
}

}  // namespace

ParseResult parse_profile_args(int argc, char** argv, ProfileOptions* o) {
  OptionParser p("profile");
  p.pid(&o->pid);
  p.duration("-d,--duration", &o->duration_s, DurationRange::kAboveZero);
  p.count("-F,--frequency", &o->hz, 1, 1'000'000, "frequency");
  p.text("-o,--output", &o->output);
  p.choice("--format", &o->format, {"text", "folded", "svg", "speedscope", "pprof", "json"},
           "format");
  p.flag("--await", &o->await);
  p.flag("--trace", &o->trace);
  p.flag("--kernel", &o->kernel);
  p.flag("--full-names", &o->full_names);
  p.texts("--debug-dir", &o->debug_dirs);
  const CLI::Option* ringbuf = p.ringbuf_mb(&o->ringbuf_mb);
  ParseResult r = p.parse(argc, argv);
  if (!r.ok || r.help) return r;
  o->ringbuf_mb_given = ringbuf->count() > 0;
  if (std::string error = check_profile_options(o); !error.empty()) {
    r.ok = false;
    r.error = error;
  }
  return r;
}

int profile_main(int argc, char** argv) {
  ProfileOptions o;
  if (int rc = finish_parse(parse_profile_args(argc, argv, &o), "profile", kUsage); rc >= 0) {
    return rc;
  }
  // Before anything is attached: a profile never runs to its end only to find it cannot write.
  if (std::string m = check_output_path("-o", o.output); !m.empty()) {
    return fail(m, util::kExitUsage);
  }
  if (int rc = check_process_exists(o.pid); rc >= 0) return rc;
  StartupWatch watch(o.pid);
  watch.set_doing("starting the profile");
  g_startup = &watch;
  struct Clear {
    ~Clear() { g_startup = nullptr; }
  } clear;
  if (!o.await || o.trace) {
    // Privileges and BTF first: without them nothing else is worth reading.
    kernel::TraceError terr;
    if (!kernel::check_bpf_support(kernel::kernel_btf_path(), "profile", &terr))
      return fail(terr.message, terr.code);
  }
  try {
    // Profiles refresh snapshots while sampling: no orphan mark phase (diagnoses are not shown).
    snapshot::SnapshotTaker taker(snapshot::SnapshotSession{o.pid, o.debug_dirs, false});
    snapshot::SnapshotError serr;
    bool have_coroutines = true;
    if (!taker.attach(&serr)) {
      // A CPU profile of a process without coroutines is still a CPU profile.
      if (serr.code != util::kExitNoCoroutines || o.await || o.trace) {
        return fail(serr.message, serr.code);
      }
      have_coroutines = false;
    }
    if (o.await) return o.trace ? run_await_traced(o, &taker) : run_await(o, &taker);
    return run_cpu(o, &taker, have_coroutines);
  } catch (const process::TargetError& e) {
    return fail(e.what(), e.code());
  } catch (const std::exception& e) {
    return fail(std::string("internal error: ") + e.what(), util::kExitInternal);
  }
}

}  // namespace asyncprobe::cli
