// The kernel side of `asyncprobe profile`: loads bpf/profile.bpf.c, opens a software cpu-clock
// perf event at the requested frequency on every online CPU, attaches the program to each, and
// hands the target's samples (registers + user stack copy) to the caller as profile::CpuSample
// and its counters as profile::SamplerStats (one table in profile_session.cpp maps each kernel
// counter to its field). Nothing past this header sees bpf/profile.h.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "userspace/kernel/trace_session.h"
#include "userspace/profile/cpu_sample.h"

namespace asyncprobe::kernel {

struct ProfileSessionOptions {
  int pid = 0;
  int frequency_hz = 99;
  bool kernel_stacks = false;
  // Rounded up to a power of two. 0: 0.1 s of samples on every online CPU, at least 1 MiB (a
  // drain thread empties it every 20 ms; a larger ring costs the target more per sample).
  uint64_t ringbuf_bytes = 0;
  bool measure_program = false;  // keep the kernel's BPF run-time statistics on (program_cpu())
  std::string btf_path;          // empty: the running kernel's
  int trace_threads_fd = -1;     // profile --trace: TraceSession::threads_map_fd(), else -1
};

class ProfileSession {
 public:
  using SampleHandler = std::function<void(const profile::CpuSample& sample)>;

  // Loads the program and starts sampling on every online CPU. nullptr with *error (exit code
  // and one-line message) when BPF or perf events are refused.
  static std::unique_ptr<ProfileSession> start(const ProfileSessionOptions& opts,
                                               TraceError* error);
  ~ProfileSession();
  ProfileSession(const ProfileSession&) = delete;
  ProfileSession& operator=(const ProfileSession&) = delete;

  // Waits up to timeout_ms for samples (a drain thread copies them out of the kernel ring
  // buffer every 20 ms) and hands each to `handler`. Returns the number handled.
  int poll(int timeout_ms, const SampleHandler& handler);
  // Hands every sample still in the ring buffer or queued to `handler` (stops the drain thread;
  // call after stop()). The number handled or a negative errno.
  int drain(const SampleHandler& handler);
  // Stops sampling (closes the perf events and links) and the drain thread; samples already
  // taken stay drainable.
  void stop();
  profile::SamplerStats stats() const;  // lost includes samples the queue had no room for
  // CPU time the program took in the kernel (in the context of the interrupted thread) and its
  // runs, every tick of every process included; zeros unless measure_program was set.
  struct ProgramCpu {
    uint64_t run_ns = 0;
    uint64_t runs = 0;
  };
  ProgramCpu program_cpu() const;
  int cpus() const;  // CPUs sampled

  struct Impl;

 private:
  explicit ProfileSession(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace asyncprobe::kernel
