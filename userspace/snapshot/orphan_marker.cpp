#include "userspace/snapshot/orphan_marker.h"

#include <algorithm>

#include "userspace/snapshot/word_range_filter.h"

namespace asyncprobe::snapshot {

namespace {

constexpr uint64_t kMaxFrameBytes = uint64_t{1} << 24;  // larger claimed sizes are not believed

// glibc malloc: the chunk's size word sits 8 bytes before the user pointer; its low three bits are
// flags and the usable size is the chunk size minus the 8-byte header (x86-64).
uint64_t malloc_usable_size(uint64_t start, const process::ReadMemory& read) {
  uint64_t word = 0;
  if (start < 8 || start % 16 != 0 || !read(start - 8, &word, sizeof word)) return 0;
  const uint64_t chunk = word & ~uint64_t{7};
  if (chunk < 32 || chunk > kMaxFrameBytes || chunk % 16 != 0) return 0;
  return chunk - 8;
}

// Frames sorted by start, for "which frame holds this address".
struct FrameIndex {
  std::vector<uint64_t> starts, ends;
  std::vector<size_t> ids;

  size_t holding(uint64_t addr) const {
    auto it = std::upper_bound(starts.begin(), starts.end(), addr);
    if (it == starts.begin()) return SIZE_MAX;
    size_t k = static_cast<size_t>(it - starts.begin()) - 1;
    return addr < ends[k] ? k : SIZE_MAX;
  }
};

FrameIndex index_frames(const std::vector<FrameExtent>& extents) {
  std::vector<size_t> order;
  for (size_t i = 0; i < extents.size(); ++i) {
    if (extents[i].size > 0) order.push_back(i);
  }
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return extents[a].start < extents[b].start; });
  FrameIndex fi;
  uint64_t last_end = 0;
  for (size_t i : order) {
    // Overlapping extents (a torn read, or a size word that lied): keep the first.
    if (extents[i].start < last_end) continue;
    fi.starts.push_back(extents[i].start);
    fi.ends.push_back(extents[i].start + extents[i].size);
    fi.ids.push_back(i);
    last_end = fi.ends.back();
  }
  return fi;
}

// Counts the suspended heap frames whose extent is known (candidates) or not, and clears every
// frame's orphan mark.
void count_candidates(std::vector<model::CoroFrame>& frames,
                      const std::vector<FrameExtent>& extents, OrphanStats* stats) {
  for (size_t i = 0; i < frames.size(); ++i) {
    frames[i].orphaned = false;
    if (frames[i].state != model::FrameState::kSuspended || frames[i].on_stack) continue;
    if (i < extents.size() && extents[i].size > 0) {
      ++stats->candidates;
    } else {
      ++stats->unknown_extent;
    }
  }
}

// Which indexed frames memory outside every frame reaches, directly or through other frames.
struct PointerGraph {
  explicit PointerGraph(const FrameIndex& index)
      : fi(index), edges(index.starts.size()), reached(index.starts.size(), 0) {}

  // One word at `where` holding `value`: a root's pointer, or an edge between frames.
  void visit(uint64_t where, uint64_t value) {
    const size_t to = fi.holding(value);
    if (to == SIZE_MAX) return;
    const size_t from = fi.holding(where);
    if (from == SIZE_MAX) {
      reach(to);
    } else if (from != to) {
      edges[from].push_back(static_cast<uint32_t>(to));
    }
  }

  // Follows the edges from every frame a root reached.
  void propagate() {
    while (!work.empty()) {
      const uint32_t k = work.back();
      work.pop_back();
      for (uint32_t to : edges[k]) reach(to);
    }
  }

  void reach(size_t k) {
    if (reached[k]) return;
    reached[k] = 1;
    work.push_back(static_cast<uint32_t>(k));
  }

  const FrameIndex& fi;
  std::vector<std::vector<uint32_t>> edges;  // frame k holds pointers into these frames
  std::vector<char> reached;
  std::vector<uint32_t> work;
};

// Reads the regions from `first_region` on in chunks and visits every word pointing into
// [lo, lo + span].
void scan_for_pointers(const std::vector<ScanRegion>& regions, size_t first_region,
                       const process::ReadMemory& read, uint64_t lo, uint64_t span,
                       size_t chunk_bytes, PointerGraph& graph, OrphanStats* stats) {
  std::vector<uint64_t> buf(chunk_bytes / 8);
  std::vector<size_t> hits;
  for (size_t r = first_region; r < regions.size(); ++r) {
    const ScanRegion& region = regions[r];
    for (uint64_t at = (region.start + 7) & ~uint64_t{7}; at + 8 <= region.end;) {
      const size_t len =
          static_cast<size_t>(std::min<uint64_t>(chunk_bytes, region.end - at)) & ~size_t{7};
      if (!read(at, buf.data(), len)) {
        stats->unreadable_bytes += len;
        at += len;
        continue;
      }
      hits.clear();
      find_words_in_range(buf.data(), len / 8, lo, span, &hits);
      for (size_t h : hits) graph.visit(at + h * 8, buf[h]);
      stats->bytes_scanned += len;
      at += len;
    }
  }
}

// Marks the suspended heap frames nothing reached.
void apply_orphan_marks(std::vector<model::CoroFrame>& frames, const PointerGraph& graph) {
  const FrameIndex& fi = graph.fi;
  for (size_t k = 0; k < fi.starts.size(); ++k) {
    model::CoroFrame& f = frames[fi.ids[k]];
    f.orphaned = !graph.reached[k] && f.state == model::FrameState::kSuspended && !f.on_stack;
  }
  // A frame inside another one's extent (Clang places an awaited coroutine's frame inside its
  // caller's when it can prove the lifetime) shares its container's fate.
  for (size_t i = 0; i < frames.size(); ++i) {
    model::CoroFrame& f = frames[i];
    if (f.state != model::FrameState::kSuspended || f.on_stack) continue;
    const size_t k = fi.holding(f.address);
    if (k == SIZE_MAX || fi.ids[k] == i) continue;
    f.orphaned = !graph.reached[k];
  }
}

}  // namespace

std::vector<FrameExtent> frame_extents(const std::vector<model::CoroFrame>& frames,
                                       const std::vector<FoundFrame>& found,
                                       const process::ReadMemory& read) {
  std::vector<FrameExtent> out(frames.size());
  for (size_t i = 0; i < frames.size() && i < found.size(); ++i) {
    out[i].start = frames[i].address;
    if (frames[i].on_stack) continue;
    const uint64_t dwarf = found[i].ref.fn != nullptr ? found[i].ref.fn->frame_size : 0;
    const uint64_t chunk = malloc_usable_size(frames[i].address, read);
    // The allocation is at least the frame; the chunk bounds what a pointer into it can mean.
    out[i].size = chunk != 0 ? chunk : std::min(dwarf, kMaxFrameBytes);
  }
  return out;
}

OrphanStats mark_orphans(std::vector<model::CoroFrame>& frames,
                         const std::vector<FrameExtent>& extents,
                         const std::vector<ScanRegion>& regions, const process::ReadMemory& read,
                         const PointerRecord* seen, size_t seen_regions, size_t chunk_bytes) {
  OrphanStats stats;
  const FrameIndex fi = index_frames(extents);
  count_candidates(frames, extents, &stats);
  if (fi.starts.empty()) return stats;
  PointerGraph graph(fi);
  const uint64_t lo = fi.starts.front();
  const uint64_t span = fi.ends.back() - 1 - lo;
  chunk_bytes = std::max<size_t>(chunk_bytes & ~size_t{7}, 4096);
  size_t first_region = 0;
  if (seen != nullptr && !seen->overflow && seen->lo <= lo && lo + span <= seen->lo + seen->span) {
    for (const auto& [where, value] : seen->words) graph.visit(where, value);
    first_region = std::min(seen_regions, regions.size());
    stats.reused_scan = true;
  }
  scan_for_pointers(regions, first_region, read, lo, span, chunk_bytes, graph, &stats);
  graph.propagate();
  apply_orphan_marks(frames, graph);
  return stats;
}

}  // namespace asyncprobe::snapshot
