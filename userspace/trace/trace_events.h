// What the trace probes tell user space, as named C++ types: the events of one target's threads
// (a coroutine resumed, destroyed, runs ended, a blocking call, an event-loop stall, time off the
// CPU, a thread exit), the per-thread state left at the end, and the probes' statistics. The
// kernel session (userspace/kernel/trace_session.cpp) is the only code that reads the BPF
// records (bpf/trace.h); it checks each one and translates it into these. The model, the reports
// and their tests see only this file.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace asyncprobe::trace {

// Promise words read at every resume: the awaiter rules look at promise+0 and promise+16.
inline constexpr size_t kPromiseWords = 3;
// User registers in DWARF x86-64 order (0 rax .. 7 rsp .. 15 r15, 16 rip).
inline constexpr size_t kUserRegs = 17;

// Every event happened on thread `tid` at `ts` (CLOCK_MONOTONIC ns).
struct EventHeader {
  uint32_t tid = 0;
  uint64_t ts = 0;
};

// A coroutine's resume function was entered: a run of `frame` begins.
struct ResumeEvent : EventHeader {
  uint32_t fn = 0;      // function id (position in the probed function table)
  uint32_t popped = 0;  // runs found finished before this one
  // true: it transferred here from the top run (same stack pointer and return address), or the
  // top run returned and the same call resumed this one; the top run ends. false: nested into
  // the current run (or the thread's first).
  bool replaces_top = false;
  bool start_of_body = false;  // GCC ramp starting the body (index 0), not a resume
  uint64_t frame = 0;
  int64_t index = -1;  // suspend index read at entry; -1 when unreadable
  std::array<uint64_t, kPromiseWords> promise{};
};

// A coroutine's destroy (or cleanup) function was entered: the frame goes away.
struct DestroyEvent : EventHeader {
  uint32_t fn = 0;
  uint32_t popped = 0;
  uint64_t frame = 0;
};

// `popped` runs of the thread were found finished (at a syscall or a context switch).
struct RunEndEvent : EventHeader {
  uint32_t popped = 0;
};

// A traced syscall inside a coroutine took at least the blocking threshold; ts = its exit.
struct BlockEvent : EventHeader {
  uint32_t nr = 0;  // syscall number (syscall_name())
  uint32_t fn = 0;  // the running coroutine
  uint64_t frame = 0;
  uint64_t enter_ts = 0;
  int64_t ret = 0;
  std::array<uint64_t, kUserRegs> regs{};
  uint64_t stack_addr = 0;     // user address of stack[0] (the sp at the syscall)
  std::vector<uint8_t> stack;  // copy of the user stack from stack_addr upward
  bool stack_failed = false;   // no copy could be taken
  bool stack_truncated = false;
};

// A thread stayed out of its wait syscall at least the stall threshold after running
// coroutines; ts = entry of the wait that ended it.
struct StallEvent : EventHeader {
  uint64_t start_ts = 0;     // exit of the previous wait
  uint32_t nr = UINT32_MAX;  // the wait syscall that ended it; UINT32_MAX = still stalled
};

// A thread with a running coroutine was off the CPU from off_ts to ts.
struct OffCpuEvent : EventHeader {
  uint64_t off_ts = 0;
};

struct ThreadExitEvent : EventHeader {};

using TraceEvent = std::variant<ResumeEvent, DestroyEvent, RunEndEvent, BlockEvent, StallEvent,
                                OffCpuEvent, ThreadExitEvent>;

inline const EventHeader& header_of(const TraceEvent& e) {
  return std::visit([](const auto& ev) -> const EventHeader& { return ev; }, e);
}

// What the probes know of a thread when the trace ends: a syscall or an event-loop stall still
// in progress then is reported as such.
struct ThreadStateAtEnd {
  uint32_t tid = 0;
  uint64_t syscall_enter_ts = 0;  // syscall in progress since then; 0 = none
  uint32_t syscall_nr = 0;
  bool syscall_in_coroutine = false;  // ... entered inside a coroutine
  bool syscall_is_wait = false;       // ... is the thread's event-loop wait
  uint64_t syscall_frame = 0;         // the coroutine running at its entry
  uint32_t syscall_fn = 0;
  bool ran_since_wait = false;  // a coroutine ran since the thread last left its wait
  uint64_t wait_exit_ts = 0;    // last exit from its wait syscall; 0 = none seen
};

// How the probes were attached.
struct AttachStats {
  size_t uprobes = 0;  // attached
  size_t uprobes_failed = 0;
  size_t uprobes_duplicate = 0;  // same file offset as an earlier function (folded code)
  size_t tracepoints = 0;
  bool uprobe_multi = false;          // attached with uprobe_multi links
  double attach_seconds = 0.0;        // attaching every probe
  double load_seconds = 0.0;          // loading and verifying the programs
  std::vector<std::string> failures;  // the first few, one line each
};

// What the probes counted (summed over CPUs), and what the session threw away while reading
// them. The session fills every field from the kernel's counters through one table
// (kTraceCounterTable in userspace/kernel/trace_session.cpp).
struct ProbeStats {
  uint64_t resume_hits = 0;             // resume uprobe hits (incl. GCC start and destroy dispatch)
  uint64_t destroy_hits = 0;            // destroy/cleanup uprobe hits
  uint64_t syscall_hits = 0;            // raw syscall tracepoint hits by the target (any syscall)
  uint64_t timed_syscalls = 0;          // traced syscalls entered by the target
  uint64_t timed_syscall_exits = 0;     // ... and left
  uint64_t syscalls_in_coroutines = 0;  // traced syscalls made inside a coroutine
  uint64_t context_switches = 0;        // involving a target thread
  uint64_t records = 0;                 // events written to the ring buffer
  // Data dropped: each of these makes the report's counts lower bounds.
  uint64_t lost = 0;                 // events dropped: ring buffer full
  uint64_t lost_resumes = 0;         // ... of which resumes
  uint64_t lost_blocking_calls = 0;  // ... of which blocking calls
  uint64_t stack_copy_failed = 0;    // blocking calls without a user stack copy
  uint64_t stack_truncated = 0;      // blocking calls whose stack was longer than the copy
  uint64_t nesting_folded = 0;       // nested runs deeper than the probes follow
  uint64_t thread_table_full = 0;    // events of threads the probes had no room for
  uint64_t index_unreadable = 0;     // resumes whose suspend index could not be read
  uint64_t malformed_records = 0;    // records the session could not read (user space)

  uint64_t seen() const { return resume_hits + destroy_hits + syscall_hits + context_switches; }
};

// Syscall name for a number of the x86-64 table ("nanosleep"), or "syscall_<nr>".
std::string syscall_name(uint32_t nr);

}  // namespace asyncprobe::trace
