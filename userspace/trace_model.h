// The accounting of `asyncprobe trace`: replays the BPF events (bpf/trace.h) of one target into
// per-function and per-suspend-point statistics (resumes, time running, exact time suspended),
// coroutine runs per thread (for the timeline), blocking calls inside coroutines with their
// stacks, and event-loop stalls with the coroutine responsible. docs/TRACE.md defines every
// quantity; the rules here are the ones written there.
//
// Input comes from the kernel's ring buffer and describes a process we do not trust: every
// event is checked for size and kind, every table is bounded, and unknown ids are counted.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "bpf/trace.h"
#include "userspace/coroutine_index.h"
#include "userspace/trace_unwind.h"

namespace asyncprobe {

// Exact durations: every sample is kept, percentiles are nearest-rank over all of them.
class DurationStats {
 public:
  void add(uint64_t ns);
  uint64_t count() const { return count_; }
  uint64_t total_ns() const { return total_; }
  uint64_t max_ns() const { return max_; }
  // p in (0, 100]; 0 when empty. Nearest rank: the smallest sample >= p% of all samples.
  uint64_t percentile(double p) const;

 private:
  uint64_t count_ = 0, total_ = 0, max_ = 0;
  mutable std::vector<uint64_t> samples_;
  mutable bool sorted_ = true;
};

// One traced coroutine function (its id is the bpf_cookie of its probes).
struct TraceFunction {
  const LoadedCatalog* loaded = nullptr;
  const sym::CoroFunction* fn = nullptr;
  std::string name;
};

struct SuspendPointLocation {
  std::string file;
  int line = 0;
  std::string kind;  // "initial", "await", "final", "" when the index is not one of fn's
};

struct PointStats {
  int64_t index = -1;  // -1: unknown (index unreadable)
  uint64_t resumes = 0;
  uint64_t running_ns = 0;               // self time of the runs that resumed from this point
  DurationStats suspended;               // exact suspended intervals that ended by resuming here
  uint64_t suspended_unknown_start = 0;  // resumes whose suspension began before we saw it
};

struct FunctionStats {
  uint64_t resumes = 0;  // resumed from a suspend point
  uint64_t starts = 0;   // GCC ramps running the body (index 0)
  uint64_t destroys = 0;
  uint64_t running_ns = 0;  // self time of all its runs (nested runs excluded)
  uint64_t offcpu_ns = 0;   // part of running_ns spent off the CPU (blocked or preempted)
  DurationStats suspended;
  uint64_t suspended_unknown_start = 0;
  std::map<int64_t, PointStats> points;
};

// A frame of an async stack at some moment: the coroutine and where it is suspended. The
// suspend point of an awaiting frame is learnt when it next resumes (the index it reads then),
// or from the end-of-trace snapshot.
struct AsyncFrameRef {
  uint64_t frame = 0;
  uint32_t fn = 0;
  int64_t index = -1;    // -1 until known
  bool running = false;  // the innermost frame, running at that moment
  std::string rule;      // awaiter rule that linked it to the frame before it
};

struct BlockingCall {
  uint32_t tid = 0;
  uint32_t nr = 0;
  uint64_t enter_ts = 0, exit_ts = 0;
  int64_t ret = 0;
  uint64_t frame = 0;
  uint32_t fn = 0;
  bool in_progress = false;  // still blocked when the trace ended
  bool stack_truncated = false, stack_failed = false;
  std::vector<UnwoundFrame> stack;         // innermost first, up to the coroutine's resume function
  std::vector<AsyncFrameRef> async_stack;  // running coroutine first, then its awaiters
};

struct Stall {
  uint32_t tid = 0;
  uint64_t start_ts = 0, end_ts = 0;
  uint32_t ended_by_nr = UINT32_MAX;  // wait syscall that ended it; UINT32_MAX = in progress
  size_t runs = 0;                    // coroutine runs seen inside it
  // The run with the most self time inside the stall.
  bool have_culprit = false;
  uint64_t culprit_frame = 0;
  uint32_t culprit_fn = 0;
  int64_t culprit_index = -1;
  uint64_t culprit_self_ns = 0;
  std::vector<AsyncFrameRef> async_stack;  // the culprit during its run, then its awaiters
  size_t captured = SIZE_MAX;              // internal: stack captured when the run ended
};

// One coroutine run on a thread, for the timeline.
struct RunSlice {
  uint32_t tid = 0;
  uint64_t start = 0, end = 0;
  uint64_t frame = 0;
  uint32_t fn = 0;
  int64_t index = -1;
  bool start_of_body = false;  // GCC start
  bool open_at_end = false;    // still running when the trace ended
  uint64_t offcpu_ns = 0;
};

// "awaiter awaits awaited": drawn from the awaiter's run before to the awaited one's run.
struct FlowLink {
  size_t from_slice = 0, to_slice = 0;
};

struct TraceModelOptions {
  bool keep_slices = false;       // for --timeline
  size_t max_slices = 4'000'000;  // beyond: counted in slices_dropped
  size_t max_blocking = 10'000;   // blocking calls kept (more are counted)
  size_t max_stalls = 10'000;
  // Runs at least this long get their async stack captured when they end (a stall's culprit).
  uint64_t stall_threshold_ns = 10'000'000;
};

class TraceModel {
 public:
  TraceModel(std::vector<TraceFunction> functions, TraceModelOptions opts, TraceUnwinder* unwinder);

  // One ring-buffer record. Records are handled in timestamp order (see TraceReorder).
  void handle(const void* data, size_t size);
  // Ends the trace at `now_ns` (CLOCK_MONOTONIC): closes runs still on a thread as open.
  void finish(uint64_t now_ns);
  // A blocking call or stall still in progress at the end, from the BPF thread map.
  void add_in_progress(uint32_t tid, const trace_thread& st, uint64_t now_ns,
                       uint64_t block_threshold_ns, uint64_t stall_threshold_ns);

  const std::vector<TraceFunction>& functions() const { return functions_; }
  const std::vector<FunctionStats>& stats() const { return stats_; }
  const std::vector<BlockingCall>& blocking() const { return blocking_; }
  const std::vector<Stall>& stalls() const { return stalls_; }
  const std::vector<RunSlice>& slices() const { return slices_; }
  const std::vector<FlowLink>& flows() const { return flows_; }
  size_t slices_dropped() const { return slices_dropped_; }
  size_t blocking_dropped() const { return blocking_dropped_; }
  size_t stalls_dropped() const { return stalls_dropped_; }
  uint64_t first_ts() const { return first_ts_; }
  // Records by kind (index = trace_event_kind) and ones that were malformed.
  const uint64_t* records() const { return records_; }
  uint64_t malformed() const { return malformed_; }
  uint64_t unknown_functions() const { return unknown_fn_; }
  uint64_t stack_desyncs() const { return desync_; }
  // Runs still in progress when finish() was called.
  size_t running_at_end() const { return running_at_end_; }
  std::vector<uint32_t> threads_seen() const;

  // What the trace knows about a frame at the end.
  struct FrameEnd {
    uint32_t fn = 0;
    bool seen_running = false;     // ran during the trace
    uint64_t suspended_since = 0;  // end of its last run (0: not since a run we saw)
    bool running = false;
  };
  std::optional<FrameEnd> frame_at_end(uint64_t frame) const;

  // file:line of a suspend index of a function (cached).
  SuspendPointLocation location(uint32_t fn, int64_t index) const;

  // Resolves async-stack frames whose suspend index was still unknown at the end from the
  // index a snapshot read (address -> index).
  void resolve_pending(const std::unordered_map<uint64_t, int64_t>& index_at_end);
  // Completes the stalls' async stacks; call once every record is handled.
  void finalize();

 private:
  struct RunEntry {
    uint64_t frame = 0;
    uint32_t fn = 0;
    int64_t index = -1;
    uint64_t start = 0;
    uint64_t self_start = 0;  // valid while on top
    uint64_t self_ns = 0;
    uint64_t offcpu_ns = 0;
    bool start_of_body = false;
    bool closed = false;  // ended early (resumed elsewhere); ignore when popped
    size_t slice = SIZE_MAX;
  };
  struct RecentRun {
    uint64_t start = 0, end = 0, self_ns = 0, frame = 0;
    uint32_t fn = 0;
    int64_t index = -1;
    size_t captured = SIZE_MAX;  // async stack captured when it ended
  };
  struct ThreadTrack {
    std::vector<RunEntry> stack;
    std::deque<RecentRun> recent;  // completed runs, bounded, for stall attribution
  };
  enum class SlotKind { kBlocking, kStall, kCaptured };
  struct PendingSlot {
    SlotKind kind = SlotKind::kBlocking;
    size_t owner = 0;
    size_t pos = 0;
  };
  struct FrameTrack {
    uint32_t fn = 0;
    uint64_t suspended_since = 0;
    bool seen_running = false;
    bool running = false;
    uint32_t running_tid = 0;
    uint64_t awaiter = 0;
    std::string awaiter_rule;
    size_t last_slice = SIZE_MAX;
    size_t flowed_from = SIZE_MAX;     // awaiter slice already linked to this frame
    std::vector<PendingSlot> pending;  // async-stack entries waiting for this frame's index
  };

  void on_resume(const trace_resume_event& e);
  void on_destroy(const trace_destroy_event& e);
  void on_run_end(const trace_run_end_event& e);
  void on_block(const trace_block_event& e);
  void on_stall(const trace_stall_event& e);
  void on_offcpu(const trace_offcpu_event& e);
  void on_thread_exit(const trace_event_header& h);

  void pop_runs(uint32_t tid, ThreadTrack& t, uint32_t n, uint64_t ts);
  void end_run(uint32_t tid, ThreadTrack& t, RunEntry& r, uint64_t ts);
  void resume_top_clock(ThreadTrack& t, uint64_t ts);
  std::vector<AsyncFrameRef> async_stack_of(uint64_t frame, uint32_t fn, bool first_running,
                                            const PendingSlot& owner);
  void fill_pending(FrameTrack& f, int64_t index);
  AsyncFrameRef* slot(const PendingSlot& p);
  bool valid_fn(uint32_t fn) const { return fn < functions_.size(); }

  std::vector<TraceFunction> functions_;
  TraceModelOptions opts_;
  TraceUnwinder* unwinder_;
  std::vector<FunctionStats> stats_;
  std::unordered_map<uint32_t, ThreadTrack> threads_;
  std::unordered_map<uint64_t, FrameTrack> frames_;
  std::vector<BlockingCall> blocking_;
  std::vector<Stall> stalls_;
  std::vector<RunSlice> slices_;
  std::vector<FlowLink> flows_;
  std::vector<std::vector<AsyncFrameRef>> captured_;
  size_t slices_dropped_ = 0, blocking_dropped_ = 0, stalls_dropped_ = 0;
  uint64_t records_[16] = {};
  uint64_t malformed_ = 0, unknown_fn_ = 0, desync_ = 0;
  uint64_t first_ts_ = 0;
  size_t running_at_end_ = 0;
  mutable std::map<std::pair<uint32_t, int64_t>, SuspendPointLocation> location_cache_;
};

// Puts ring-buffer records back in timestamp order: records from different CPUs can reach the
// ring slightly out of order; one thread's records never are. Records are released once they are
// older than the newest one by `window_ns`, or all at flush().
class TraceReorder {
 public:
  explicit TraceReorder(uint64_t window_ns = 50'000'000) : window_(window_ns) {}
  void push(const void* data, size_t size);
  template <typename F>
  void release(F&& sink, bool flush);
  size_t pending() const { return pending_.size(); }

 private:
  struct Rec {
    uint64_t ts;
    uint64_t seq;
    std::vector<uint8_t> bytes;
  };
  uint64_t window_;
  uint64_t seq_ = 0;
  uint64_t newest_ = 0;
  std::vector<Rec> pending_;
};

template <typename F>
void TraceReorder::release(F&& sink, bool flush) {
  if (pending_.empty()) return;
  std::stable_sort(pending_.begin(), pending_.end(), [](const Rec& a, const Rec& b) {
    return a.ts != b.ts ? a.ts < b.ts : a.seq < b.seq;
  });
  size_t n = 0;
  for (; n < pending_.size(); ++n) {
    if (!flush && pending_[n].ts + window_ > newest_) break;
    sink(pending_[n].bytes.data(), pending_[n].bytes.size());
  }
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(n));
}

}  // namespace asyncprobe
