// The kernel side of `asyncprobe profile`: loads bpf/profile.bpf.c, opens a software cpu-clock
// perf event at the requested frequency on every online CPU, attaches the program to each, and
// hands the raw samples of the target (registers + user stack copy) to the caller.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "bpf/profile.h"
#include "userspace/trace_session.h"

namespace asyncprobe {

struct ProfileSessionOptions {
  int pid = 0;
  int frequency_hz = 99;
  bool kernel_stacks = false;
  uint32_t ringbuf_bytes = 32u << 20;  // rounded up to a power of two
  std::string btf_path;                // empty: the running kernel's
};

// Summed per-CPU counters, indexed by profile_counter.
struct ProfileCounters {
  uint64_t v[PROFILE_CTR_COUNT] = {};
  uint64_t operator[](profile_counter c) const { return v[c]; }
};

class ProfileSession {
 public:
  using SampleHandler = std::function<void(const profile_sample& sample)>;

  // Loads the program and starts sampling on every online CPU. nullptr with *error (exit code
  // and one-line message) when BPF or perf events are refused.
  static std::unique_ptr<ProfileSession> start(const ProfileSessionOptions& opts,
                                               TraceError* error);
  ~ProfileSession();
  ProfileSession(const ProfileSession&) = delete;
  ProfileSession& operator=(const ProfileSession&) = delete;

  // Waits up to timeout_ms for samples and hands each to `handler`. Returns the number handled
  // or a negative errno.
  int poll(int timeout_ms, const SampleHandler& handler);
  // Hands every sample still in the ring buffer to `handler`.
  int drain(const SampleHandler& handler);
  // Stops sampling (closes the perf events and links); samples already taken stay drainable.
  void stop();
  ProfileCounters counters() const;
  int cpus() const;  // CPUs sampled

  struct Impl;

 private:
  explicit ProfileSession(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace asyncprobe
