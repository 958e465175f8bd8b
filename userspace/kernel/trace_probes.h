// The trace probes as `asyncprobe trace` and `asyncprobe profile --trace` both attach them: every
// coroutine function of the target's catalogs becomes a probe spec and a row of the model's
// function table, then bpf/trace.bpf.c is loaded and attached (TraceSession). One piece so that
// both commands probe, fail and report the same way.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "userspace/kernel/trace_session.h"
#include "userspace/snapshot/coroutine_index.h"
#include "userspace/trace/trace_model.h"

namespace asyncprobe::kernel {

// Every coroutine function of the target's catalogs as probe specs (file offsets of its resume,
// destroy and cleanup functions, attached through /proc/PID/root) and, at the same positions,
// the model's function table. Objects that cannot be opened are skipped with a warning.
void collect_trace_functions(const snapshot::CoroutineIndex& index, int pid,
                             std::vector<TraceFunctionSpec>* specs,
                             std::vector<trace::TraceFunction>* fns,
                             std::vector<std::string>* warnings);

// The functions to probe in one target. false (exit 7, the message `trace` prints) when no
// resume function can be probed.
struct TraceProbePlan {
  int pid = 0;
  std::vector<TraceFunctionSpec> specs;
  std::vector<trace::TraceFunction> functions;  // aligned with specs: the model's function table
};
bool plan_trace_probes(const snapshot::CoroutineIndex& index, int pid, const std::string& comm,
                       TraceProbePlan* plan, std::vector<std::string>* warnings, TraceError* error);

struct TraceProbeSettings {
  uint64_t block_threshold_ns = 10'000'000;
  uint64_t stall_threshold_ns = 10'000'000;
  uint32_t ringbuf_bytes = 16u << 20;
  std::string btf_path;  // empty: the running kernel's
};

// Loads bpf/trace.bpf.c for the plan and attaches every probe. ASYNCPROBE_UPROBE_MODE=perf|multi
// forces one way of attaching uprobes (tests, benchmarks). nullptr with `error` on failure.
std::unique_ptr<TraceSession> attach_trace_probes(const TraceProbePlan& plan,
                                                  const TraceProbeSettings& settings,
                                                  AttachStats* stats, TraceError* error);

// The end of a trace: what is still in the ring buffer and the per-thread state while the
// probes are attached, then detach, whatever raced the detach, and the probes' statistics.
// `intake` receives every remaining event.
struct TraceProbeEnd {
  trace::ProbeStats stats;
  std::vector<trace::ThreadStateAtEnd> threads;
  double detach_s = 0;
};
TraceProbeEnd detach_trace_probes(TraceSession* session, const TraceSession::EventHandler& intake);

}  // namespace asyncprobe::kernel
