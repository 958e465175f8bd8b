// Where each thread's latest exception was thrown, kept for std::terminate. The terminate can come
// after the coroutine that threw is gone from the stack: when the exception leaves a noexcept
// function above it (the loop that resumed it), Clang unwinds to that function's terminate
// landing pad, and GCC runs the coroutine's cleanup pad first. Our __cxa_throw / __cxa_rethrow
// (exported by the library, so they run before libstdc++'s) keep the registers and a copy of the
// top of the stack; the terminate handler unwinds that copy to find the coroutine and its
// awaiters. A throw costs a register capture and a 16 KiB copy; nothing is analysed until then.
#pragma once

#include <cstddef>
#include <cstdint>

#include "userspace/preload/async_walk.h"
#include "userspace/preload/unwinder.h"

namespace asyncprobe::preload {

// Records from now on (normal context).
void enable_throw_records();
void disable_throw_records();

// The object of the calling thread's current (caught or rethrown) exception, or nullptr.
const void* current_exception_object();

// The coroutine the calling thread was running when it threw `object`, and the coroutines
// awaiting it (links[0] is the running one; its activation's pc at the throw in *running_pc).
// Returns the number of links: 0 when nothing was recorded for `object` or no coroutine was
// running at the throw. `frames` is scratch space. Normal context, single caller at a time.
size_t analyse_throw(const void* object, StackFrame* frames, size_t max_frames, AwaitLink* links,
                     size_t max_links, uint64_t* running_pc, bool* running_pc_exact);

}  // namespace asyncprobe::preload
