// From a thread's stack to the async stack of the coroutine running on it: find the innermost
// activation of a coroutine resume function, recover its frame address (a register or stack slot
// of that activation holding a pointer whose header names the same coroutine), then follow the
// awaiter links by the rules of coro/awaiter_rules.h. Async-signal-safe.
#pragma once

#include <cstddef>
#include <cstdint>

#include "userspace/coro/awaiter_rules.h"
#include "userspace/preload/modules.h"
#include "userspace/preload/signal_safe.h"
#include "userspace/preload/unwinder.h"

namespace asyncprobe::preload {

struct RunningCoroutine {
  uint64_t frame = 0;
  Modules::CoroRef ref;
  size_t stack_index = 0;  // the StackFrame of its resume activation
};

// Searches frames[from..n) (innermost first). False when no coroutine is running on the stack or
// the tables do not know it yet.
bool find_running_coroutine(const StackFrame* frames, size_t n, size_t from, RunningCoroutine* out);

struct AwaitLink {
  uint64_t frame = 0;
  Modules::CoroRef ref;
  int64_t index = -1;
  const preload_table::PointRecord* point = nullptr;  // where it is suspended; null if unplaced
  coro::AwaiterRule rule = coro::AwaiterRule::kNone;  // how it was reached
};

// out[0] is the running coroutine itself; out[k+1] awaits out[k]. Returns the count (<= max).
size_t walk_awaiters(const RunningCoroutine& start, AwaitLink* out, size_t max);

// What an address is, for printing.
struct PcInfo {
  const ModuleRecord* module = nullptr;
  const char* function = nullptr;  // demangled symbol or coroutine name; null when unknown
  uint64_t function_offset = 0;
  bool coroutine = false;  // inside a coroutine's resume function
  const char* file = nullptr;
  uint32_t line = 0;
};
// `exact`: pc is the faulting instruction (else a return address: looked up at pc - 1).
PcInfo describe_pc(uint64_t pc, bool exact);

// Appends "function at file:line (module+0xoff)" for pc.
void append_pc(Text& t, uint64_t pc, bool exact);
// Appends "NAME" of a coroutine and " at file:line" of its suspend point (or a note).
void append_await_link(Text& t, const AwaitLink& link, bool running, uint64_t running_pc);
// A coroutine's name, or "coroutine <object>+0x<resume>" before the tables name it.
void append_coroutine_name(Text& t, const Modules::CoroRef& ref);
// The base name of a path.
const char* base_name(const char* path);

}  // namespace asyncprobe::preload
