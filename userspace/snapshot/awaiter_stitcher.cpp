#include "userspace/snapshot/awaiter_stitcher.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <unordered_map>
#include <unordered_set>

#include "userspace/coro/awaiter_rules.h"
#include "userspace/util/stop_request.h"

namespace asyncprobe::snapshot {

namespace {

constexpr uint64_t kMaxFrameBytes = uint64_t{64} * 1024;
constexpr uint64_t kDefaultFrameBytes = 512;

// How far a frame reaches: the DWARF frame size when known, else the glibc malloc chunk that
// holds it, bounded by the next frame and a hard cap. Computed on demand: only frames the generic
// rule looks at need it.
class FrameExtents {
 public:
  FrameExtents(const std::vector<FoundFrame>& found, const process::ReadMemory& read)
      : found_(found), read_(read), end_(found.size(), 0) {}

  uint64_t end(size_t i) {
    if (end_[i] != 0) return end_[i];
    uint64_t size = found_[i].ref.fn->frame_size;
    if (size == 0 && !found_[i].on_stack) {
      uint64_t chunk = 0;
      if (read_(found_[i].address - 8, &chunk, 8)) {
        uint64_t bytes = chunk & ~uint64_t{7};
        if (bytes >= 32 && bytes <= kMaxFrameBytes) size = bytes - 8;
      }
    }
    if (size == 0) {
      size = kDefaultFrameBytes;
      guessed_.insert(i);
    }
    size = std::min(size, kMaxFrameBytes);
    uint64_t e = found_[i].address + size;
    if (i + 1 < found_.size()) e = std::min(e, found_[i + 1].address);
    end_[i] = e;
    return e;
  }

  // True when frame i's extent is the default guess (no DWARF size, no malloc chunk: a frame
  // on a stack), which may reach into the stack's other objects.
  bool guessed(size_t i) {
    end(i);
    return guessed_.count(i) != 0;
  }

  // The frame whose extent holds addr, or -1.
  long containing(uint64_t addr) {
    auto it = std::upper_bound(found_.begin(), found_.end(), addr,
                               [](uint64_t a, const FoundFrame& f) { return a < f.address; });
    if (it == found_.begin()) return -1;
    size_t i = static_cast<size_t>(it - found_.begin()) - 1;
    return addr < end(i) ? static_cast<long>(i) : -1;
  }

 private:
  const std::vector<FoundFrame>& found_;
  const process::ReadMemory& read_;
  std::vector<uint64_t> end_;
  std::unordered_set<size_t> guessed_;
};

// Frame words read in batches, one read per frame: {pointer, count}, count 0 when unreadable.
class FrameWords {
 public:
  FrameWords(const std::vector<FoundFrame>& found, FrameExtents& extents,
             const process::ReadMemory& read, const process::ReadMemoryBatch& batch)
      : found_(found), extents_(extents), read_(read), batch_(batch) {}

  // Reads every frame of `which` not read yet, in one batch.
  void read(const std::vector<size_t>& which) {
    std::vector<size_t> todo;
    for (size_t i : which) {
      if (words_.emplace(i, std::make_pair(nullptr, 0)).second) todo.push_back(i);
    }
    std::vector<size_t> offset(todo.size() + 1, 0);
    for (size_t k = 0; k < todo.size(); ++k) {
      offset[k + 1] =
          offset[k] + static_cast<size_t>((extents_.end(todo[k]) - found_[todo[k]].address) / 8);
    }
    storage_.emplace_back(offset.back(), 0);
    std::vector<uint64_t>& buf = storage_.back();
    std::vector<process::ReadRequest> pieces;
    for (size_t k = 0; k < todo.size(); ++k) {
      pieces.push_back({found_[todo[k]].address, buf.data() + offset[k],
                        (offset[k + 1] - offset[k]) * 8, false});
    }
    if (batch_) {
      batch_(pieces);
    } else {
      for (auto& p : pieces) p.ok = read_(p.addr, p.out, p.len);
    }
    for (size_t k = 0; k < todo.size(); ++k) {
      if (pieces[k].ok) words_[todo[k]] = {buf.data() + offset[k], offset[k + 1] - offset[k]};
    }
  }

  std::pair<const uint64_t*, size_t> of(size_t i) const {
    auto it = words_.find(i);
    return it == words_.end() ? std::make_pair(nullptr, size_t{0}) : it->second;
  }

 private:
  const std::vector<FoundFrame>& found_;
  FrameExtents& extents_;
  const process::ReadMemory& read_;
  const process::ReadMemoryBatch& batch_;
  std::deque<std::vector<uint64_t>> storage_;  // stable: words_ points into it
  std::unordered_map<size_t, std::pair<const uint64_t*, size_t>> words_;
};

class Stitcher {
 public:
  Stitcher(std::vector<model::CoroFrame>& frames, const std::vector<FoundFrame>& found,
           const process::ReadMemory& read, const process::ReadMemoryBatch& batch,
           const HeapRanges& heap)
      : frames_(frames),
        found_(found),
        read_(read),
        batch_(batch),
        heap_(heap),
        extents_(found, read),
        words_(found, extents_, read, batch) {
    for (size_t i = 0; i < found.size(); ++i) by_addr_.emplace(found[i].address, i);
  }

  StitchStats run() {
    library_edges();
    generic_edges(generic_unlinked());
    weaker_edges();
    return stats_;
  }

 private:
  long frame_at(uint64_t addr) const {
    auto it = by_addr_.find(addr);
    return it == by_addr_.end() ? -1 : static_cast<long>(it->second);
  }

  void set_edge(size_t child, size_t parent, coro::AwaiterRule rule) {
    frames_[child].awaiter = found_[parent].address;
    frames_[child].awaiter_rule = rule;
    switch (rule) {
      case coro::AwaiterRule::kAsioCaller:
        stats_.asio_edges++;
        break;
      case coro::AwaiterRule::kFollyAsyncStack:
        stats_.folly_edges++;
        break;
      case coro::AwaiterRule::kContinuationInPromise:
        stats_.continuation_edges++;
        break;
      case coro::AwaiterRule::kViaHeapObject:
        stats_.via_heap_edges++;
        break;
      case coro::AwaiterRule::kHeldByFrame:
        stats_.held_by_edges++;
        break;
      default:
        stats_.generic_edges++;
        break;
    }
  }

  // The first promise words of frame i as the first (`first`) or second validation read saw
  // them, unless the promise lies further in (over-aligned promises): then read now.
  bool promise_words(size_t i, bool first, uint64_t (&words)[coro::kPromiseWords]) const {
    const FoundFrame& f = found_[i];
    const size_t first_word = f.ref.fn->promise_offset / 8;
    if (f.ref.fn->promise_offset % 8 == 0 && first_word + coro::kPromiseWords <= f.head_words) {
      std::memcpy(words, first ? &f.first_head[first_word] : &f.head[first_word], sizeof words);
      return true;
    }
    return read_(f.address + f.ref.fn->promise_offset, words, sizeof words);
  }

  // The library rules (coro/awaiter_rules.h) over every frame's promise, in both reads.
  void library_edges() {
    auto find_live = [&](uint64_t addr, uint64_t* promise_offset) {
      long p = frame_at(addr);
      if (p < 0 || frames_[p].state == model::FrameState::kDone) return false;
      *promise_offset = found_[p].ref.fn->promise_offset;
      return true;
    };
    std::vector<size_t> self_pointing;  // promise word 0 is the frame itself, no edge
    for (size_t i = 0; i < found_.size(); ++i) {
      if (i % 4096 == 0) util::check_interrupt();  // util/stop_request.h
      // A finished coroutine has already handed control back to its awaiter: what its promise
      // still says is history, not an edge.
      if (frames_[i].state == model::FrameState::kDone) continue;
      uint64_t words[coro::kPromiseWords] = {};
      uint64_t before[coro::kPromiseWords] = {};
      if (!promise_words(i, false, words) || !promise_words(i, true, before)) continue;
      const coro::AwaiterEdge edge =
          coro::awaiter_from_promise(found_[i].address, words, find_live);
      const coro::AwaiterEdge earlier =
          coro::awaiter_from_promise(found_[i].address, before, find_live);
      if (edge.frame != earlier.frame) {
        stats_.torn_edges++;
        continue;
      }
      if (edge.frame == 0) {
        if (words[0] == found_[i].address && before[0] == words[0]) self_pointing.push_back(i);
        continue;
      }
      const size_t parent = static_cast<size_t>(frame_at(edge.frame));
      if (frames_[parent].suspend.kind == model::SuspendPoint::Kind::kInitial) {
        stats_.misshapen_edges++;
        continue;
      }
      set_edge(i, parent, edge.rule);
    }
    self_edges(self_pointing);
  }

  // Frames whose promise names themselves (coro::awaits_itself): edges to themselves.
  void self_edges(const std::vector<size_t>& candidates) {
    std::unordered_set<const symbolizer::CoroFunction*> continuation_layout;
    for (size_t i = 0; i < found_.size(); ++i) {
      if (frames_[i].awaiter_rule == coro::AwaiterRule::kContinuationInPromise) {
        continuation_layout.insert(found_[i].ref.fn);
      }
    }
    for (const size_t i : candidates) {
      uint64_t words[coro::kPromiseWords] = {};
      if (!promise_words(i, false, words)) continue;
      const bool layout = continuation_layout.count(found_[i].ref.fn) != 0;
      if (!coro::awaits_itself(found_[i].address, words, found_[i].ref.fn->promise_offset,
                               layout)) {
        continue;
      }
      set_edge(i, i,
               layout ? coro::AwaiterRule::kContinuationInPromise : coro::AwaiterRule::kAsioCaller);
      stats_.self_loops++;
    }
  }

  // The frames the generic rule looks at: suspended, unlinked, and not roots by their own
  // account. Coroutines whose frames were linked by their promise's continuation use that
  // layout: a frame of theirs with a null continuation is a root, and the generic rule (which
  // reads whole frames) is not needed for it.
  std::vector<size_t> generic_unlinked() const {
    std::unordered_set<const symbolizer::CoroFunction*> continuation_layout;
    for (size_t i = 0; i < found_.size(); ++i) {
      if (frames_[i].awaiter_rule == coro::AwaiterRule::kContinuationInPromise) {
        continuation_layout.insert(found_[i].ref.fn);
      }
    }
    std::vector<size_t> unlinked;
    for (size_t b = 0; b < found_.size(); ++b) {
      if (frames_[b].awaiter != 0 || frames_[b].state == model::FrameState::kDone) continue;
      const FoundFrame& f = found_[b];
      size_t promise_word = f.ref.fn->promise_offset / 8;
      bool null_continuation = f.ref.fn->promise_offset % 8 == 0 && promise_word < f.head_words &&
                               f.head[promise_word] == 0;
      if (null_continuation && continuation_layout.count(f.ref.fn) != 0) continue;
      unlinked.push_back(b);
    }
    return unlinked;
  }

  // A word of B that may be a continuation to A (a suspended frame).
  struct Candidate {
    size_t b, w, a;
  };
  std::vector<Candidate> generic_candidates(const std::vector<size_t>& unlinked) {
    std::vector<Candidate> candidates;
    for (size_t b : unlinked) {
      if (candidates.size() % 4096 == 0) util::check_interrupt();
      auto [b_words, nb] = words_.of(b);
      for (size_t w = coro::kFirstBodyWord; w < nb; ++w) {
        long a = extents_.containing(b_words[w]);
        if (a < 0 || static_cast<size_t>(a) == b ||
            frames_[a].state != model::FrameState::kSuspended ||
            !coro::may_be_continuation(b_words[w], found_[a].address,
                                       found_[a].ref.fn->promise_offset)) {
          continue;
        }
        candidates.push_back({b, w, static_cast<size_t>(a)});
      }
    }
    return candidates;
  }

  // The generic rule: B is awaited by A when B's frame holds a continuation to A and A's frame
  // holds B's address, in that order of depth. Every unlinked frame is read in one batch; the
  // A's of the candidates in a second one (one read per frame, not per candidate: a busy heap
  // has tens of thousands of them).
  void generic_edges(const std::vector<size_t>& unlinked) {
    words_.read(unlinked);
    std::vector<Candidate> candidates = generic_candidates(unlinked);
    std::vector<size_t> awaiting;
    awaiting.reserve(candidates.size());
    for (const Candidate& c : candidates) awaiting.push_back(c.a);
    words_.read(awaiting);
    for (const Candidate& c : candidates) {
      if (frames_[c.b].awaiter != 0) continue;  // B already got its edge
      auto [a_words, na] = words_.of(c.a);
      if (na <= coro::kFirstBodyWord) continue;
      const uint64_t* at =
          std::find(a_words + coro::kFirstBodyWord, a_words + na, found_[c.b].address);
      if (at != a_words + na &&
          coro::continuation_before_task(c.w, static_cast<size_t>(at - a_words))) {
        set_edge(c.b, c.a, coro::AwaiterRule::kMutualPointer);
      }
    }
  }

  // ---- The weaker rules (coro/awaiter_rules.h): roots only, one named frame only. ----

  // Frames no rule linked that have not finished: what the weaker rules try to place.
  std::vector<size_t> live_roots() const {
    std::vector<size_t> roots;
    for (size_t i = 0; i < found_.size(); ++i) {
      if (frames_[i].awaiter == 0 && frames_[i].state != model::FrameState::kDone) {
        roots.push_back(i);
      }
    }
    return roots;
  }

  // The live frame a word names by its handle or its promise address, or -1.
  long named_frame(uint64_t word) const {
    long p = frame_at(word);
    if (p < 0) {
      auto it = by_promise_.find(word);
      if (it != by_promise_.end()) p = static_cast<long>(it->second);
    }
    if (p < 0 || frames_[p].state == model::FrameState::kDone) return -1;
    return p;
  }

  bool in_heap(uint64_t addr) const {
    auto it = std::upper_bound(heap_.begin(), heap_.end(), addr,
                               [](uint64_t a, const auto& r) { return a < r.first; });
    return it != heap_.begin() && addr < std::prev(it)->second;
  }

  // True when `frame` awaits `root`, directly or through others (the edges so far).
  bool awaits(size_t frame, size_t root) const {
    size_t at = frame;
    for (size_t guard = 0; guard <= found_.size(); ++guard) {
      if (at == root) return true;
      long up = frames_[at].awaiter == 0 ? -1 : frame_at(frames_[at].awaiter);
      if (up < 0) return false;
      at = static_cast<size_t>(up);
    }
    return true;  // a cycle: treat as related, take no edge
  }

  // Where an Asio thread that starts at `entry` waits: the top of its stack, down the chain of
  // asio-caller edges while it does not branch.
  size_t asio_thread_top(size_t entry) {
    uint64_t words[coro::kPromiseWords] = {};
    if (!promise_words(entry, false, words) ||
        !coro::is_asio_thread_entry(found_[entry].address, words)) {
      return entry;
    }
    if (asio_callees_.empty()) {
      for (size_t i = 0; i < found_.size(); ++i) {
        if (frames_[i].awaiter_rule != coro::AwaiterRule::kAsioCaller) continue;
        long up = frame_at(frames_[i].awaiter);
        if (up >= 0) asio_callees_[static_cast<size_t>(up)].push_back(i);
      }
    }
    size_t at = entry;
    for (size_t guard = 0; guard < found_.size(); ++guard) {
      auto it = asio_callees_.find(at);
      if (it == asio_callees_.end() || it->second.size() != 1) break;
      at = it->second[0];
    }
    return at;
  }

  // via-heap-object: for each root, the one live frame named in the heap objects it points at
  // (-1: none or several). Every object is read once, in one batch. A pointer that does not
  // start a malloc chunk (a shared_ptr's object pointer, an interior pointer) is not followed:
  // what lies past an object of unknown size is its neighbours.
  std::vector<long> via_heap_parents(const std::vector<size_t>& roots) {
    words_.read(roots);
    std::unordered_map<uint64_t, size_t> object_index;
    std::vector<std::vector<size_t>> objects_of(roots.size());
    for (size_t k = 0; k < roots.size(); ++k) {
      if (extents_.guessed(roots[k])) continue;  // its words may be its stack neighbours'
      auto [w, n] = words_.of(roots[k]);
      for (size_t i = coro::kFirstBodyWord; i < n; ++i) {
        const uint64_t v = w[i];
        if ((v & 7) != 0 || !in_heap(v) || extents_.containing(v) >= 0) continue;
        auto [it, fresh] = object_index.emplace(v, object_index.size());
        objects_of[k].push_back(it->second);
      }
    }
    // Each object is read with the malloc size word before it, which bounds it.
    constexpr size_t kStride = coro::kHeapObjectWords + 1;
    std::vector<uint64_t> object_words(object_index.size() * kStride, 0);
    std::vector<process::ReadRequest> pieces(object_index.size());
    for (const auto& [addr, at] : object_index) {
      pieces[at] = {addr - 8, object_words.data() + at * kStride, kStride * 8, false};
    }
    if (batch_) {
      batch_(pieces);
    } else {
      for (auto& p : pieces) p.ok = read_(p.addr, p.out, p.len);
    }
    std::vector<long> parent(roots.size(), -1);
    for (size_t k = 0; k < roots.size(); ++k) {
      coro::SoleFrame sole;
      for (size_t o : objects_of[k]) {
        if (!pieces[o].ok) continue;
        const uint64_t* object = object_words.data() + o * kStride;
        const size_t n = coro::heap_object_words(object[0]);
        for (size_t i = 1; i <= n; ++i) {
          long p = named_frame(object[i]);
          if (p >= 0 && !awaits(static_cast<size_t>(p), roots[k])) sole.add(found_[p].address);
        }
      }
      if (sole.frame() != 0) parent[k] = frame_at(sole.frame());
    }
    return parent;
  }

  // held-by-frame: for each root, the one other live frame whose body holds its handle (-1:
  // none or several). Reads every live frame once, in one batch.
  std::vector<long> holders(const std::vector<size_t>& roots) {
    std::unordered_map<uint64_t, size_t> wanted;
    for (size_t k = 0; k < roots.size(); ++k) wanted.emplace(found_[roots[k]].address, k);
    // A holder's words must be its own: a frame whose extent is a guess (on a stack, no DWARF
    // size) would lend it the handles its neighbours on the stack hold.
    std::vector<size_t> live;
    for (size_t i = 0; i < found_.size(); ++i) {
      if (frames_[i].state != model::FrameState::kDone && !extents_.guessed(i)) live.push_back(i);
    }
    words_.read(live);
    std::vector<coro::SoleFrame> sole(roots.size());
    for (size_t a : live) {
      auto [w, n] = words_.of(a);
      for (size_t i = coro::kFirstBodyWord; i < n; ++i) {
        auto it = wanted.find(w[i]);
        if (it == wanted.end() || roots[it->second] == a || awaits(a, roots[it->second])) {
          continue;
        }
        sole[it->second].add(found_[a].address);
      }
    }
    std::vector<long> parent(roots.size(), -1);
    for (size_t k = 0; k < roots.size(); ++k) {
      if (sole[k].frame() != 0) parent[k] = frame_at(sole[k].frame());
    }
    return parent;
  }

  // Takes the edges one weaker rule found for `roots`, except the pairs that name only each
  // other (no direction) and any edge that would close a cycle with those taken before it.
  void take_weaker(const std::vector<size_t>& roots, const std::vector<long>& parent,
                   coro::AwaiterRule rule) {
    std::unordered_map<size_t, size_t> root_pos;
    for (size_t k = 0; k < roots.size(); ++k) root_pos.emplace(roots[k], k);
    for (size_t k = 0; k < roots.size(); ++k) {
      if (parent[k] < 0) continue;
      auto back = root_pos.find(static_cast<size_t>(parent[k]));
      if (back != root_pos.end() && parent[back->second] == static_cast<long>(roots[k])) continue;
      size_t to = static_cast<size_t>(parent[k]);
      if (rule == coro::AwaiterRule::kViaHeapObject) to = asio_thread_top(to);
      if (awaits(to, roots[k])) continue;
      set_edge(roots[k], to, rule);
    }
  }

  void weaker_edges() {
    for (size_t i = 0; i < found_.size(); ++i) {
      by_promise_.emplace(found_[i].address + found_[i].ref.fn->promise_offset, i);
    }
    std::vector<size_t> roots = live_roots();
    if (roots.empty()) return;
    if (!heap_.empty()) {
      take_weaker(roots, via_heap_parents(roots), coro::AwaiterRule::kViaHeapObject);
      roots = live_roots();
    }
    if (!roots.empty()) take_weaker(roots, holders(roots), coro::AwaiterRule::kHeldByFrame);
  }

  std::vector<model::CoroFrame>& frames_;
  const std::vector<FoundFrame>& found_;
  const process::ReadMemory& read_;
  const process::ReadMemoryBatch& batch_;
  const HeapRanges& heap_;
  std::unordered_map<uint64_t, size_t> by_promise_;
  std::unordered_map<size_t, std::vector<size_t>> asio_callees_;
  FrameExtents extents_;
  FrameWords words_;
  std::unordered_map<uint64_t, size_t> by_addr_;
  StitchStats stats_;
};

}  // namespace

StitchStats stitch_awaiters(std::vector<model::CoroFrame>& frames,
                            const std::vector<FoundFrame>& found, const process::ReadMemory& read,
                            const process::ReadMemoryBatch& batch, const HeapRanges& heap) {
  return Stitcher(frames, found, read, batch, heap).run();
}

}  // namespace asyncprobe::snapshot
