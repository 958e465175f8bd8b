// Which coroutine runs on each thread blocked in a syscall (issue 11, item 2). A coroutine that
// calls read(), sleep() or a futex wait from its body is not suspended: it is executing, and its
// frame still says where it last suspended. For every thread blocked in a syscall this unwinds
// the native stack (sp and pc from /proc/PID/task/TID/syscall, CFI of the target's objects, the
// stack bytes read now; no stop) and looks for a return address inside a coroutine's resume
// function F (Clang .resume, GCC .actor). Which frame of F runs is read from that activation:
// the frame F resumed is passed to it as its first argument, and F keeps it in its own stack
// frame (spilled) or in a callee-saved register its callees saved (recovered by the CFI). Among
// the scanned frames of F, the one whose address appears there is the running one. When none
// does (the address lived only in a register nobody saved), every live frame of F is a
// candidate and a lone one is running. When several candidates remain, none is called running
// (each is marked, RunningOn::uncertain). The call site is the return address's line in F's body.
#pragma once

#include <cstddef>

#include "userspace/model/snapshot_model.h"
#include "userspace/process/memory_reader.h"
#include "userspace/process/stack_unwind.h"
#include "userspace/snapshot/resume_functions.h"

namespace asyncprobe::snapshot {

struct RunningScan {
  size_t threads_unwound = 0;  // threads blocked in a syscall whose stack was unwound
  size_t in_coroutine = 0;     // of those, threads inside a coroutine's resume function
  size_t joined = 0;           // ... whose running frame was found
  size_t uncertain = 0;        // ... with several candidate frames
};

// Fills ThreadInfo::native_stack of every thread blocked in a syscall and, where a coroutine runs
// on it, ThreadInfo::running_* and the running frame (FrameState::kRunning, CoroFrame::running;
// never stuck nor unchanged). Call it on the final look, after the stuck check.
RunningScan mark_running_coroutines(model::Snapshot& snap, const ResumeFunctionTable& functions,
                                    process::TraceUnwinder& unwinder,
                                    const process::ReadMemory& read);

}  // namespace asyncprobe::snapshot
