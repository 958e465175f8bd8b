// The snapshot model: what one look at a process found. Produced by the scanner, stitcher and
// thread reader; consumed by the analysis (coalescing, stuck detection) and the reports.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "userspace/coro/awaiter_rules.h"

namespace asyncprobe::model {

// Where a coroutine is suspended. `line == 0` means no rule could place the suspend point; the
// report then prints the function and says the line is unknown, never a guess.
struct SuspendPoint {
  enum class Kind { kInitial, kAwait, kFinal, kUnknown };
  Kind kind = Kind::kUnknown;
  int64_t index = -1;  // raw compiler suspend index read from the frame (-1: could not read)
  std::string file;
  int line = 0;
  std::string rule;  // which rule placed it ("index-store", "dwarf-label", ...), empty if unplaced
};

enum class FrameState {
  kSuspended,  // resume pointer set, index names a suspend point
  kDone,       // resume pointer NULL: reached final suspend, not yet destroyed
  kUnknown,    // header valid but the index is not one this coroutine has
};

// One coroutine frame found in the target's memory.
struct CoroFrame {
  uint64_t address = 0;     // frame start in the target
  uint64_t resume_fn = 0;   // word at +0 (0 when done)
  uint64_t destroy_fn = 0;  // word at +8
  std::string function;     // demangled coroutine (ramp) name, or "0x..." when unnamed
  std::string object;       // path of the ELF object that holds the coroutine's code
  FrameState state = FrameState::kUnknown;
  SuspendPoint suspend;
  bool on_stack = false;  // found on a thread stack (an elided frame)
  bool elided = false;    // Clang put it inside its caller's storage (.cleanup in the destroy
                          // slot): when done, it may already have been destroyed
  uint64_t awaiter = 0;   // frame address of the coroutine awaiting this one, 0 if none
  coro::AwaiterRule awaiter_rule = coro::AwaiterRule::kNone;  // rule that found the edge
  bool stuck = false;        // suspend point did not move across the observation window
  double stuck_for_s = 0.0;  // lower bound on how long it has been suspended there
};

struct ThreadInfo {
  int tid = 0;
  std::string name;
  char state = '?';     // from /proc/PID/task/TID/stat
  std::string syscall;  // "futex", "epoll_wait", "running", "" if unknown
  int64_t syscall_nr = -1;
  uint64_t sp = 0;  // user stack pointer when blocked in a syscall
  uint64_t pc = 0;
  uint64_t stack_lo = 0, stack_hi = 0;  // the thread's stack mapping, when known
};

struct Snapshot {
  int pid = 0;
  std::string command;     // comm
  std::string executable;  // /proc/PID/exe target
  std::vector<CoroFrame> frames;
  std::vector<ThreadInfo> threads;
  std::vector<std::string> warnings;  // degraded results: missing debug info, torn reads, ...
  uint64_t bytes_scanned = 0;
  double scan_seconds = 0.0;
  double window_seconds = 0.0;  // --window used for stuck detection (0: one instant)
};

const char* to_string(FrameState s);
const char* to_string(SuspendPoint::Kind k);

}  // namespace asyncprobe::model
