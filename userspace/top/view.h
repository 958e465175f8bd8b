// The view model of `asyncprobe top`: what one refresh shows, computed from the latest snapshot
// and what earlier refreshes saw (how long each coroutine has waited at its point, how often a
// point's coroutines moved). Pure data and pure functions: the screen draws it, tests check it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "userspace/model/snapshot_model.h"

namespace asyncprobe::top {

// One row of the table: the coroutines waiting at one suspend point.
struct PointRow {
  std::string function;
  std::string file;
  int line = 0;
  int64_t index = -1;  // raw suspend index, shown when the line is unknown
  model::SuspendPoint::Kind kind = model::SuspendPoint::Kind::kUnknown;
  size_t count = 0;            // coroutines waiting there now
  double oldest_s = 0;         // the longest any of them has waited there unchanged (lower bound)
  double resumes_per_s = -1;   // resumes the probe counted there per second; -1: none probed
  size_t stuck = 0;            // known not resumed (the stuck check's verdict)
  size_t unchanged = 0;        // looked the same, not known whether resumed
  int running_thread = 0;      // running coroutines: the thread (file:line is where it runs now)
  std::vector<size_t> frames;  // indices into the snapshot's frames
};

struct Header {
  int pid = 0;
  std::string command;
  size_t threads = 0;
  std::vector<std::pair<std::string, size_t>> blocked;  // syscall -> threads blocked in it
  size_t suspended = 0, running = 0, done = 0, unknown = 0;
  size_t stuck = 0, unchanged = 0;
  // The diagnoses of the last look (diagnose/): coroutines orphaned, await cycles, thread
  // deadlocks (waits on a dead owner included), and coroutines seen failed in the last 5 minutes.
  size_t orphaned = 0, await_cycles = 0, thread_deadlocks = 0, failed_recent = 0;
  double refresh_ms = 0;  // what the last refresh cost asyncprobe (wall time of the look)
  uint64_t refreshes = 0;
};

enum class SortKey { kStuckFirst, kCount, kOldest };
const char* to_string(SortKey k);
SortKey next(SortKey k);

// What the tracker remembers between refreshes: per frame, where and since when it waits.
class WaitTracker {
 public:
  // Folds one snapshot in, taken at `now_s` (monotonic seconds). Returns, per frame of `snap`,
  // how long it has been seen waiting unchanged at its current point (0 for a frame first seen
  // now, or one whose bytes changed or that the probe saw resumed).
  std::vector<double> update(const model::Snapshot& snap, double now_s);

 private:
  struct Seen {
    std::string point;
    uint64_t header = 0;  // resume ^ destroy ^ fingerprint: a new coroutine at a reused address,
                          // or one that moved in place, starts over
    double since_s = 0;
  };
  std::unordered_map<uint64_t, Seen> seen_;
};

// The key that names a suspend point (function, file:line, or the raw index when unplaced).
std::string point_key(const model::CoroFrame& f);

struct View {
  Header header;
  std::vector<PointRow> rows;  // sorted, filtered
};

struct ViewOptions {
  SortKey sort = SortKey::kStuckFirst;
  std::string filter;  // substring of function or file; empty: every row
};

// Builds the view from one snapshot (marked by the stuck check) and the per-frame wait ages
// (from WaitTracker::update).
View build_view(const model::Snapshot& snap, const std::vector<double>& ages,
                const ViewOptions& opts, double refresh_ms, uint64_t refreshes);

// Counts the snapshot's diagnoses into the header (failed_recent is the session's to fill).
void count_diagnoses(const model::Snapshot& snap, Header* h);

// The diagnoses page: the snapshot report's DIAGNOSES section, one string per line.
std::vector<std::string> diagnosis_lines(const model::Snapshot& snap, bool unicode);

// The async stacks through one row's coroutines (their awaiters up to the roots and what they
// await), coalesced and drawn as the snapshot report draws them, one string per line; for a
// coroutine running on a thread, then that thread's native stack down to the coroutine.
std::vector<std::string> row_stacks(const model::Snapshot& snap, const PointRow& row, bool unicode);

// The table's age and rate cells: "12.3s", "850ms", "-".
std::string age_text(double seconds);
std::string rate_text(double per_s);

}  // namespace asyncprobe::top
