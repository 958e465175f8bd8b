// The library's one thread: serves the socket (snapshots, trace sessions, blocking records) and
// runs the table helper for new modules. It blocks every signal and sleeps in poll(2) when idle.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace asyncprobe::preload {

// Binds the socket (when enabled) and starts the thread. Normal context, once per process.
// `why` gets a one-line reason when the socket could not be set up (the thread still runs the
// helper).
bool start_service(std::string* why);
// Asks the thread to compute tables for modules it has not seen (after a dlopen).
void service_wake();
// Removes the socket file (at exit, or from the crash handler: async-signal-safe).
void service_unlink_socket();
// The work to do when a termination signal ends the program (exit_signals.h): it runs on the
// service thread, in normal context. service_run_exit_work asks for it and waits until it is
// done or `timeout_ms` passed (false then, or when the thread cannot be reached).
// Async-signal-safe.
void service_set_exit_work(void (*work)());
bool service_run_exit_work(int timeout_ms);
// After fork: the child has no service thread. Closes the inherited listening socket.
void service_after_fork_child();
// Whether the thread may still install tables (a helper is running or due), and its tid: a crash
// waits for the tables only then, and never on that thread. Async-signal-safe.
bool table_loader_alive();
int table_loader_tid();

// The kTraceFunctions and kBlockingPoll payloads (protocol.h): the socket's replies, and the exit
// reports. Normal context.
std::string trace_functions_payload();
std::string blocking_payload(uint64_t since);

// Starts `path` with `argv` (empty environment, descriptors in/out/err as 0/1/2, nothing else)
// without the program seeing it: no SIGCHLD, nothing for its wait(). Returns the pid of a
// go-between that exits with the helper's status when the helper is gone (-1 on failure): reap it
// with waitpid(pid, .., __WCLONE), and keep `stack` (its and the helper's) mapped until then.
pid_t spawn_hidden_child(const char* path, char* const* argv, int in, int out, int err, bool niced,
                         char* stack, size_t stack_size);

}  // namespace asyncprobe::preload
