// The watcher's events: what `asyncprobe watch` reports as it happens, one line each (JSON or
// plain text). The schema is documented for users in docs/WATCH_FORMAT.md; keep both in step.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "userspace/model/snapshot_model.h"

namespace asyncprobe::watch {

enum class EventKind {
  kAttached,   // a process is being watched
  kDetached,   // a watched process is no longer watched (reason: exited, permission-lost, ...)
  kError,      // a process could not be watched or read (reason, message); never fatal
  kUnchanged,  // coroutines sat at one suspend point, unchanged in memory, past the threshold;
               // whether they were resumed in between could not be known (no probe could tell)
  kStuck,      // ... and a resume probe saw them not resumed: stuck, known
  kRecovered,  // the coroutines of an unchanged/stuck episode moved on
  // The diagnoses (userspace/diagnose), from the full rescans (watch/diagnosis_watch.h):
  kOrphaned,        // coroutines no live memory points to: they can never resume
  kAwaitCycle,      // coroutines awaiting each other
  kThreadDeadlock,  // threads waiting on each other's locks
  kLockOwnerGone,   // a thread waiting on a lock whose owner exited or died
  kFailed,          // coroutines whose promise holds an exception, grouped by type and message
};
const char* to_string(EventKind k);

// A suspend point as events and metric labels name it.
struct PointKey {
  std::string function;
  std::string file;      // empty when no rule placed the point
  int line = 0;          // 0: unknown
  long long index = -1;  // raw suspend index: tells unplaced points apart

  bool operator<(const PointKey& o) const;
  bool operator==(const PointKey& o) const;
};

struct StackFrame {
  std::string function;
  std::string file;
  int line = 0;
};

struct Event {
  EventKind kind = EventKind::kAttached;
  std::chrono::system_clock::time_point time;
  int pid = 0;
  std::string command;
  std::string container;  // container id from /proc/PID/cgroup, empty on the host

  // unchanged / stuck / recovered
  PointKey suspend;
  size_t count = 0;               // coroutines at the point (recovered: how many were reported)
  size_t previous_count = 0;      // an update: the count last reported (0 for the first event)
  double for_s = 0.0;             // lower bound on how long they sat there (recovered: the longest)
  std::string evidence;           // how it was decided: "memory-unchanged", "resume-probe", ...
  std::vector<StackFrame> stack;  // root first, ending at the suspend point

  // attached: frames and coroutine functions found; detached/error: reason and message;
  // unchanged: message says why no probe could decide
  size_t coroutines = 0;
  size_t functions = 0;
  size_t objects = 0;         // attached: executable objects mapped (catalogs opened)
  size_t objects_shared = 0;  // of those, catalogs another watched process had loaded already
  std::string reason;
  std::string message;

  // Diagnoses: `count` is the orphaned stacks, the cycle's members, the deadlocked threads or the
  // failed coroutines; `stack` the orphaned group's first stack (root first) or the cycle's
  // members in awaiting order; `previous_count` as above.
  std::string summary;
  size_t frames = 0;         // orphaned: every frame of the group
  std::vector<int> threads;  // thread_deadlock / lock_owner_gone
  std::vector<model::Diagnosis::Lock> locks;
  model::HeldException exception;                         // failed
  std::vector<std::pair<std::string, size_t>> failed_in;  // failed: coroutines per function
  size_t in_window = 0;  // failed: first seen within the last window_s
  double window_s = 0.0;
};

// "2026-12-07T20:25:57.123Z": RFC 3339, UTC, milliseconds.
std::string rfc3339(std::chrono::system_clock::time_point t);

// One line, no newline.
std::string format_json(const Event& e);
std::string format_text(const Event& e);

}  // namespace asyncprobe::watch
