// The accounting of `asyncprobe trace`: replays the trace events (trace_events.h) of one target
// into per-function and per-suspend-point statistics (resumes, time running, exact time
// suspended), coroutine runs per thread (for the timeline), blocking calls inside coroutines with
// their stacks, and event-loop stalls with the coroutine responsible. docs/TRACE.md defines every
// quantity; the rules here are the ones written there.
//
// The events describe a process we do not trust: the kernel session checked each record's size
// and kind when it translated it; here every table is bounded, what goes past a bound is counted
// (slices_dropped, blocking_dropped, stalls_dropped), and unknown ids are counted.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "userspace/coro/awaiter_rules.h"
#include "userspace/process/stack_unwind.h"
#include "userspace/snapshot/coroutine_index.h"
#include "userspace/trace/trace_events.h"

namespace asyncprobe::trace {

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
  const snapshot::LoadedCatalog* loaded = nullptr;
  const symbolizer::CoroFunction* fn = nullptr;
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
  int64_t index = -1;                                 // -1 until known
  bool running = false;                               // the innermost frame, running at that moment
  coro::AwaiterRule rule = coro::AwaiterRule::kNone;  // the edge to the frame before it
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
  std::vector<process::UnwoundFrame>
      stack;                               // innermost first, up to the coroutine's resume function
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

// Leaf waits (`profile --await --trace`, docs/PROFILE.md): one suspension interval of a coroutine
// during which no coroutine named it as its awaiter, with its async stack at the time. Waits of
// one stack are summed: `stack` is leaf first, each (function id, suspend index); index -1 when
// that frame's suspend point never became known.
struct LeafWaitStack {
  std::vector<std::pair<uint32_t, int64_t>> stack;
  bool uncertain = false;  // an edge of the stack came from a generic snapshot rule
  uint64_t count = 0;
  uint64_t total_ns = 0;
  uint64_t coroutine = 0;  // the leaf's frame while every wait was that one coroutine's, else 0
};

// What the leaf-wait accounting saw besides the waits it counted.
struct LeafWaitCounters {
  uint64_t waits = 0;              // leaf waits counted (including the two below)
  uint64_t clipped_at_start = 0;   // ... that began before the profile: counted from its start
  uint64_t open_at_end = 0;        // ... still open at the end: counted up to the end
  uint64_t open_unconfirmed = 0;   // open at the end, not in the end snapshot: not counted
  uint64_t awaited = 0;            // intervals spent awaiting another coroutine: not counted
  uint64_t not_started = 0;        // intervals at the initial suspend point: not counted
  uint64_t unknown_start = 0;      // resumes whose suspension start was not seen: not counted
  uint64_t unresolved_points = 0;  // parent frames of counted waits whose suspend point is unknown
  uint64_t unknown_awaiter = 0;    // waits whose promise names a frame the trace never saw
  uint64_t uncertain = 0;          // waits whose stack has a guessed edge
  uint64_t in_flight_max = 0;      // most wait stacks waiting for a parent's suspend point at once
};

struct TraceModelOptions {
  bool leaf_waits = false;        // account leaf waits (profile --await --trace)
  bool keep_durations = true;     // every suspended interval, for the report's percentiles
  bool keep_slices = false;       // for --timeline
  size_t max_slices = 4'000'000;  // beyond: counted in slices_dropped
  size_t max_blocking = 10'000;   // blocking calls kept (more are counted)
  size_t max_stalls = 10'000;
  // Runs at least this long get their async stack captured when they end (a stall's culprit).
  uint64_t stall_threshold_ns = 10'000'000;
};

class TraceModel {
 public:
  TraceModel(std::vector<TraceFunction> functions, TraceModelOptions opts,
             process::TraceUnwinder* unwinder);

  // One event. Events are handled in timestamp order (see TraceReorder).
  void handle(const TraceEvent& event);
  // Ends the trace at `now_ns` (CLOCK_MONOTONIC): closes runs still on a thread as open.
  void finish(uint64_t now_ns);
  // A blocking call or stall still in progress at the end, from the probes' thread state.
  void add_in_progress(const ThreadStateAtEnd& st, uint64_t now_ns, uint64_t block_threshold_ns,
                       uint64_t stall_threshold_ns);

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

  // Leaf waits (opts.leaf_waits). A coroutine suspended when the trace starts, from a snapshot
  // taken then: suspended since `since_ns` at `index`, awaited by `awaiter` (0: none;
  // `uncertain_edge` when that edge is a guess), `awaited` when another coroutine awaits it.
  // Call before handling any record.
  void seed_suspended(uint64_t frame, uint32_t fn, uint64_t since_ns, int64_t index,
                      uint64_t awaiter, bool uncertain_edge, bool awaited);
  // Waits still open at `end_ns`: frames that the end snapshot shows suspended (address ->
  // suspend index) and that no coroutine awaits count up to the end; others open are counted in
  // open_unconfirmed. Call after finish(), before resolve_pending().
  void close_open_waits(uint64_t end_ns, const std::unordered_map<uint64_t, int64_t>& suspended);
  // Every wait stack, with parents whose point stayed unknown at index -1. Call last.
  std::vector<LeafWaitStack> take_leaf_waits();
  const LeafWaitCounters& leaf_wait_counters() const { return wait_counters_; }

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
  enum class SlotKind { kBlocking, kStall, kCaptured, kWait };
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
    coro::AwaiterRule awaiter_rule = coro::AwaiterRule::kNone;
    size_t last_slice = SIZE_MAX;
    size_t flowed_from = SIZE_MAX;     // awaiter slice already linked to this frame
    std::vector<PendingSlot> pending;  // async-stack entries waiting for this frame's index
    uint64_t generation = 0;       // suspensions seen: a parent of a wait is (frame, generation)
    bool awaited = false;          // a coroutine named it as awaiter since it last resumed
    bool uncertain_edge = false;   // its awaiter edge is a guess (seeded from a generic rule)
    bool unknown_awaiter = false;  // its promise names a frame the trace has not seen
    bool seeded = false;           // suspended when the trace started (seed_suspended)
    int64_t seeded_index = -1;     // its suspend index then (generation 0)
  };
  // Waits of one leaf point under one chain of parents, each in one suspension, until every
  // parent's suspend point is known; then merged into waits_done_ by points only.
  struct WaitKey {
    uint32_t fn = 0;
    int64_t index = -1;
    std::vector<std::pair<uint64_t, uint64_t>> parents;  // (frame, generation)
    bool operator<(const WaitKey& o) const {
      return std::tie(fn, index, parents) < std::tie(o.fn, o.index, o.parents);
    }
  };
  struct WaitInFlight {
    WaitKey key;
    std::vector<AsyncFrameRef> stack;  // leaf first; parents' indexes filled as they resume
    std::vector<int64_t> fallback;     // parents' indexes at the start snapshot, else -1
    size_t unresolved = 0;
    bool uncertain = false;
    uint64_t count = 0, total_ns = 0, coroutine = 0;
  };
  using DoneKey = std::pair<std::vector<std::pair<uint32_t, int64_t>>, bool>;

  // A resume that ends a suspension counted as a leaf wait (opts.leaf_waits), and its length.
  struct LeafWaitEnd {
    bool counts = false;
    uint64_t ns = 0;
  };

  void on(const ResumeEvent& e);
  void on(const DestroyEvent& e);
  void on(const RunEndEvent& e);
  void on(const BlockEvent& e);
  void on(const StallEvent& e);
  void on(const OffCpuEvent& e);
  void on(const ThreadExitEvent& h);

  // The parts of a resume: the runs it ends, its frame's track, the statistics and wait it
  // closes, who awaits the frame (the awaiter rules), and the run it begins.
  void end_runs_before(uint32_t tid, ThreadTrack& t, const ResumeEvent& e);
  FrameTrack& frame_resumed(uint32_t tid, const ResumeEvent& e);
  LeafWaitEnd count_resume(FrameTrack& f, const ResumeEvent& e);
  void link_awaiter(FrameTrack& f, const ResumeEvent& e);
  void push_run(ThreadTrack& t, FrameTrack& f, const ResumeEvent& e);
  size_t add_slice(FrameTrack& f, const ResumeEvent& e);  // SIZE_MAX when over max_slices
  std::vector<process::UnwoundFrame> unwind_to_resume(const BlockEvent& e);

  void pop_runs(uint32_t tid, ThreadTrack& t, uint32_t n, uint64_t ts);
  void end_run(uint32_t tid, ThreadTrack& t, RunEntry& r, uint64_t ts);
  void resume_top_clock(ThreadTrack& t, uint64_t ts);
  std::vector<AsyncFrameRef> async_stack_of(uint64_t frame, uint32_t fn, bool first_running,
                                            const PendingSlot& owner);
  void fill_pending(FrameTrack& f, int64_t index);
  AsyncFrameRef* slot(const PendingSlot& p);
  bool counts_as_leaf_wait(const FrameTrack& f, int64_t index);
  void add_leaf_wait(uint64_t frame, FrameTrack& f, int64_t index, uint64_t ns);
  void wait_slot_filled(size_t id);
  void finish_wait(size_t id);
  bool valid_fn(uint32_t fn) const { return fn < functions_.size(); }

  std::vector<TraceFunction> functions_;
  TraceModelOptions opts_;
  process::TraceUnwinder* unwinder_;
  std::vector<FunctionStats> stats_;
  std::unordered_map<uint32_t, ThreadTrack> threads_;
  std::unordered_map<uint64_t, FrameTrack> frames_;
  std::vector<BlockingCall> blocking_;
  std::vector<Stall> stalls_;
  std::vector<RunSlice> slices_;
  std::vector<FlowLink> flows_;
  std::vector<std::vector<AsyncFrameRef>> captured_;
  size_t slices_dropped_ = 0, blocking_dropped_ = 0, stalls_dropped_ = 0;
  uint64_t unknown_fn_ = 0, desync_ = 0;
  uint64_t first_ts_ = 0;
  size_t running_at_end_ = 0;
  std::map<WaitKey, size_t> wait_ids_;
  std::unordered_map<size_t, WaitInFlight> waits_in_flight_;
  size_t next_wait_id_ = 0;
  std::map<DoneKey, LeafWaitStack> waits_done_;
  LeafWaitCounters wait_counters_;
  mutable std::map<std::pair<uint32_t, int64_t>, SuspendPointLocation> location_cache_;
};

// Puts events back in timestamp order: records from different CPUs can reach the ring slightly
// out of order; one thread's records never are. Events are released once they are older than the
// newest one by `window_ns`, or all at flush().
class TraceReorder {
 public:
  explicit TraceReorder(uint64_t window_ns = 50'000'000) : window_(window_ns) {}
  void push(TraceEvent event);
  template <typename F>
  void release(F&& sink, bool flush);
  size_t pending() const { return pending_.size(); }

 private:
  struct Rec {
    uint64_t ts;
    uint64_t seq;
    TraceEvent event;
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
    sink(static_cast<const TraceEvent&>(pending_[n].event));
  }
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(n));
}

}  // namespace asyncprobe::trace
