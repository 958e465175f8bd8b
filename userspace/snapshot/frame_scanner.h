// Finds coroutine frames in the target's writable memory by their header: a word pair
// (resume fn, destroy fn) that names a catalogued coroutine, or (NULL, destroy fn) for a frame
// that reached its final suspend. Then re-reads every hit to drop frames that changed mid-scan.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "userspace/model/snapshot_model.h"
#include "userspace/process/memory_reader.h"
#include "userspace/snapshot/coroutine_index.h"

namespace asyncprobe::snapshot {

struct ScanRegion {
  uint64_t start = 0;
  uint64_t end = 0;
  bool is_stack = false;
};

struct ScanStats {
  uint64_t bytes_scanned = 0;
  uint64_t unreadable_bytes = 0;
  uint64_t candidates = 0;
  uint64_t torn = 0;  // header or index changed between scan and re-read: dropped
};

struct FoundFrame {
  static constexpr size_t kHeadWords = 8;
  uint64_t address = 0;
  // The frame's first 64 bytes as re-read at validation (header, promise start); words past a
  // readable end are 0 and head_words says how many were read.
  uint64_t head[kHeadWords] = {};
  size_t head_words = 0;
  // The same bytes from the first of the two validation reads (head is the second): an awaiter
  // edge counts only when both say the same. Valid for the first head_words words.
  uint64_t first_head[kHeadWords] = {};
  uint64_t resume_word = 0;
  uint64_t destroy_word = 0;
  int64_t index = -1;
  CoroutineRef ref;
  bool on_stack = false;
};

// Words the frame scan saw that point into [lo, lo + span]: kept (with where they were) for the
// orphan mark phase, so that it need not read the memory again. At most `cap` are kept; past it,
// `overflow` says the mark phase must read the memory itself.
struct PointerRecord {
  uint64_t lo = 0;
  uint64_t span = 0;
  size_t cap = size_t{4} << 20;
  bool overflow = false;
  std::vector<std::pair<uint64_t, uint64_t>> words;  // (address of the word, its value)
};

class FrameScanner {
 public:
  FrameScanner(const CoroutineIndex& index, process::ReadMemory read,
               process::ReadMemoryBatch batch = {})
      : index_(index), read_(std::move(read)), batch_(std::move(batch)) {}
  // Scans the regions in chunks of `chunk_bytes` (bounded memory whatever the heap size).
  // `pointers`, when given, collects the words pointing into its range as well.
  std::vector<FoundFrame> scan(const std::vector<ScanRegion>& regions, ScanStats* stats,
                               size_t chunk_bytes = 1 << 20,
                               PointerRecord* pointers = nullptr) const;
  // Reads the suspend index of a frame; -1 when unreadable or the width is unknown.
  int64_t read_index(uint64_t frame, const symbolizer::CoroFunction& fn) const;

 private:
  // Keeps the hits whose header and index read the same twice after the scan.
  std::vector<FoundFrame> revalidate(std::vector<FoundFrame> hits, ScanStats* stats) const;
  // Rereads one frame on its own, twice; true when it is stable and still the frame scanned.
  bool revalidate_alone(FoundFrame& f) const;
  void read_pieces(std::vector<process::ReadRequest>& pieces) const;
  const CoroutineIndex& index_;
  process::ReadMemory read_;
  process::ReadMemoryBatch batch_;
};

// For objects without symbols: every distinct word pair (w0, w1) in the regions where w1 lies in
// one of the code ranges and w0 is NULL or in the same range: the candidate frame headers of
// coroutines nobody named. At most `max_pairs` distinct pairs are kept.
struct CodeRange {
  uint64_t start = 0;
  uint64_t end = 0;
};
std::map<std::pair<uint64_t, uint64_t>, size_t> find_header_candidates(
    const std::vector<ScanRegion>& regions, const std::vector<CodeRange>& code,
    const process::ReadMemory& read, size_t max_pairs = 4096);

// Turns validated hits into model frames: names, state, suspend point and its source line.
model::CoroFrame decode_frame(const FoundFrame& found);

}  // namespace asyncprobe::snapshot
