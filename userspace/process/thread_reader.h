// The target's threads from /proc/PID/task: name, state, the syscall each is blocked in, and its
// user sp/pc and stack mapping. Reads only /proc; never stops a thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "userspace/model/snapshot_model.h"
#include "userspace/process/process_maps.h"
#include "userspace/process/target_process.h"

namespace asyncprobe::process {

// The x86-64 name of a syscall number, or nullptr when it is not in our table (which holds every
// blocking call an event loop or a lock makes, and the common others).
const char* syscall_name_x86_64(int64_t nr);

// /proc/PID/task/TID/syscall, parsed.
struct SyscallState {
  enum class Kind {
    kRunning,       // "running": on a CPU or runnable; no registers to report
    kInSyscall,     // blocked in syscall `nr`
    kNotInSyscall,  // blocked outside a syscall ("-1 sp pc": stopped, or in a page fault)
  };
  Kind kind = Kind::kRunning;
  int64_t nr = -1;
  uint64_t args[6] = {};
  uint64_t sp = 0;
  uint64_t pc = 0;
};
std::optional<SyscallState> parse_syscall_file(std::string_view text);

struct ThreadReadOptions {
  size_t max_threads = 1u << 16;  // a hostile or runaway task list cannot exhaust us
};

struct ThreadReadResult {
  std::vector<model::ThreadInfo> threads;  // ascending tid
  size_t vanished = 0;            // threads that exited between listing and reading: skipped
  size_t syscall_unreadable = 0;  // threads kept without syscall info (kernel refused, bad text)
  size_t malformed = 0;           // threads skipped because their stat made no sense
  bool truncated = false;         // more than max_threads
};

// Reads every thread of `target`. ThreadInfo::syscall is the syscall name, "running",
// "syscall_<nr>" for a number outside our table, or "" when unknown (not in a syscall, or the
// file could not be read). stack_lo/hi is the mapping holding sp; for the main thread without
// an sp, the [stack] mapping. Throws TargetError(kExitTargetExited) if the whole process is gone.
ThreadReadResult read_threads(const TargetProcess& target, const std::vector<Mapping>& maps,
                              const ThreadReadOptions& options = {});

// Reads `leaf` ("task/TID/stat", "task/TID/syscall") of the target, at most max_bytes, into out;
// returns 0 or an errno. Lets a preloaded target serve its own task files over its socket.
using TaskFileReader =
    std::function<int(const std::string& leaf, size_t max_bytes, std::string* out)>;

// The thread ids in a task list ("TID\n" per thread; other lines skipped), at most
// options.max_threads (*truncated then says so).
std::vector<int> parse_task_list(std::string_view text, const ThreadReadOptions& options,
                                 bool* truncated);

// Reads the threads `tids` of process `pid` through `read_file`; the same result as
// read_threads, without the liveness check (the caller knows how its source ends).
ThreadReadResult read_thread_files(int pid, std::vector<int> tids, const TaskFileReader& read_file,
                                   const std::vector<Mapping>& maps,
                                   const ThreadReadOptions& options = {});

}  // namespace asyncprobe::process
