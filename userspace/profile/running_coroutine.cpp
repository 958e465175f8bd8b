#include "userspace/profile/running_coroutine.h"
#include "userspace/util/format.h"

#include <time.h>

#include <algorithm>
#include <cstdio>

#include "userspace/coro/awaiter_rules.h"
#include "userspace/process/target_process.h"
#include "userspace/snapshot/frame_scanner.h"
#include "userspace/util/stop_request.h"
#include "userspace/util/thread_cpu_clock.h"

namespace asyncprobe::profile {

namespace {

double monotonic_s() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// How far a frame of unknown size may reach past its start.
constexpr uint64_t kMaxFrameReach = uint64_t{64} * 1024;

// Candidates worth a header read: frames are at least 8-byte aligned and live in user space.
bool plausible_frame_address(uint64_t w) {
  return w >= 0x10000 && (w & 7) == 0 && w < (uint64_t{1} << 47);
}

}  // namespace

RunningCoroutineFinder::RunningCoroutineFinder(snapshot::SnapshotTaker* taker,
                                               process::MemoryReader* memory, double min_refresh_s)
    : taker_(taker), memory_(memory), min_refresh_s_(min_refresh_s), functions_(taker_->index()) {}

bool RunningCoroutineFinder::refresh(snapshot::SnapshotError* error) {
  const double t0 = util::thread_cpu_seconds();
  model::Snapshot s;
  try {
    if (!taker_->take(&s, error)) return false;
  } catch (const util::Interrupted&) {
    // A stop request (util/stop_request.h): this refresh is given up, the profile ends.
    error->message = "interrupted by a stop request";
    return false;
  }
  snap_ = std::move(s);
  index_snapshot();
  last_refresh_ = monotonic_s();
  stats_.snapshots++;
  last_snapshot_cpu_s_ = util::thread_cpu_seconds() - t0;
  stats_.snapshot_seconds += last_snapshot_cpu_s_;
  return true;
}

void RunningCoroutineFinder::index_snapshot() {
  forest_ = snapshot::build_async_forest(snap_);
  by_address_.clear();
  for (size_t i = 0; i < snap_.frames.size(); ++i) by_address_.emplace(snap_.frames[i].address, i);
}

const ResumeFunction* RunningCoroutineFinder::resume_function_at(uint64_t pc) const {
  return functions_.at(pc);
}

bool RunningCoroutineFinder::header_is(uint64_t addr, const ResumeFunction& fn) {
  uint64_t words[2] = {};
  stats_.header_reads++;
  try {
    if (!memory_->read(addr, words, sizeof words)) return false;
  } catch (const process::TargetError&) {
    return false;  // the target is gone: nothing is live any more
  }
  return words[0] == fn.start && words[1] != 0 &&
         (words[1] == fn.destroy || (fn.cleanup != 0 && words[1] == fn.cleanup));
}

CoroutineJoin RunningCoroutineFinder::join_at(size_t frame_index) {
  CoroutineJoin j;
  j.result = CoroutineJoin::Result::kJoined;
  j.frame = snap_.frames[frame_index].address;
  const snapshot::FrameLink* link = &forest_.links[frame_index];
  for (size_t guard = 0; guard < forest_.max_depth + 1 && link->parent != snapshot::kNoFrame;
       ++guard) {
    const model::CoroFrame& child = snap_.frames[link - forest_.links.data()];
    if (coro::is_generic(child.awaiter_rule)) j.uncertain = true;
    const size_t p = link->parent;
    j.parents.push_back(snap_.frames[p]);
    link = &forest_.links[p];
  }
  if (link->link == snapshot::LinkKind::kDangling || link->link == snapshot::LinkKind::kCycle)
    j.uncertain = true;
  return j;
}

std::vector<uint64_t> RunningCoroutineFinder::live_frames(const ResumeFunction& fn,
                                                          const std::vector<uint64_t>& candidates) {
  // The headers of every candidate in one batch: resume and destroy pointers.
  std::vector<uint64_t> headers(candidates.size() * 2);
  std::vector<process::ReadRequest> reqs(candidates.size());
  for (size_t i = 0; i < candidates.size(); ++i) {
    reqs[i].addr = candidates[i];
    reqs[i].out = &headers[i * 2];
    reqs[i].len = 16;
  }
  try {
    memory_->read_batch(reqs);
  } catch (const process::TargetError&) {
    for (process::ReadRequest& r : reqs) r.ok = false;
  }
  stats_.header_reads += reqs.size();
  std::vector<uint64_t> live;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const uint64_t resume = headers[i * 2], destroy = headers[i * 2 + 1];
    if (reqs[i].ok && resume == fn.start && destroy != 0 &&
        (destroy == fn.destroy || (fn.cleanup != 0 && destroy == fn.cleanup))) {
      live.push_back(candidates[i]);
    }
  }
  return live;
}

CoroutineJoin RunningCoroutineFinder::join_unseen(const ResumeFunction& fn, uint64_t frame,
                                                  double* in_snapshots) {
  CoroutineJoin out;
  out.result = CoroutineJoin::Result::kNotInSnapshot;
  out.frame = frame;
  // Rate limit: the configured floor, and at most ~5% of a CPU spent on snapshots (a snapshot of
  // a big heap costs far more than one of a small one).
  const double min_gap = std::max(min_refresh_s_, 20 * last_snapshot_cpu_s_);
  if (monotonic_s() - last_refresh_ < min_gap) {
    stats_.refreshes_skipped++;
    return out;
  }
  const double s0 = util::thread_cpu_seconds();
  snapshot::SnapshotError err;
  if (refresh(&err)) {
    auto it = by_address_.find(frame);
    if (it != by_address_.end() && snap_.frames[it->second].resume_fn == fn.start) {
      out = join_at(it->second);
    }
  }
  *in_snapshots = util::thread_cpu_seconds() - s0;
  return out;
}

CoroutineJoin RunningCoroutineFinder::find(const ResumeFunction& fn,
                                           std::vector<uint64_t> candidates) {
  const double t0 = util::thread_cpu_seconds();
  double in_snapshots = 0;
  std::sort(candidates.begin(), candidates.end());
  candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
  candidates.erase(std::remove_if(candidates.begin(), candidates.end(),
                                  [](uint64_t w) { return !plausible_frame_address(w); }),
                   candidates.end());

  // Frames the current snapshot knows as frames of this coroutine.
  auto known = [&]() {
    std::vector<size_t> hits;
    for (uint64_t w : candidates) {
      auto it = by_address_.find(w);
      if (it == by_address_.end()) continue;
      const model::CoroFrame& f = snap_.frames[it->second];
      if (f.resume_fn == fn.start) hits.push_back(it->second);
    }
    return hits;
  };

  CoroutineJoin out;
  std::vector<size_t> hits = known();
  // The snapshot may be older than the frame: confirm it is still this coroutine's frame.
  hits.erase(std::remove_if(hits.begin(), hits.end(),
                            [&](size_t i) { return !header_is(snap_.frames[i].address, fn); }),
             hits.end());
  if (hits.size() == 1) {
    out = join_at(hits[0]);
  } else if (hits.size() > 1) {
    out.result = CoroutineJoin::Result::kAmbiguous;
  } else {
    // No known frame: is one of the words a live frame of this coroutine that no snapshot has
    // seen yet (a short-lived coroutine)?
    const std::vector<uint64_t> live = live_frames(fn, candidates);
    if (live.empty()) {
      out.result = CoroutineJoin::Result::kNoCandidate;
    } else if (live.size() > 1) {
      out.result = CoroutineJoin::Result::kAmbiguous;
    } else {
      out = join_unseen(fn, live[0], &in_snapshots);
    }
  }
  stats_.join_seconds += util::thread_cpu_seconds() - t0 - in_snapshots;
  return out;
}

bool RunningCoroutineFinder::read_target(uint64_t addr, void* out, size_t len) {
  try {
    return memory_->read(addr, out, len);
  } catch (const process::TargetError&) {
    return false;
  }
}

size_t RunningCoroutineFinder::live_in_snapshot(uint64_t address) const {
  auto it = by_address_.find(address);
  if (it == by_address_.end() || snap_.frames[it->second].state == model::FrameState::kDone) {
    return snapshot::kNoFrame;
  }
  return it->second;
}

std::optional<model::CoroFrame> RunningCoroutineFinder::frame_holding(uint64_t object,
                                                                      uint64_t* promise_words) {
  // The awaiter object's first words; one of them is its frame's promise, 16 or 32 bytes past
  // the frame's start (coro/frame_abi.h), and the object lies inside that frame.
  constexpr size_t kObjectWords = 16;
  uint64_t words[kObjectWords] = {};
  try {
    if (!memory_->read(object, words, sizeof words)) return std::nullopt;
  } catch (const process::TargetError&) {
    return std::nullopt;
  }
  for (const uint64_t promise : words) {
    for (const uint64_t back : {coro::kHeaderBytes, 2 * coro::kHeaderBytes}) {
      const uint64_t frame = promise - back;
      if (promise < back || frame > object || object - frame >= kMaxFrameReach ||
          !plausible_frame_address(frame)) {
        continue;
      }
      snapshot::FoundFrame found;
      found.address = frame;
      try {
        stats_.header_reads++;
        if (!memory_->read(frame, found.head, sizeof found.head)) continue;
      } catch (const process::TargetError&) {
        return std::nullopt;
      }
      const ResumeFunction* fn = resume_function_at(found.head[0]);
      if (fn == nullptr || fn->start != found.head[0] || fn->fn->promise_offset != back ||
          !(found.head[1] == fn->destroy || (fn->cleanup != 0 && found.head[1] == fn->cleanup))) {
        continue;
      }
      found.head_words = snapshot::FoundFrame::kHeadWords;
      found.resume_word = found.head[0];
      found.destroy_word = found.head[1];
      found.ref = {fn->loaded, fn->fn, found.head[1] == fn->cleanup};
      uint64_t index = 0;
      const uint8_t width = fn->fn->index_width;
      if (width > 0 && width <= 8 && memory_->read(frame + fn->fn->index_offset, &index, width)) {
        found.index = static_cast<int64_t>(index);
      }
      const size_t first = back / 8;
      for (size_t w = 0; w < coro::kPromiseWords; ++w) promise_words[w] = found.head[first + w];
      return snapshot::decode_frame(found);
    }
  }
  return std::nullopt;
}

CoroutineJoin RunningCoroutineFinder::find_pumped(const std::vector<uint64_t>& args) {
  const double t0 = util::thread_cpu_seconds();
  double in_snapshots = 0;
  CoroutineJoin out;
  out.pumped = true;
  out.result = CoroutineJoin::Result::kNoCandidate;
  std::optional<model::CoroFrame> frame;
  uint64_t promise[coro::kPromiseWords] = {};
  for (const uint64_t a : args) {
    if (!plausible_frame_address(a & ~uint64_t{7})) continue;
    uint64_t words[coro::kPromiseWords] = {};
    std::optional<model::CoroFrame> f = frame_holding(a, words);
    if (!f) continue;
    if (frame && frame->address != f->address) {
      out.result = CoroutineJoin::Result::kAmbiguous;
      stats_.join_seconds += util::thread_cpu_seconds() - t0;
      return out;
    }
    frame = std::move(f);
    std::copy(std::begin(words), std::end(words), std::begin(promise));
  }
  if (!frame) {
    stats_.join_seconds += util::thread_cpu_seconds() - t0;
    return out;
  }
  // Its awaiter, by the same rules as the snapshot's, among the frames the snapshot knows.
  auto awaiter = [&]() {
    auto find = [&](uint64_t addr, uint64_t* promise_offset) {
      const size_t i = live_in_snapshot(addr);
      if (i == snapshot::kNoFrame) return false;
      const ResumeFunction* fn = resume_function_at(snap_.frames[i].resume_fn);
      *promise_offset = fn != nullptr ? fn->fn->promise_offset : coro::kDefaultPromiseOffset;
      return true;
    };
    return coro::awaiter_from_promise(frame->address, promise, find);
  };
  coro::AwaiterEdge edge = awaiter();
  const bool has_caller = promise[0] == frame->address ? promise[2] != 0 : promise[0] != 0;
  if (edge.frame == 0 && has_caller &&
      monotonic_s() - last_refresh_ >= std::max(min_refresh_s_, 20 * last_snapshot_cpu_s_)) {
    const double s0 = util::thread_cpu_seconds();
    snapshot::SnapshotError err;
    if (refresh(&err)) edge = awaiter();
    in_snapshots = util::thread_cpu_seconds() - s0;
  }
  if (edge.frame != 0) {
    out = join_at(live_in_snapshot(edge.frame));
    out.parents.insert(out.parents.begin(), snap_.frames[live_in_snapshot(edge.frame)]);
  } else {
    out.result =
        has_caller ? CoroutineJoin::Result::kNotInSnapshot : CoroutineJoin::Result::kJoined;
  }
  out.pumped = true;
  out.frame = frame->address;
  frame->awaiter = edge.frame;
  frame->awaiter_rule = edge.rule;
  out.parents.insert(out.parents.begin(), *frame);
  stats_.join_seconds += util::thread_cpu_seconds() - t0 - in_snapshots;
  return out;
}

}  // namespace asyncprobe::profile
