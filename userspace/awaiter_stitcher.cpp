#include "userspace/awaiter_stitcher.h"

#include <algorithm>
#include <unordered_map>

namespace asyncprobe {

namespace {

constexpr uint64_t kMaxFrameBytes = 64 * 1024;
constexpr uint64_t kDefaultFrameBytes = 512;

struct FrameExtent {
  uint64_t start = 0;
  uint64_t end = 0;
};

// How far a frame reaches: the DWARF frame size when known, else the glibc malloc chunk that
// holds it, bounded by the next frame and a hard cap.
std::vector<FrameExtent> frame_extents(const std::vector<FoundFrame>& found, const ReadMemory& read) {
  std::vector<FrameExtent> out(found.size());
  for (size_t i = 0; i < found.size(); ++i) {
    uint64_t size = found[i].ref.fn->frame_size;
    if (size == 0 && !found[i].on_stack) {
      uint64_t chunk = 0;
      if (read(found[i].address - 8, &chunk, 8)) {
        uint64_t bytes = chunk & ~uint64_t{7};
        if (bytes >= 32 && bytes <= kMaxFrameBytes) size = bytes - 8;
      }
    }
    if (size == 0) size = kDefaultFrameBytes;
    size = std::min(size, kMaxFrameBytes);
    uint64_t end = found[i].address + size;
    if (i + 1 < found.size()) end = std::min(end, found[i + 1].address);
    out[i] = {found[i].address, end};
  }
  return out;
}

}  // namespace

StitchStats stitch_awaiters(std::vector<CoroFrame>& frames, const std::vector<FoundFrame>& found,
                            const ReadMemory& read) {
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
    if (frames[i].state == FrameState::kDone) continue;
    uint64_t promise = f.address + f.ref.fn->promise_offset;
    uint64_t words[3] = {0, 0, 0};
    if (!read(promise, words, sizeof words)) continue;
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
    if (p >= 0 && static_cast<size_t>(p) != i && frames[p].state != FrameState::kDone) {
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
  std::vector<FrameExtent> extents = frame_extents(found, read);
  auto frame_containing = [&](uint64_t addr) -> long {
    auto it = std::upper_bound(extents.begin(), extents.end(), addr,
                               [](uint64_t a, const FrameExtent& e) { return a < e.start; });
    if (it == extents.begin()) return -1;
    --it;
    return addr < it->end ? static_cast<long>(it - extents.begin()) : -1;
  };
  std::vector<uint64_t> buf;
  auto read_frame = [&](size_t i) -> bool {
    size_t n = static_cast<size_t>((extents[i].end - extents[i].start) / 8);
    buf.assign(n, 0);
    return n > 2 && read(extents[i].start, buf.data(), n * 8);
  };
  for (size_t b = 0; b < found.size(); ++b) {
    if (frames[b].awaiter != 0 || frames[b].state == FrameState::kDone || !read_frame(b)) continue;
    std::vector<uint64_t> b_words = buf;
    for (size_t w = 2; w < b_words.size(); ++w) {
      long a = frame_containing(b_words[w]);
      if (a < 0 || static_cast<size_t>(a) == b || frames[a].state != FrameState::kSuspended) {
        continue;
      }
      // A continuation is a handle (the frame's address) or a pointer to the promise, never an
      // arbitrary interior pointer.
      uint64_t a_addr = found[a].address;
      if (b_words[w] != a_addr && b_words[w] != a_addr + found[a].ref.fn->promise_offset) continue;
      if (!read_frame(static_cast<size_t>(a))) continue;
      auto at = std::find(buf.begin() + 2, buf.end(), found[b].address);
      // Both frames point at each other; the direction comes from where: a continuation sits
      // in the awaited frame's promise, near the header, the task object deeper in the
      // awaiting frame's locals. Equal depths are ambiguous: no edge.
      if (at != buf.end() && w < static_cast<size_t>(at - buf.begin())) {
        set_edge(b, static_cast<size_t>(a), "mutual-pointer");
        stats.generic_edges++;
        break;
      }
    }
  }
  return stats;
}

}  // namespace asyncprobe
