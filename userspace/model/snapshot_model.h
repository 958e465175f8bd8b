// The snapshot model: what one look at a process found. Produced by the scanner, stitcher and
// thread reader; consumed by the analysis (coalescing, stuck detection) and the reports.
#pragma once

#include <cstdint>
#include <optional>
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
  kRunning,    // executing on a thread now (its resume function is on that thread's native
               // stack, and the frame's address is in that function's stack frame); the suspend
               // point is the last one it passed, CoroFrame::running says where it is now
};

// Where a coroutine runs now: a thread blocked in a syscall whose native stack holds the
// coroutine's resume function (snapshot/running_coroutines.h has the rule).
struct RunningOn {
  int thread = 0;       // TID
  std::string syscall;  // the syscall the thread is blocked in ("read", "futex", ...)
  std::string file;     // the call site in the coroutine body the thread is inside, "" unknown
  int line = 0;
  // The thread runs this coroutine's function, but several of its frames could be the one
  // running (each candidate gets this mark; none is called running).
  bool uncertain = false;
  // How the frame was told: "frame-address" (its address is in the activation's stack frame or
  // saved registers), "only-frame" (no address was; it is the only live frame of the function).
  std::string rule;
};

// How the stuck check decided about a frame (userspace/snapshot/stuck_check.h has the rules;
// docs/SNAPSHOT_FORMAT.md names each value). Only kResumeProbe means "known not resumed".
enum class StuckEvidence {
  kNotChecked,            // one look only (no window), or no earlier look to compare with
  kNew,                   // no frame at this address in the earlier look: created in the window
  kRecreated,             // same address, other header or state: destroyed and made again
  kSuspendPointChanged,   // suspend index changed: it was resumed
  kContentChanged,        // bytes changed at the same point: moving (resumed, or an operation
                          // completing wrote its result into the awaiter), not stuck
  kResumed,               // looked the same, but the resume probe saw it resumed (or destroyed)
  kResumeProbe,           // looked the same and the resume probe covering the window saw no
                          // resume: stuck, known
  kUnchangedNoProbe,      // looked the same; no probe ran (no privileges, --no-probe, ...)
  kUnchangedProbeHot,     // looked the same; its function was detached early (too many resumes
                          // for the budget) before the window was covered
  kUnchangedProbeMissed,  // looked the same; its function's probe could not be attached
  kRunning,               // executing on a thread at the look (FrameState::kRunning): not stuck
  kMaybeRunning,          // one of several frames of a function a thread is executing: whether it
                          // is the running one is unknown, so it is at most `unchanged`
};

// The exception a promise holds (a non-null std::exception_ptr), read from the thrown object's
// ABI header in the target. Fields stay empty where the bytes did not validate; `error` says why.
struct HeldException {
  uint64_t object = 0;  // the thrown object's address (the exception_ptr's value)
  std::string type;     // dynamic type, demangled ("std::runtime_error", "int"); "" when unread
  std::string what;     // message of a std::logic_error / std::runtime_error (or subclass)
  bool has_what = false;
  bool what_truncated = false;  // the message was longer than we read
  std::string error;            // why the type or message could not be read; "" when both were
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
  // The stuck check (userspace/snapshot/stuck_check.h). `stuck` only when known not resumed;
  // `unchanged` when it looked the same but nothing could tell whether it was resumed.
  bool stuck = false;
  double stuck_for_s = 0.0;      // known: not resumed for at least this long (probe-covered)
  bool unchanged = false;        // looked the same, not known (never set together with stuck)
  double unchanged_for_s = 0.0;  // looked the same (point and content) for at least this long
  StuckEvidence stuck_evidence = StuckEvidence::kNotChecked;
  int64_t resumes = -1;  // resumes (and destroys) the probe counted, -1: not probed
  // A bounded fingerprint of the frame's bytes (header included), from the look itself.
  uint64_t fingerprint = 0;
  uint32_t fingerprint_bytes = 0;  // 0: not fingerprinted (unreadable)
  // A std::exception_ptr in the promise was non-null (promise type from DWARF).
  std::optional<HeldException> exception;
  bool promise_layout_known = false;  // DWARF said where the promise's exception_ptr members are
  bool orphaned = false;              // no live memory points at it (see Diagnosis::kOrphaned)
  std::optional<RunningOn> running;   // kRunning frames, and candidates of an uncertain join
};

// A thread blocked in futex() on a lock whose owner is recorded: read from the lock's bytes.
struct LockWait {
  uint64_t address = 0;     // the lock object (pthread_mutex_t / pthread_rwlock_t) in the target
  std::string type;         // "pthread_mutex", "pthread_mutex_pi", "pthread_rwlock"
  int owner = 0;            // owning TID (0: not recorded)
  bool owner_died = false;  // FUTEX_OWNER_DIED set in the word (robust / PI)
};

// One frame of a thread's native (synchronous) stack.
struct NativeFrame {
  uint64_t pc = 0;
  std::string function;  // innermost function covering pc (inlined ones included); "" unknown
  std::string file;
  int line = 0;
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
  uint64_t syscall_args[6] = {};        // argument registers of the blocking syscall
  std::optional<LockWait> lock_wait;    // blocked in futex() on a lock with a recorded owner
  // Unwound for every thread blocked in a syscall (snapshot/running_coroutines.h), innermost
  // first.
  std::vector<NativeFrame> native_stack;
  // The coroutine running on the thread, when its resume function is on the native stack:
  int64_t running_frame = -1;              // Snapshot::frames index, -1 when none or not known
  std::string running_function;            // that coroutine's name ("" when none runs here)
  int64_t resume_native_frame = -1;        // native_stack index of its resume function
  std::vector<size_t> running_candidates;  // frames of it that could be the running one, when
                                           // the join was uncertain (running_frame == -1)
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

// A conclusion drawn from the snapshot (and the earlier look, where there was one), stated with
// its evidence. Frame ids index Snapshot::frames; threads are TIDs.
struct Diagnosis {
  enum class Kind {
    kOrphaned,        // suspended frames no live memory points to: they can never resume
    kAwaitCycle,      // coroutines awaiting each other, the same in both looks
    kThreadDeadlock,  // threads waiting on each other's locks (a cycle in the wait-for graph)
    kLockOwnerGone,   // a thread waiting on a lock whose owner thread exited or died
    kFailed,          // coroutines whose promise holds an exception
  };
  struct Lock {
    uint64_t address = 0;
    std::string type;  // as LockWait::type
    int owner = 0;
    bool owner_alive = true;  // the owner TID is a thread of the process
    bool owner_died = false;  // FUTEX_OWNER_DIED
    std::vector<int> waiters;
  };
  Kind kind = Kind::kFailed;
  std::vector<size_t> frame_ids;  // orphaned / failed: every frame of the group; cycle: in order
  std::vector<int> threads;       // deadlock: the cycle in order (each waits for the next)
  std::vector<Lock> locks;
  std::optional<HeldException> exception;  // failed: shared by every frame of the group
  std::string summary;                     // one line
};

const char* to_string(Diagnosis::Kind k);

struct Snapshot {
  int pid = 0;
  std::string command;     // comm
  std::string executable;  // /proc/PID/exe target
  std::vector<CoroFrame> frames;
  std::vector<ThreadInfo> threads;
  std::vector<std::string> warnings;  // degraded results: missing debug info, torn reads, ...
  std::vector<Diagnosis> diagnoses;   // filled by diagnose::diagnose() after the looks
  std::vector<std::string> diagnosis_limits;  // what the diagnoses could not see, for this target
  size_t orphan_candidates = 0;  // suspended heap frames the orphan mark phase could judge
  size_t orphan_unknown_extent =
      0;                       // suspended frames it could not (extent unknown): never orphaned
  bool maps_io_uring = false;  // io_uring rings mapped: pointers may live in kernel memory
  uint64_t bytes_scanned = 0;
  double scan_seconds = 0.0;
  double window_seconds = 0.0;  // --window used for stuck detection (0: one instant)
  StuckProbeInfo stuck_probe;
};

const char* to_string(FrameState s);
const char* to_string(SuspendPoint::Kind k);
const char* to_string(StuckEvidence e);  // "resume-probe", "content-changed", ...

}  // namespace asyncprobe::model
