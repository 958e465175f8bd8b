#include "userspace/kernel/trace_calibrate.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>

#include "userspace/kernel/trace_session.h"
#include "userspace/util/thread_cpu_clock.h"

// A stand-in resume function: asyncprobe puts trace_resume on it while calibrating. Its argument
// plays the coroutine frame (the suspend index is read from it, as from a real frame).
extern "C" __attribute__((noinline, used)) void asyncprobe_calibration_resume(void* frame) {
  asm volatile("" : : "r"(frame) : "memory");
}

namespace asyncprobe::kernel {

namespace {

// File offset of an address of this process's executable, from /proc/self/maps.
bool self_file_offset(uint64_t addr, std::string* path, uint64_t* offset) {
  std::ifstream in("/proc/self/maps");
  std::string line;
  while (std::getline(in, line)) {
    unsigned long long s = 0, e = 0, off = 0;
    char perms[8] = {};
    int path_at = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx %7s %llx %*s %*s %n", &s, &e, perms, &off, &path_at) <
        4) {
      continue;
    }
    if (addr < s || addr >= e || path_at <= 0) continue;
    *path = "/proc/self/exe";
    *offset = addr - s + off;
    return true;
  }
  return false;
}

// CPU time of this thread (user + kernel: the traps and programs count, other load does not).
double thread_cpu_ns() { return util::thread_cpu_seconds() * 1e9; }

double time_calls(size_t n, uint16_t* fake_frame) {
  const double t0 = thread_cpu_ns();
  for (size_t i = 0; i < n; ++i) asyncprobe_calibration_resume(fake_frame);
  return (thread_cpu_ns() - t0) / static_cast<double>(n);
}

double time_syscalls(size_t n, int fd) {
  char buf[1];
  const double t0 = thread_cpu_ns();
  for (size_t i = 0; i < n; ++i) {
    if (syscall(SYS_read, fd, buf, 0) < 0) break;
  }
  return (thread_cpu_ns() - t0) / static_cast<double>(n);
}

}  // namespace

bool calibrate_trace_costs(TraceCosts* costs, std::string* error, size_t iterations) {
  std::string path;
  uint64_t offset = 0;
  if (!self_file_offset(reinterpret_cast<uint64_t>(&asyncprobe_calibration_resume), &path,
                        &offset)) {
    *error = "cannot place the calibration probe";
    return false;
  }
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *error = "cannot open /dev/null";
    return false;
  }
  uint16_t fake_frame[16] = {};
  constexpr int kRounds = 3;
  double base_call = 1e18, base_sys = 1e18;
  for (int r = 0; r < kRounds; ++r) {
    base_call = std::min(base_call, time_calls(iterations, fake_frame));
    base_sys = std::min(base_sys, time_syscalls(iterations, fd));
  }

  TraceSessionOptions opts;
  opts.pid = static_cast<int>(getpid());
  opts.ringbuf_bytes = 1u << 20;  // fills up: the cost of a full ring is the cheap path, so
                                  // the calls below are measured before it is (see drain)
  TraceFunctionSpec fn;
  fn.attach_path = path;
  fn.resume_offset = offset;
  fn.layout.index_offset = 0;
  fn.layout.index_width = 2;
  fn.layout.promise_offset = 16;
  opts.functions.push_back(fn);
  TraceError err;
  std::unique_ptr<TraceSession> session = TraceSession::load(opts, &err);
  if (session == nullptr) {
    close(fd);
    *error = err.message;
    return false;
  }
  AttachStats stats;
  if (!session->attach(&stats, &err)) {
    close(fd);
    *error = err.message;
    return false;
  }
  const TraceSession::EventHandler ignore = [](trace::TraceEvent&&) {};
  const size_t chunk = std::min<size_t>(iterations, 5000);  // 5000 records fit in 1 MiB
  double probed_call = 1e18, probed_sys = 1e18;
  for (int r = 0; r < kRounds; ++r) {
    session->drain(ignore);
    probed_call = std::min(probed_call, time_calls(chunk, fake_frame));
    session->drain(ignore);
    probed_sys = std::min(probed_sys, time_syscalls(iterations, fd));
  }
  session->detach();
  close(fd);
  costs->uprobe_ns = std::max(0.0, probed_call - base_call);
  costs->syscall_pair_ns = std::max(0.0, probed_sys - base_sys);
  // One sched_switch program run does about what one half of a syscall pair does.
  costs->sched_ns = costs->syscall_pair_ns / 2;
  costs->measured = true;
  return true;
}

}  // namespace asyncprobe::kernel
