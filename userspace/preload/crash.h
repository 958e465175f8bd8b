// Crash and std::terminate reports: the crashing thread's stack and the async stack of the
// coroutine it was running, written with write(2) to stderr (and --crash-report FILE), then the
// process dies the way it would have without us (same signal, core dump if enabled).
#pragma once

namespace asyncprobe::preload {

// Installs handlers for SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGABRT where the disposition is
// still the default, an alternate signal stack for the calling thread, and a terminate handler
// that chains to the previous one. Normal context, once.
void install_crash_handlers();
// Puts back what install_crash_handlers replaced (fork children that must not inherit us).
void uninstall_crash_handlers();

}  // namespace asyncprobe::preload
