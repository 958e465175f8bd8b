// In-process resume tracing: at load time (and for each dlopen) the entry of every coroutine
// resume function is replaced by a 5-byte jump to a trampoline next to its module, which counts
// the resume in a per-thread counter, optionally appends {frame, function} to a per-thread ring,
// then runs the displaced entry instructions (relocated with capstone) and jumps back.
//
// Safety: a function is patched only when its first instructions can be moved (no
// calls/returns, no branch into them from the function), pages are never writable and executable
// at once (RW then RX), and patching happens while no other thread can run that code (before
// main, or for a library being dlopen'ed before its initialisers). See docs/PRELOAD.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "userspace/preload/protocol.h"

namespace asyncprobe::preload {

inline constexpr uint32_t kMaxTracedFunctions = 65536;

struct TracedFunction {
  uint32_t id = 0;
  uint32_t module_id = 0;
  uint64_t resume = 0;  // absolute entry address
  bool traced = false;
  bool gcc = false;           // a GCC .actor (also entered to start and to destroy)
  int32_t index_offset = -1;  // GCC: where the actor reads its 16-bit suspend index; -1 unknown
};

// Entries of one resume function, by why it was entered.
struct EntryCounts {
  uint64_t resumes = 0;     // resumed from a suspend point
  uint64_t starts = 0;      // GCC: the ramp starting the body
  uint64_t dispatches = 0;  // GCC: .destroy unwinding the frame through the actor
};

// Loads capstone and checks the CPU; false (with a one-line reason) when tracing cannot work.
bool tracer_init(const char** why);
// Patches the resume functions of modules [first_module, Modules::count()).
void tracer_patch_new_modules(size_t first_module);
size_t tracer_function_count();
const TracedFunction& tracer_function(size_t id);
uint32_t tracer_patched_count();
uint32_t tracer_unpatched_count();

enum TraceFlags : uint8_t { kTraceCount = 1, kTraceEvents = 2 };
void tracer_set_flags(uint8_t flags);
uint8_t tracer_flags();

// Sums every thread's counters (live and exited threads); counts.size() becomes the function
// count.
void tracer_sum_counts(std::vector<EntryCounts>* counts);
// Per-thread totals: (tid, resumes) of every thread that resumed a coroutine while counting
// (threads that exited and whose buffer went to a new thread are listed once each).
void tracer_thread_totals(std::vector<std::pair<int, uint64_t>>* out);
// Moves buffered events out of every thread's ring (events enabled); adds their number lost to
// full rings since the last call to *lost. Events are stamped between each buffer's previous
// drain and now_ns.
void tracer_drain(std::vector<preload_proto::ResumeEvent>* out, uint64_t* lost, uint64_t now_ns);

// Patches ld.so's _dl_debug_state so that asyncprobe_dl_activity() runs on every dlopen/dlclose.
bool install_dl_hook();

}  // namespace asyncprobe::preload
