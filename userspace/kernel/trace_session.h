// The kernel side of `asyncprobe trace`: loads bpf/trace.bpf.c (through its generated skeleton)
// for one target process, attaches a uprobe to every coroutine resume and destroy function and
// the syscall/scheduler raw tracepoints, and hands the ring buffer's events to a callback. Every
// probe is a perf-event link owned by this process: closing it (normal end, a signal, or the
// kernel reaping a killed asyncprobe) removes every probe. Model: bcc libbpf-tools' x.c.
//
// The kernel boundary: every ring-buffer record is checked and translated into a
// trace::TraceEvent, the per-thread map into trace::ThreadStateAtEnd, and the per-CPU counters
// into trace::ProbeStats (one table in trace_session.cpp maps each kernel counter to its field).
// Nothing past this header sees bpf/trace.h.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bpf/trace.h"
#include "userspace/kernel/uprobe_links.h"
#include "userspace/trace/trace_events.h"
#include "userspace/util/exit_codes.h"

namespace asyncprobe::kernel {

struct TraceError {
  util::ExitCode code = util::kExitOk;
  std::string message;  // one line
};

// One coroutine function to probe; its position in TraceSessionOptions::functions is its id
// (the bpf_cookie of its probes and the key of the fns map).
struct TraceFunctionSpec {
  std::string attach_path;     // file the uprobes go on (e.g. /proc/PID/root/usr/bin/server)
  uint64_t resume_offset = 0;  // file offsets; 0 = none
  uint64_t destroy_offset = 0;
  uint64_t cleanup_offset = 0;
  trace_fn layout{};  // index field, promise offset, flags for the BPF side
};

// How uprobes are attached: one uprobe_multi link per file (kernel 6.6+; attach and detach in
// one system call), or one perf-event link per site (older kernels; detaching waits about 50 ms
// per site). kAuto: uprobe_multi when the kernel loads it.
enum class UprobeMode { kAuto, kMulti, kPerf };

struct TraceSessionOptions {
  int pid = 0;
  UprobeMode uprobe_mode = UprobeMode::kAuto;
  uint64_t block_threshold_ns = 10'000'000;
  uint64_t stall_threshold_ns = 10'000'000;
  uint32_t ringbuf_bytes = 16u << 20;  // rounded up to a power of two
  std::vector<TraceFunctionSpec> functions;
  bool syscalls = true;  // attach sys_enter/sys_exit/sched_switch/sched_process_exit
  std::string btf_path;  // kernel BTF; empty = /sys/kernel/btf/vmlinux
};

using trace::AttachStats;

// Preconditions of loading BPF at all: privileges (root, or CAP_BPF + CAP_PERFMON) and kernel
// BTF. false with a one-line reason and an exit code.
bool check_trace_support(const std::string& btf_path, TraceError* error);
// The kernel BTF the BPF commands load with: ASYNCPROBE_VMLINUX_BTF when set (tests, odd
// systems), else "" (the running kernel's /sys/kernel/btf/vmlinux).
std::string kernel_btf_path();
// The same for another command that loads BPF (`profile`): `command` names it in the messages.
bool check_bpf_support(const std::string& btf_path, const std::string& command, TraceError* error);

class TraceSession {
 public:
  using EventHandler = std::function<void(trace::TraceEvent&& event)>;

  // Opens and loads the programs for opts.pid. nullptr with `error` on failure.
  static std::unique_ptr<TraceSession> load(const TraceSessionOptions& opts, TraceError* error);
  ~TraceSession();
  TraceSession(const TraceSession&) = delete;
  TraceSession& operator=(const TraceSession&) = delete;

  // Attaches the tracepoints, then every function's uprobes. A uprobe that fails is counted and
  // skipped; false only when nothing useful could be attached.
  bool attach(AttachStats* stats, TraceError* error);
  // Waits up to timeout_ms for events and passes each to `handler` (records that cannot be read
  // are counted in ProbeStats::malformed_records instead). Returns the number of records taken,
  // or a negative errno (-EINTR when a signal arrived).
  int poll(int timeout_ms, const EventHandler& handler);
  // Handles what is already in the ring buffer without waiting.
  int drain(const EventHandler& handler);
  trace::ProbeStats stats() const;
  // Per-thread state kept by the BPF programs (syscall in progress, last wait), for every thread
  // that has one.
  std::vector<trace::ThreadStateAtEnd> threads() const;
  // The fd of that per-thread map, for another program to share (profile --trace).
  int threads_map_fd() const;
  // Destroys every link (uprobes first). Safe to call twice; the destructor calls it.
  void detach();
  double detach_seconds() const { return detach_seconds_; }

 private:
  TraceSession() = default;
  struct Impl;
  struct Site;
  // The parts of attach(): the raw tracepoints, every (file, offset) once, the uprobes as
  // uprobe_multi links or one link per site, and the fall back from the first to the second.
  bool attach_tracepoints(AttachStats* stats, TraceError* error);
  std::vector<Site> probe_sites(AttachStats* stats) const;
  void attach_multi(const std::vector<Site>& sites, AttachStats* stats);
  void attach_per_site(const std::vector<Site>& sites, AttachStats* stats);
  bool reattach_per_site(AttachStats* stats, TraceError* error);
  std::unique_ptr<Impl> impl_;
  std::vector<UprobeLink> links_;
  double detach_seconds_ = 0.0;
};

}  // namespace asyncprobe::kernel
