// Exit codes of the asyncprobe CLI. Documented for users in README.md ("Exit codes"); keep both
// in step. Degraded results (no debug info, stripped binary) are not errors: they exit 0 and say
// what is missing in the report.
#pragma once

namespace asyncprobe::util {

enum ExitCode : int {
  kExitOk = 0,
  kExitInternal = 1,        // a bug or an unexpected system failure
  kExitUsage = 2,           // bad command line
  kExitNoProcess = 3,       // no such PID
  kExitPermission = 4,      // not permitted to read the target (capability / ptrace scope)
  kExitNotInspectable = 5,  // kernel thread or zombie: no user memory to read
  kExitUnsupported = 6,     // not a 64-bit x86-64 ELF process; (trace) no kernel BTF or BPF
  kExitNoCoroutines = 7,    // the target maps no coroutine code at all
  kExitTargetExited = 8,    // the target exited while we were reading it
  kExitBusy = 9,            // the target's `asyncprobe run` socket is busy with other clients
};

}  // namespace asyncprobe::util
