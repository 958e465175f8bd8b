// The snapshot model: what one look at a process found. Produced by the scanner, stitcher and
// thread reader; consumed by the analysis (coalescing, stuck detection) and the reports.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

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

// How the stuck check decided about a frame (userspace/snapshot/stuck_check.h has the rules;
// docs/SNAPSHOT_FORMAT.md names each value). Only kResumeProbe means "known not resumed".
enum class StuckEvidence {
  kNotChecked,           // one look only (no window), or no earlier look to compare with
  kNew,                  // no frame at this address in the earlier look: created in the window
  kRecreated,            // same address, other header or state: destroyed and made again
  kSuspendPointChanged,  // suspend index changed: it was resumed
  kContentChanged,       // bytes changed at the same point: moving (resumed, or an operation
                         // completing wrote its result into the awaiter), not stuck
  kResumed,              // looked the same, but the resume probe saw it resumed (or destroyed)
  kResumeProbe,          // looked the same and the resume probe covering the window saw no
                         // resume: stuck, known
  kUnchangedNoProbe,     // looked the same; no probe ran (no privileges, --no-probe, ...)
  kUnchangedProbeHot,    // looked the same; its function was detached early (too many resumes
                         // for the budget) before the window was covered
  kUnchangedProbeMissed, // looked the same; its function's probe could not be attached
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
  bool on_stack = false;     // found on a thread stack (an elided frame)
  bool elided = false;       // Clang put it inside its caller's storage (.cleanup in the destroy
                             // slot): when done, it may already have been destroyed
  uint64_t awaiter = 0;      // frame address of the coroutine awaiting this one, 0 if none
  std::string awaiter_rule;  // rule that found the edge: "continuation-in-promise", "asio-caller",
                             // "folly-async-stack", "mutual-pointer"
  // The stuck check (userspace/snapshot/stuck_check.h). `stuck` only when known not resumed;
  // `unchanged` when it looked the same but nothing could tell whether it was resumed.
  bool stuck = false;
  double stuck_for_s = 0.0;      // known: not resumed for at least this long (probe-covered)
  bool unchanged = false;        // looked the same, not known (never set together with stuck)
  double unchanged_for_s = 0.0;  // looked the same (point and content) for at least this long
  StuckEvidence stuck_evidence = StuckEvidence::kNotChecked;
  int64_t resumes = -1;          // resumes (and destroys) the probe counted, -1: not probed
  // A bounded fingerprint of the frame's bytes (header included), from the look itself.
  uint64_t fingerprint = 0;
  uint32_t fingerprint_bytes = 0;  // 0: not fingerprinted (unreadable)
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

// What the confirming resume probe of a window did (userspace/snapshot/stuck_check.h).
struct StuckProbeInfo {
  bool ran = false;
  std::string note;             // why it did not run, or "" when it ran
  size_t functions = 0;         // functions probed
  size_t functions_hot = 0;     // of those, detached early (hot)
  size_t functions_failed = 0;  // could not be attached
  size_t frames = 0;            // candidate frames counted
  uint64_t hits = 0;            // probe hits in the target (every resume/destroy of a probed fn)
  double covered_s = 0.0;       // from the last attach to the first detach
  double attach_s = 0.0;        // attaching (load included)
  double detach_s = 0.0;
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
  StuckProbeInfo stuck_probe;
};

const char* to_string(FrameState s);
const char* to_string(SuspendPoint::Kind k);
const char* to_string(StuckEvidence e);  // "resume-probe", "content-changed", ...

}  // namespace asyncprobe::model
