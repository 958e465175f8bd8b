#include "userspace/snapshot/awaiter_stitcher.h"

#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

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
    if (size == 0) size = kDefaultFrameBytes;
    size = std::min(size, kMaxFrameBytes);
    uint64_t e = found_[i].address + size;
    if (i + 1 < found_.size()) e = std::min(e, found_[i + 1].address);
    end_[i] = e;
    return e;
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
};

}  // namespace

StitchStats stitch_awaiters(std::vector<model::CoroFrame>& frames, const std::vector<FoundFrame>& found,
                            const process::ReadMemory& read, const process::ReadMemoryBatch& batch) {
  StitchStats stats;
  std::unordered_map<uint64_t, size_t> by_addr;
  for (size_t i = 0; i < found.size(); ++i) by_addr.emplace(found[i].address, i);
  auto frame_at = [&](uint64_t addr) -> long {
    auto it = by_addr.find(addr);
    return it == by_addr.end() ? -1 : static_cast<long>(it->second);
  };
  auto set_edge = [&](size_t child, size_t parent, const char* rule) {
    frames[child].awaiter = found[parent].address;
    frames[child].awaiter_rule = rule;
  };

  for (size_t i = 0; i < found.size(); ++i) {
    const FoundFrame& f = found[i];
    // A finished coroutine has already handed control back to its awaiter: what its promise
    // still says is history, not an edge.
    if (frames[i].state == model::FrameState::kDone) continue;
    uint64_t promise = f.address + f.ref.fn->promise_offset;
    uint64_t words[3] = {0, 0, 0};
    // The promise's first words were read with the header at validation; read only when the
    // promise lies further in (over-aligned promises).
    size_t first_word = f.ref.fn->promise_offset / 8;
    if (f.ref.fn->promise_offset % 8 == 0 && first_word + 3 <= f.head_words) {
      std::memcpy(words, &f.head[first_word], sizeof words);
    } else if (!read(promise, words, sizeof words)) {
      continue;
    }
    // Boost.Asio awaitable_frame_base {coro_, attached_thread_, caller_, ...}: coro_ is the frame
    // itself, caller_ points at the caller's promise.
    if (words[0] == f.address) {
      if (words[2] != 0) {
        for (long p : {frame_at(words[2] - 16), frame_at(words[2] - 32)}) {
          if (p >= 0 && static_cast<size_t>(p) != i &&
              words[2] == found[p].address + found[p].ref.fn->promise_offset) {
            set_edge(i, static_cast<size_t>(p), "asio-caller");
            stats.asio_edges++;
            break;
          }
        }
      }
      continue;
    }
    // cppcoro / libcoro / folly style: the continuation handle is the promise's first word.
    long p = frame_at(words[0]);
    if (p >= 0 && static_cast<size_t>(p) != i && frames[p].state != model::FrameState::kDone) {
      // folly keeps an AsyncStackFrame right after the (two-word) continuation; its parentFrame
      // points into the awaiting promise. When that agrees, name the edge after folly.
      uint64_t parent_async = found[p].address + found[p].ref.fn->promise_offset + 16;
      bool folly = words[2] == parent_async;
      set_edge(i, static_cast<size_t>(p), folly ? "folly-async-stack" : "continuation-in-promise");
      (folly ? stats.folly_edges : stats.continuation_edges)++;
    }
  }

  // Generic rule for task types we do not know: B is awaited by A when B's frame holds a
  // pointer into A's frame (the continuation) and A's frame holds B's address (the task), the
  // continuation closer to its frame's header than the task object is to its own.
  FrameExtents extents(found, read);
  // Coroutines whose frames were linked by their promise's continuation use that layout: a frame
  // of theirs with a null continuation is a root by its own account, and the generic rule (which
  // reads whole frames) is not needed for it.
  std::unordered_set<const symbolizer::CoroFunction*> continuation_layout;
  for (size_t i = 0; i < found.size(); ++i) {
    if (frames[i].awaiter_rule == "continuation-in-promise") {
      continuation_layout.insert(found[i].ref.fn);
    }
  }
  std::vector<size_t> unlinked;
  for (size_t b = 0; b < found.size(); ++b) {
    if (frames[b].awaiter != 0 || frames[b].state == model::FrameState::kDone) continue;
    const FoundFrame& f = found[b];
    size_t promise_word = f.ref.fn->promise_offset / 8;
    bool null_continuation = f.ref.fn->promise_offset % 8 == 0 && promise_word < f.head_words &&
                             f.head[promise_word] == 0;
    if (null_continuation && continuation_layout.count(f.ref.fn) != 0) continue;
    unlinked.push_back(b);
  }
  // Read every unlinked frame in one batch.
  std::vector<size_t> offset(unlinked.size() + 1, 0);
  for (size_t k = 0; k < unlinked.size(); ++k) {
    size_t b = unlinked[k];
    offset[k + 1] = offset[k] + static_cast<size_t>((extents.end(b) - found[b].address) / 8);
  }
  std::vector<uint64_t> words(offset.back(), 0);
  std::vector<process::ReadRequest> pieces;
  for (size_t k = 0; k < unlinked.size(); ++k) {
    pieces.push_back({found[unlinked[k]].address, words.data() + offset[k],
                      (offset[k + 1] - offset[k]) * 8, false});
  }
  if (batch) {
    batch(pieces);
  } else {
    for (auto& p : pieces) p.ok = read(p.addr, p.out, p.len);
  }
  // Candidate pairs: a word of B that is A's address or A's promise, A suspended. A's words are
  // needed to confirm; frames not read above are read in a second batch (one read per frame,
  // not per candidate: a busy heap has tens of thousands of them).
  struct Candidate {
    size_t b, w, a;
  };
  std::vector<Candidate> candidates;
  for (size_t k = 0; k < unlinked.size(); ++k) {
    size_t b = unlinked[k];
    if (!pieces[k].ok || offset[k + 1] - offset[k] <= 2) continue;
    const uint64_t* b_words = words.data() + offset[k];
    size_t nb = offset[k + 1] - offset[k];
    for (size_t w = 2; w < nb; ++w) {
      long a = extents.containing(b_words[w]);
      if (a < 0 || static_cast<size_t>(a) == b || frames[a].state != model::FrameState::kSuspended) {
        continue;
      }
      // A continuation is a handle (the frame's address) or a pointer to the promise, never an
      // arbitrary interior pointer.
      uint64_t a_addr = found[a].address;
      if (b_words[w] != a_addr && b_words[w] != a_addr + found[a].ref.fn->promise_offset) continue;
      candidates.push_back({k, w, static_cast<size_t>(a)});
    }
  }
  // Where each frame's words are: {pointer, count}; count 0 when unread or unreadable.
  std::unordered_map<size_t, std::pair<const uint64_t*, size_t>> frame_words;
  for (size_t k = 0; k < unlinked.size(); ++k) {
    if (pieces[k].ok)
      frame_words[unlinked[k]] = {words.data() + offset[k], offset[k + 1] - offset[k]};
  }
  std::vector<size_t> more;
  for (const Candidate& c : candidates) {
    if (frame_words.emplace(c.a, std::make_pair(nullptr, 0)).second) more.push_back(c.a);
  }
  std::vector<size_t> more_offset(more.size() + 1, 0);
  for (size_t m = 0; m < more.size(); ++m) {
    more_offset[m + 1] =
        more_offset[m] + static_cast<size_t>((extents.end(more[m]) - found[more[m]].address) / 8);
  }
  std::vector<uint64_t> more_words(more_offset.back(), 0);
  pieces.clear();
  for (size_t m = 0; m < more.size(); ++m) {
    pieces.push_back({found[more[m]].address, more_words.data() + more_offset[m],
                      (more_offset[m + 1] - more_offset[m]) * 8, false});
  }
  if (batch) {
    batch(pieces);
  } else {
    for (auto& p : pieces) p.ok = read(p.addr, p.out, p.len);
  }
  for (size_t m = 0; m < more.size(); ++m) {
    if (pieces[m].ok) {
      frame_words[more[m]] = {more_words.data() + more_offset[m],
                              more_offset[m + 1] - more_offset[m]};
    }
  }
  size_t linked_k = unlinked.size();  // the B that already got its edge
  for (const Candidate& c : candidates) {
    if (c.b == linked_k) continue;
    size_t b = unlinked[c.b];
    auto [a_words, na] = frame_words[c.a];
    if (na <= 2) continue;
    const uint64_t* at = std::find(a_words + 2, a_words + na, found[b].address);
    // Both frames point at each other; the direction comes from where: a continuation sits
    // in the awaited frame's promise, near the header, the task object deeper in the
    // awaiting frame's locals. Equal depths are ambiguous: no edge.
    if (at != a_words + na && c.w < static_cast<size_t>(at - a_words)) {
      set_edge(b, c.a, "mutual-pointer");
      stats.generic_edges++;
      linked_k = c.b;
    }
  }
  return stats;
}

}  // namespace asyncprobe::snapshot
