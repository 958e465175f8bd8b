// One CPU sample of the target as the profiler reads it: the interrupted thread's user
// registers, a copy of its user stack, the kernel stack (--kernel) and, with --trace, the
// coroutine the trace probes say it is running. And what the sampling program counted. The
// kernel session (userspace/kernel/profile_session.cpp) translates bpf/profile.h's records and
// counters into these; the profilers never see the BPF layout.
#pragma once

#include <array>
#include <cstdint>
#include <span>

namespace asyncprobe::profile {

struct CpuSample {
  uint32_t tid = 0;
  // User registers in DWARF x86-64 order: rax, rdx, rcx, rbx, rsi, rdi, rbp, rsp, r8..r15, rip.
  std::array<uint64_t, 17> regs{};
  uint64_t stack_addr = 0;           // user address of stack[0]
  std::span<const uint8_t> stack;    // valid during the handler call only
  std::span<const uint64_t> kstack;  // return addresses, innermost first (--kernel)
  // profile --trace: the running coroutine as the trace probes know it; frame 0 when none.
  uint64_t coro_frame = 0;
  uint32_t coro_fn = 0;  // its function id in the trace's function table
};

// What the sampling program counted (summed over CPUs), through one table
// (kProfileCounterTable in userspace/kernel/profile_session.cpp).
struct SamplerStats {
  uint64_t ticks = 0;         // timer ticks that ran the program (any process)
  uint64_t target_ticks = 0;  // ... of which hit the target
  uint64_t samples = 0;       // samples written to the ring buffer
  // Data dropped or cut short:
  uint64_t lost = 0;           // samples lost: ring buffer full, or no room in the queue
  uint64_t stack_short = 0;    // samples with a shortened stack copy
  uint64_t stack_failed = 0;   // samples without any stack copy
  uint64_t kstack_failed = 0;  // --kernel: kernel stack unavailable
};

}  // namespace asyncprobe::profile
