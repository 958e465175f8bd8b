#include "userspace/trace/trace_model.h"

#include <algorithm>
#include <cstddef>
#include <set>

namespace asyncprobe::trace {

namespace {

constexpr size_t kRecentRuns = 65536;     // completed runs kept per thread for stalls
constexpr size_t kMaxAsyncDepth = 256;    // awaiter chain bound
constexpr size_t kMaxFrames = 4'000'000;  // frames tracked at once

}  // namespace

void DurationStats::add(uint64_t ns) {
  ++count_;
  total_ += ns;
  max_ = std::max(max_, ns);
  if (!samples_.empty() && ns < samples_.back()) sorted_ = false;
  samples_.push_back(ns);
}

uint64_t DurationStats::percentile(double p) const {
  if (samples_.empty()) return 0;
  if (!sorted_) {
    std::sort(samples_.begin(), samples_.end());
    sorted_ = true;
  }
  p = std::clamp(p, 0.0, 100.0);
  // Nearest rank: ceil(p/100 * n), 1-based.
  double rank = p / 100.0 * static_cast<double>(samples_.size());
  size_t r = static_cast<size_t>(rank);
  if (static_cast<double>(r) < rank) ++r;
  if (r == 0) r = 1;
  return samples_[std::min(r, samples_.size()) - 1];
}

void TraceReorder::push(TraceEvent e) {
  const uint64_t ts = header_of(e).ts;
  newest_ = std::max<uint64_t>(newest_, ts);
  pending_.push_back(Rec{ts, seq_++, std::move(e)});
}

TraceModel::TraceModel(std::vector<TraceFunction> functions, TraceModelOptions opts,
                       process::TraceUnwinder* unwinder)
    : functions_(std::move(functions)), opts_(opts), unwinder_(unwinder) {
  stats_.resize(functions_.size());
}

void TraceModel::handle(const TraceEvent& event) {
  const EventHeader& h = header_of(event);
  if (first_ts_ == 0 || h.ts < first_ts_) first_ts_ = h.ts;
  std::visit([this](const auto& e) { on(e); }, event);
}

void TraceModel::resume_top_clock(ThreadTrack& t, uint64_t ts) {
  if (!t.stack.empty()) t.stack.back().self_start = ts;
}

void TraceModel::end_run(uint32_t tid, ThreadTrack& t, RunEntry& r, uint64_t ts) {
  if (r.closed) return;
  r.closed = true;
  bool on_top = !t.stack.empty() && &t.stack.back() == &r;
  if (on_top && ts > r.self_start) r.self_ns += ts - r.self_start;
  if (valid_fn(r.fn)) {
    FunctionStats& fs = stats_[r.fn];
    fs.running_ns += r.self_ns;
    fs.offcpu_ns += std::min(r.offcpu_ns, r.self_ns);
    if (!r.start_of_body) {
      PointStats& p = fs.points[r.index];
      p.index = r.index;
      p.running_ns += r.self_ns;
    }
  }
  auto it = frames_.find(r.frame);
  if (it != frames_.end() && it->second.fn == r.fn && it->second.running &&
      it->second.running_tid == tid) {
    it->second.running = false;
    it->second.suspended_since = ts;
  }
  if (r.slice < slices_.size()) {
    slices_[r.slice].end = ts;
    slices_[r.slice].offcpu_ns = r.offcpu_ns;
  }
  RecentRun rr{r.start, ts, r.self_ns, r.frame, r.fn, r.index, SIZE_MAX};
  if (r.self_ns >= opts_.stall_threshold_ns && valid_fn(r.fn) &&
      captured_.size() < opts_.max_stalls) {
    // Long enough to be a stall's culprit: its async stack now, while its awaiters still exist.
    captured_.emplace_back();
    PendingSlot owner{SlotKind::kCaptured, captured_.size() - 1, 0};
    std::vector<AsyncFrameRef> st = async_stack_of(r.frame, r.fn, true, owner);
    if (!st.empty()) st.front().index = r.index;
    captured_.back() = std::move(st);
    rr.captured = captured_.size() - 1;
  }
  t.recent.push_back(rr);
  if (t.recent.size() > kRecentRuns) t.recent.pop_front();
}

void TraceModel::pop_runs(uint32_t tid, ThreadTrack& t, uint32_t n, uint64_t ts) {
  for (uint32_t i = 0; i < n; ++i) {
    if (t.stack.empty()) {
      ++desync_;  // the kernel popped a run we never saw start (a lost record)
      break;
    }
    end_run(tid, t, t.stack.back(), ts);
    t.stack.pop_back();
  }
  if (n > 0) resume_top_clock(t, ts);
}

AsyncFrameRef* TraceModel::slot(const PendingSlot& p) {
  if (p.kind == SlotKind::kWait) {
    auto w = waits_in_flight_.find(p.owner);
    if (w == waits_in_flight_.end() || p.pos >= w->second.stack.size()) return nullptr;
    return &w->second.stack[p.pos];
  }
  if (p.kind == SlotKind::kCaptured) {
    if (p.owner >= captured_.size() || p.pos >= captured_[p.owner].size()) return nullptr;
    return &captured_[p.owner][p.pos];
  }
  if (p.kind == SlotKind::kStall) {
    if (p.owner >= stalls_.size() || p.pos >= stalls_[p.owner].async_stack.size()) return nullptr;
    return &stalls_[p.owner].async_stack[p.pos];
  }
  if (p.owner >= blocking_.size() || p.pos >= blocking_[p.owner].async_stack.size()) return nullptr;
  return &blocking_[p.owner].async_stack[p.pos];
}

void TraceModel::fill_pending(FrameTrack& f, int64_t index) {
  std::vector<PendingSlot> pending;
  pending.swap(f.pending);
  for (const PendingSlot& p : pending) {
    AsyncFrameRef* s = slot(p);
    if (s == nullptr) continue;
    s->index = index;
    if (p.kind == SlotKind::kWait) wait_slot_filled(p.owner);
  }
}

std::vector<AsyncFrameRef> TraceModel::async_stack_of(uint64_t frame, uint32_t fn,
                                                      bool first_running,
                                                      const PendingSlot& owner) {
  std::vector<AsyncFrameRef> out;
  std::set<uint64_t> seen;
  uint64_t at = frame;
  uint32_t at_fn = fn;
  coro::AwaiterRule rule = coro::AwaiterRule::kNone;
  for (size_t depth = 0; depth < kMaxAsyncDepth && at != 0 && seen.insert(at).second; ++depth) {
    AsyncFrameRef ref;
    ref.frame = at;
    ref.fn = at_fn;
    ref.rule = rule;
    ref.running = depth == 0 && first_running;
    auto it = frames_.find(at);
    out.push_back(ref);
    if (it == frames_.end()) break;
    if (!ref.running) {
      PendingSlot p = owner;
      p.pos = out.size() - 1;
      it->second.pending.push_back(p);
    }
    at = it->second.awaiter;
    rule = it->second.awaiter_rule;
    if (at != 0) {
      auto next = frames_.find(at);
      if (next == frames_.end()) break;
      at_fn = next->second.fn;
    }
  }
  return out;
}

void TraceModel::on(const ResumeEvent& e) {
  const uint32_t tid = e.tid;
  ThreadTrack& t = threads_[tid];
  end_runs_before(tid, t, e);
  if (!valid_fn(e.fn)) {
    ++unknown_fn_;
    return;
  }
  FrameTrack& f = frame_resumed(tid, e);
  const int64_t index = e.index;
  const LeafWaitEnd wait = count_resume(f, e);
  f.running = true;
  f.running_tid = tid;
  f.seen_running = true;
  f.suspended_since = 0;
  // Awaited again once a coroutine names it, during this run (a child resumed inside it) or
  // during its next suspension.
  f.awaited = false;
  link_awaiter(f, e);
  if (wait.counts) {
    if (f.seeded && f.generation == 0) ++wait_counters_.clipped_at_start;
    add_leaf_wait(e.frame, f, index, wait.ns);
  }
  if (!e.start_of_body) ++f.generation;
  push_run(t, f, e);
}

void TraceModel::end_runs_before(uint32_t tid, ThreadTrack& t, const ResumeEvent& e) {
  pop_runs(tid, t, e.popped, e.ts);
  if (e.replaces_top) {
    if (!t.stack.empty()) {
      end_run(tid, t, t.stack.back(), e.ts);
      t.stack.pop_back();
    } else {
      ++desync_;
    }
  } else if (!t.stack.empty()) {
    RunEntry& top = t.stack.back();
    if (!top.closed && e.ts > top.self_start) top.self_ns += e.ts - top.self_start;
  }
}

TraceModel::FrameTrack& TraceModel::frame_resumed(uint32_t tid, const ResumeEvent& e) {
  auto it = frames_.find(e.frame);
  if (it != frames_.end() && it->second.fn != e.fn) {
    // The address now holds another coroutine: the old frame was freed unseen.
    frames_.erase(it);
    it = frames_.end();
  }
  if (it != frames_.end() && it->second.running && it->second.running_tid != tid) {
    // Resumed here while we still count it as running on another thread: that run ended
    // before this resume (the other thread's next boundary came later).
    auto other = threads_.find(it->second.running_tid);
    if (other != threads_.end()) {
      for (auto r = other->second.stack.rbegin(); r != other->second.stack.rend(); ++r) {
        if (r->frame == e.frame && !r->closed) {
          end_run(it->second.running_tid, other->second, *r, e.ts);
          break;
        }
      }
    }
    // When it really ended there is unknown: no suspended interval is counted for this resume.
    it->second.running = false;
    it->second.suspended_since = 0;
  }
  if (it == frames_.end()) {
    if (frames_.size() >= kMaxFrames) frames_.clear();
    it = frames_.emplace(e.frame, FrameTrack{}).first;
    it->second.fn = e.fn;
  }
  return it->second;
}

TraceModel::LeafWaitEnd TraceModel::count_resume(FrameTrack& f, const ResumeEvent& e) {
  FunctionStats& fs = stats_[e.fn];
  const int64_t index = e.index;
  const uint64_t ts = e.ts;
  LeafWaitEnd wait;  // this resume ends a wait to count once the awaiter is known
  if (e.start_of_body) {
    ++fs.starts;
    return wait;
  }
  ++fs.resumes;
  PointStats& p = fs.points[index];
  p.index = index;
  ++p.resumes;
  if (f.suspended_since != 0 && ts >= f.suspended_since && !f.running) {
    wait.ns = ts - f.suspended_since;
    if (opts_.keep_durations) {
      fs.suspended.add(wait.ns);
      p.suspended.add(wait.ns);
    }
    wait.counts = opts_.leaf_waits && counts_as_leaf_wait(f, index);
  } else {
    ++fs.suspended_unknown_start;
    ++p.suspended_unknown_start;
    // A first resume from the initial suspend point ends no wait (counts_as_leaf_wait): only
    // the others are waits that went uncounted.
    if (opts_.leaf_waits && location(f.fn, index).kind != "initial") {
      ++wait_counters_.unknown_start;
    }
  }
  fill_pending(f, index);
  return wait;
}

void TraceModel::link_awaiter(FrameTrack& f, const ResumeEvent& e) {
  // Who awaits this frame: library rules over the promise words read at resume.
  // A frame the trace knows is live (destroys erase it); its promise offset is the catalog's.
  auto find_live = [&](uint64_t addr, uint64_t* promise_offset) {
    auto a = frames_.find(addr);
    if (a == frames_.end()) return false;
    const symbolizer::CoroFunction* cf = functions_[a->second.fn].fn;
    *promise_offset = cf != nullptr ? cf->promise_offset : coro::kDefaultPromiseOffset;
    return true;
  };
  static_assert(kPromiseWords == coro::kPromiseWords);
  uint64_t promise[coro::kPromiseWords];
  std::copy(std::begin(e.promise), std::end(e.promise), promise);
  const coro::AwaiterEdge edge = coro::awaiter_from_promise(e.frame, promise, find_live);
  const uint64_t awaiter = edge.frame;
  if (awaiter != 0) {
    f.awaiter = awaiter;
    f.awaiter_rule = edge.rule;
    f.uncertain_edge = false;
    f.unknown_awaiter = false;
    if (opts_.leaf_waits) frames_.find(awaiter)->second.awaited = true;  // found just above
  } else if (e.promise[0] != 0 && e.promise[0] != e.frame && f.awaiter == 0) {
    f.unknown_awaiter = true;
  }
}

void TraceModel::push_run(ThreadTrack& t, FrameTrack& f, const ResumeEvent& e) {
  RunEntry r;
  r.frame = e.frame;
  r.fn = e.fn;
  r.index = e.index;
  r.start = e.ts;
  r.self_start = e.ts;
  r.start_of_body = e.start_of_body;
  if (opts_.keep_slices) r.slice = add_slice(f, e);
  t.stack.push_back(r);
}

size_t TraceModel::add_slice(FrameTrack& f, const ResumeEvent& e) {
  if (slices_.size() >= opts_.max_slices) {
    ++slices_dropped_;
    return SIZE_MAX;
  }
  const size_t id = slices_.size();
  RunSlice s;
  s.tid = e.tid;
  s.start = e.ts;
  s.end = e.ts;
  s.frame = e.frame;
  s.fn = e.fn;
  s.index = e.index;
  s.start_of_body = e.start_of_body;
  slices_.push_back(s);
  if (f.awaiter != 0) {
    auto a = frames_.find(f.awaiter);
    if (a != frames_.end() && a->second.last_slice != SIZE_MAX &&
        f.flowed_from != a->second.last_slice) {
      flows_.push_back(FlowLink{a->second.last_slice, id});
      f.flowed_from = a->second.last_slice;
    }
  }
  f.last_slice = id;
  return id;
}

void TraceModel::on(const DestroyEvent& e) {
  ThreadTrack& t = threads_[e.tid];
  pop_runs(e.tid, t, e.popped, e.ts);
  if (!valid_fn(e.fn)) {
    ++unknown_fn_;
    return;
  }
  ++stats_[e.fn].destroys;
  auto it = frames_.find(e.frame);
  if (it != frames_.end()) {
    it->second.pending.clear();
    frames_.erase(it);
  }
}

void TraceModel::on(const RunEndEvent& e) {
  ThreadTrack& t = threads_[e.tid];
  pop_runs(e.tid, t, e.popped, e.ts);
}

std::vector<process::UnwoundFrame> TraceModel::unwind_to_resume(const BlockEvent& e) {
  std::vector<process::UnwoundFrame> stack =
      unwinder_->unwind(e.regs.data(), e.stack_addr, e.stack.data(), e.stack.size());
  // Keep the frames up to the running coroutine's resume function; what is above it is the
  // code that resumed the coroutine, told by the async stack instead.
  if (valid_fn(e.fn) && functions_[e.fn].fn != nullptr && functions_[e.fn].loaded != nullptr) {
    const symbolizer::CoroFunction& cf = *functions_[e.fn].fn;
    const uint64_t lo = cf.resume + functions_[e.fn].loaded->bias;
    const uint64_t hi = lo + std::max<uint64_t>(cf.resume_size, 1);
    for (size_t i = 0; i < stack.size(); ++i) {
      const uint64_t pc = stack[i].pc - (i == 0 ? 0 : 1);
      if (pc >= lo && pc < hi) {
        stack.resize(i + 1);
        break;
      }
    }
  }
  return stack;
}

void TraceModel::on(const BlockEvent& e) {
  if (blocking_.size() >= opts_.max_blocking) {
    ++blocking_dropped_;
    return;
  }
  BlockingCall b;
  b.tid = e.tid;
  b.nr = e.nr;
  b.enter_ts = e.enter_ts;
  b.exit_ts = e.ts;
  b.ret = e.ret;
  b.frame = e.frame;
  b.fn = valid_fn(e.fn) ? e.fn : 0;
  b.stack_truncated = e.stack_truncated;
  b.stack_failed = e.stack_failed;
  if (unwinder_ != nullptr && unwinder_->ok()) b.stack = unwind_to_resume(e);
  blocking_.push_back(std::move(b));
  if (valid_fn(e.fn)) {
    PendingSlot owner{SlotKind::kBlocking, blocking_.size() - 1, 0};
    blocking_.back().async_stack = async_stack_of(e.frame, e.fn, true, owner);
  }
}

void TraceModel::on(const StallEvent& e) {
  if (stalls_.size() >= opts_.max_stalls) {
    ++stalls_dropped_;
    return;
  }
  Stall s;
  s.tid = e.tid;
  s.start_ts = e.start_ts;
  s.end_ts = e.ts;
  s.ended_by_nr = e.nr;
  auto t = threads_.find(e.tid);
  if (t != threads_.end()) {
    for (auto r = t->second.recent.rbegin(); r != t->second.recent.rend(); ++r) {
      if (r->end < s.start_ts) break;
      if (r->start < s.start_ts || r->end > s.end_ts) continue;
      ++s.runs;
      if (!s.have_culprit || r->self_ns > s.culprit_self_ns) {
        s.captured = r->captured;
        s.have_culprit = true;
        s.culprit_frame = r->frame;
        s.culprit_fn = r->fn;
        s.culprit_index = r->index;
        s.culprit_self_ns = r->self_ns;
      }
    }
  }
  stalls_.push_back(s);
  if (s.have_culprit && s.captured == SIZE_MAX && valid_fn(s.culprit_fn)) {
    PendingSlot owner{SlotKind::kStall, stalls_.size() - 1, 0};
    stalls_.back().async_stack = async_stack_of(s.culprit_frame, s.culprit_fn, false, owner);
  }
}

void TraceModel::on(const OffCpuEvent& e) {
  auto t = threads_.find(e.tid);
  if (t == threads_.end() || t->second.stack.empty() || e.ts < e.off_ts) return;
  t->second.stack.back().offcpu_ns += e.ts - e.off_ts;
}

void TraceModel::on(const ThreadExitEvent& h) {
  auto t = threads_.find(h.tid);
  if (t == threads_.end()) return;
  pop_runs(h.tid, t->second, static_cast<uint32_t>(t->second.stack.size()), h.ts);
}

void TraceModel::finish(uint64_t now_ns) {
  for (auto& [tid, t] : threads_) {
    // Still running: counted up to now, left running (their frames are not suspended).
    for (size_t i = t.stack.size(); i-- > 0;) {
      RunEntry& r = t.stack[i];
      if (r.closed) continue;
      if (i + 1 == t.stack.size() && now_ns > r.self_start) r.self_ns += now_ns - r.self_start;
      r.closed = true;
      ++running_at_end_;
      if (valid_fn(r.fn)) {
        stats_[r.fn].running_ns += r.self_ns;
        stats_[r.fn].offcpu_ns += std::min(r.offcpu_ns, r.self_ns);
        if (!r.start_of_body) stats_[r.fn].points[r.index].running_ns += r.self_ns;
      }
      if (r.slice < slices_.size()) {
        slices_[r.slice].end = now_ns;
        slices_[r.slice].open_at_end = true;
        slices_[r.slice].offcpu_ns = r.offcpu_ns;
      }
      t.recent.push_back(RecentRun{r.start, now_ns, r.self_ns, r.frame, r.fn, r.index, SIZE_MAX});
    }
  }
}

void TraceModel::add_in_progress(const ThreadStateAtEnd& st, uint64_t now_ns,
                                 uint64_t block_threshold_ns, uint64_t stall_threshold_ns) {
  if (st.syscall_enter_ts != 0 && st.syscall_in_coroutine && now_ns > st.syscall_enter_ts &&
      now_ns - st.syscall_enter_ts >= block_threshold_ns && valid_fn(st.syscall_fn)) {
    if (blocking_.size() >= opts_.max_blocking) {
      ++blocking_dropped_;
    } else {
      BlockingCall b;
      b.tid = st.tid;
      b.nr = st.syscall_nr;
      b.enter_ts = st.syscall_enter_ts;
      b.exit_ts = now_ns;
      b.frame = st.syscall_frame;
      b.fn = st.syscall_fn;
      b.in_progress = true;
      blocking_.push_back(std::move(b));
      PendingSlot owner{SlotKind::kBlocking, blocking_.size() - 1, 0};
      blocking_.back().async_stack = async_stack_of(st.syscall_frame, st.syscall_fn, true, owner);
    }
  }
  const bool in_wait = st.syscall_enter_ts != 0 && st.syscall_is_wait;
  if (!in_wait && st.wait_exit_ts != 0 && st.ran_since_wait && now_ns > st.wait_exit_ts &&
      now_ns - st.wait_exit_ts >= stall_threshold_ns) {
    StallEvent e;
    e.tid = st.tid;
    e.ts = now_ns;
    e.start_ts = st.wait_exit_ts;
    e.nr = UINT32_MAX;
    on(e);
  }
}

std::vector<uint32_t> TraceModel::threads_seen() const {
  std::vector<uint32_t> out;
  for (const auto& [tid, t] : threads_) out.push_back(tid);
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<TraceModel::FrameEnd> TraceModel::frame_at_end(uint64_t frame) const {
  auto it = frames_.find(frame);
  if (it == frames_.end()) return std::nullopt;
  FrameEnd out;
  out.fn = it->second.fn;
  out.seen_running = it->second.seen_running;
  out.suspended_since = it->second.suspended_since;
  out.running = it->second.running;
  return out;
}

SuspendPointLocation TraceModel::location(uint32_t fn, int64_t index) const {
  auto key = std::make_pair(fn, index);
  auto it = location_cache_.find(key);
  if (it != location_cache_.end()) return it->second;
  SuspendPointLocation loc;
  if (valid_fn(fn) && functions_[fn].fn != nullptr && functions_[fn].loaded != nullptr &&
      functions_[fn].loaded->catalog != nullptr) {
    const symbolizer::SuspendPointInfo* sp =
        functions_[fn].loaded->catalog->suspend_point(*functions_[fn].fn, index);
    if (sp != nullptr) {
      loc.file = sp->location.file;
      loc.line = sp->location.line;
      switch (sp->kind) {
        case symbolizer::SuspendPointInfo::Kind::kInitial:
          loc.kind = "initial";
          break;
        case symbolizer::SuspendPointInfo::Kind::kFinal:
          loc.kind = "final";
          break;
        default:
          loc.kind = "await";
          break;
      }
    }
  }
  location_cache_.emplace(key, loc);
  return loc;
}

void TraceModel::resolve_pending(const std::unordered_map<uint64_t, int64_t>& index_at_end) {
  for (auto& [addr, f] : frames_) {
    if (f.pending.empty()) continue;
    auto it = index_at_end.find(addr);
    if (it != index_at_end.end()) fill_pending(f, it->second);
  }
}

void TraceModel::finalize() {
  for (Stall& s : stalls_) {
    if (s.captured < captured_.size()) s.async_stack = captured_[s.captured];
  }
}

}  // namespace asyncprobe::trace
