#include "userspace/snapshot/frame_scanner.h"
#include "userspace/util/format.h"

#include <algorithm>
#include <cstring>

#include "symbolizer/demangle.h"
#include "userspace/snapshot/word_range_filter.h"
#include "userspace/util/stop_request.h"

namespace asyncprobe::snapshot {

namespace {

void record_pointers(const uint64_t* words, size_t n, uint64_t at, PointerRecord* rec,
                     std::vector<size_t>* hits) {
  hits->clear();
  find_words_in_range(words, n, rec->lo, rec->span, hits);
  if (rec->words.size() + hits->size() > rec->cap) {
    rec->overflow = true;
    rec->words.clear();
    rec->words.shrink_to_fit();
    return;
  }
  for (size_t h : *hits) rec->words.emplace_back(at + h * 8, words[h]);
}

}  // namespace

std::vector<FoundFrame> FrameScanner::scan(const std::vector<ScanRegion>& regions, ScanStats* stats,
                                           size_t chunk_bytes, PointerRecord* pointers) const {
  std::vector<FoundFrame> found;
  if (index_.empty()) return found;
  chunk_bytes = std::max<size_t>(chunk_bytes & ~size_t{7}, 4096);
  std::vector<uint64_t> buf(chunk_bytes / 8 + 1);
  std::vector<size_t> hits;
  for (const auto& region : regions) {
    uint64_t start = (region.start + 7) & ~uint64_t{7};
    for (uint64_t at = start; at + 16 <= region.end;) {
      util::check_interrupt();  // a 1 MiB chunk takes about a millisecond
      // One extra word so a header straddling two chunks is seen.
      size_t len = static_cast<size_t>(std::min<uint64_t>(chunk_bytes + 8, region.end - at));
      len &= ~size_t{7};
      if (!read_(at, buf.data(), len)) {
        // Part of the region vanished or is unreadable: skip this chunk, never read it as zeros.
        stats->unreadable_bytes += std::min<uint64_t>(chunk_bytes, region.end - at);
        at += chunk_bytes;
        continue;
      }
      size_t words = len / 8;
      const uint64_t lo = index_.destroy_lo();
      const uint64_t span = index_.destroy_span();
      auto check = [&](size_t i) {
        uint64_t destroy = buf[i + 1];
        if (!index_.maybe_destroy(destroy)) return;
        CoroutineRef ref = index_.match_header(buf[i], destroy);
        if (ref.fn == nullptr) return;
        // Only Clang's elided frames (.cleanup) live on thread stacks; a heap frame's header on
        // a stack is a stale copy in dead stack memory.
        if (region.is_stack && !ref.via_cleanup) return;
        FoundFrame f;
        f.address = at + i * 8;
        f.resume_word = buf[i];
        f.destroy_word = destroy;
        f.ref = ref;
        f.on_stack = region.is_stack;
        found.push_back(f);
      };
      // Almost no word is a code address: find the candidate destroy words (word i + 1 of a
      // header at i) many at a time, and look closer only at those.
      hits.clear();
      find_words_in_range(buf.data() + 1, words - 1, lo, span, &hits);
      for (size_t h : hits) check(h);
      if (pointers != nullptr && !pointers->overflow)
        record_pointers(buf.data(), words, at, pointers, &hits);
      uint64_t advance = std::min<uint64_t>(chunk_bytes, region.end - at);
      stats->bytes_scanned += advance;
      at += advance;
    }
  }
  stats->candidates += found.size();
  // Frames may be found twice where chunks overlap by a word.
  std::sort(found.begin(), found.end(),
            [](const FoundFrame& a, const FoundFrame& b) { return a.address < b.address; });
  found.erase(
      std::unique(found.begin(), found.end(),
                  [](const FoundFrame& a, const FoundFrame& b) { return a.address == b.address; }),
      found.end());
  return revalidate(std::move(found), stats);
}

std::map<std::pair<uint64_t, uint64_t>, size_t> find_header_candidates(
    const std::vector<ScanRegion>& regions, const std::vector<CodeRange>& code,
    const process::ReadMemory& read, size_t max_pairs) {
  std::map<std::pair<uint64_t, uint64_t>, size_t> pairs;
  if (code.empty()) return pairs;
  auto range_of = [&](uint64_t w) -> long {
    for (size_t i = 0; i < code.size(); ++i) {
      if (w >= code[i].start && w < code[i].end) return static_cast<long>(i);
    }
    return -1;
  };
  constexpr size_t kChunk = 1 << 20;
  std::vector<uint64_t> buf(kChunk / 8 + 1);
  for (const auto& region : regions) {
    for (uint64_t at = (region.start + 7) & ~uint64_t{7}; at + 16 <= region.end;) {
      util::check_interrupt();
      size_t len =
          static_cast<size_t>(std::min<uint64_t>(kChunk + 8, region.end - at)) & ~size_t{7};
      if (read(at, buf.data(), len)) {
        for (size_t i = 0; i + 1 < len / 8; ++i) {
          long r = range_of(buf[i + 1]);
          if (r < 0) continue;
          if (buf[i] != 0 && range_of(buf[i]) != r) continue;
          if (buf[i] == buf[i + 1]) continue;
          auto key = std::make_pair(buf[i], buf[i + 1]);
          auto it = pairs.find(key);
          if (it != pairs.end()) {
            it->second++;
          } else if (pairs.size() < max_pairs) {
            pairs.emplace(key, 1);
          }
        }
      }
      at += std::min<uint64_t>(kChunk, region.end - at);
    }
  }
  return pairs;
}

int64_t FrameScanner::read_index(uint64_t frame, const symbolizer::CoroFunction& fn) const {
  if (fn.index_width == 0 || fn.index_width > 8) return -1;
  uint64_t v = 0;
  if (!read_(frame + fn.index_offset, &v, fn.index_width)) return -1;
  return static_cast<int64_t>(v);
}

void FrameScanner::read_pieces(std::vector<process::ReadRequest>& pieces) const {
  if (batch_) {
    batch_(pieces);
    return;
  }
  for (auto& p : pieces) p.ok = read_(p.addr, p.out, p.len);
}

namespace {

// A run of target memory read in one piece by a revalidation pass.
struct Span {
  uint64_t start, end;
  size_t offset;  // into the pass buffer
};

// The spans each pass reads, which span holds each hit, and the pass buffer's size.
struct SpanPlan {
  std::vector<Span> spans;
  std::vector<size_t> span_of;
  size_t total = 0;
};

bool has_index(const symbolizer::CoroFunction& fn) {
  return fn.index_width > 0 && fn.index_width <= 8;
}

// End of the bytes revalidation needs from a frame: its header words and its suspend index.
uint64_t revalidate_end(const FoundFrame& f) {
  uint64_t e = f.address + FoundFrame::kHeadWords * 8;
  const symbolizer::CoroFunction& fn = *f.ref.fn;
  if (has_index(fn)) e = std::max<uint64_t>(e, f.address + fn.index_offset + fn.index_width);
  return e;
}

// Frames sit close together in the heap, so hits (in address order) merge into spans: a gap
// under a page joins two spans, up to a bound on a span's size.
SpanPlan plan_spans(const std::vector<FoundFrame>& hits) {
  constexpr uint64_t kJoinGap = 4096;
  constexpr uint64_t kMaxSpan = 1 << 20;
  SpanPlan plan;
  std::vector<Span>& spans = plan.spans;
  plan.span_of.resize(hits.size());
  for (size_t i = 0; i < hits.size(); ++i) {
    uint64_t s0 = hits[i].address;
    uint64_t e0 = revalidate_end(hits[i]);
    if (!spans.empty() && s0 <= spans.back().end + kJoinGap &&
        std::max(e0, spans.back().end) - spans.back().start <= kMaxSpan) {
      spans.back().end = std::max(e0, spans.back().end);
    } else {
      spans.push_back({s0, e0, 0});
    }
    plan.span_of[i] = spans.size() - 1;
  }
  for (auto& sp : spans) {
    sp.offset = plan.total;
    plan.total += static_cast<size_t>(sp.end - sp.start);
  }
  return plan;
}

// Whether the frame's header and suspend index read the same in both passes.
bool same_in_both_passes(const FoundFrame& f, const uint8_t* first, const uint8_t* second) {
  if (std::memcmp(first, second, 16) != 0) return false;
  const symbolizer::CoroFunction& fn = *f.ref.fn;
  if (!has_index(fn)) return true;
  return std::memcmp(first + fn.index_offset, second + fn.index_offset, fn.index_width) == 0;
}

// Takes the frame's header and index from a pass read starting at its address, len bytes;
// false when the header is no longer the one the scan saw.
bool adopt_pass_read(FoundFrame& f, const uint8_t* bytes, size_t len) {
  std::memcpy(f.head, bytes, std::min<size_t>(len, sizeof f.head));
  f.head_words = std::min<size_t>(len, sizeof f.head) / 8;
  if (f.head[0] != f.resume_word || f.head[1] != f.destroy_word) return false;
  const symbolizer::CoroFunction& fn = *f.ref.fn;
  f.index = -1;
  if (has_index(fn)) {
    uint64_t v = 0;
    std::memcpy(&v, bytes + fn.index_offset, fn.index_width);
    f.index = static_cast<int64_t>(v);
  }
  return true;
}

}  // namespace

bool FrameScanner::revalidate_alone(FoundFrame& f) const {
  // A span ran into unreadable memory: read this frame alone (header and index), twice.
  uint64_t h1[2];
  uint64_t h2[2];
  bool ok = read_(f.address, h1, sizeof h1) && read_(f.address, h2, sizeof h2) &&
            std::memcmp(h1, h2, sizeof h1) == 0;
  int64_t i1 = ok ? read_index(f.address, *f.ref.fn) : -1;
  int64_t i2 = ok ? read_index(f.address, *f.ref.fn) : -1;
  if (!ok || i1 != i2) return false;
  std::memcpy(f.head, h2, sizeof h2);
  std::memcpy(f.first_head, h1, sizeof h1);
  f.head_words = 2;
  f.index = i2;
  return f.head[0] == f.resume_word && f.head[1] == f.destroy_word;
}

std::vector<FoundFrame> FrameScanner::revalidate(std::vector<FoundFrame> hits,
                                                 ScanStats* stats) const {
  // The target runs while we read: a frame counts only if its header and suspend index read the
  // same twice in a row after the scan, and the header as the scan saw it; otherwise it was being
  // created, resumed or freed. Each pass reads merged spans (see plan_spans): a few thousand
  // pieces for 100k frames, batched.
  const SpanPlan plan = plan_spans(hits);
  auto read_pass = [&](std::vector<uint8_t>& buf, std::vector<process::ReadRequest>& pieces) {
    buf.assign(plan.total, 0);
    pieces.clear();
    for (const auto& sp : plan.spans) {
      pieces.push_back(
          {sp.start, buf.data() + sp.offset, static_cast<size_t>(sp.end - sp.start), false});
    }
    read_pieces(pieces);
  };
  std::vector<uint8_t> b1;
  std::vector<uint8_t> b2;
  std::vector<process::ReadRequest> p1;
  std::vector<process::ReadRequest> p2;
  read_pass(b1, p1);
  read_pass(b2, p2);
  std::vector<FoundFrame> valid;
  valid.reserve(hits.size());
  for (size_t i = 0; i < hits.size(); ++i) {
    if (i % 4096 == 0) util::check_interrupt();
    FoundFrame& f = hits[i];
    const size_t span = plan.span_of[i];
    if (!p1[span].ok || !p2[span].ok) {
      if (revalidate_alone(f)) {
        valid.push_back(f);
      } else {
        stats->torn++;
      }
      continue;
    }
    const Span& sp = plan.spans[span];
    size_t at = sp.offset + static_cast<size_t>(f.address - sp.start);
    size_t len = static_cast<size_t>(revalidate_end(f) - f.address);
    if (!same_in_both_passes(f, &b1[at], &b2[at]) || !adopt_pass_read(f, &b2[at], len)) {
      stats->torn++;
      continue;
    }
    std::memcpy(f.first_head, &b1[at], f.head_words * 8);
    valid.push_back(f);
  }
  return valid;
}

namespace {

model::SuspendPoint::Kind to_model_kind(symbolizer::SuspendPointInfo::Kind k) {
  switch (k) {
    case symbolizer::SuspendPointInfo::Kind::kInitial:
      return model::SuspendPoint::Kind::kInitial;
    case symbolizer::SuspendPointInfo::Kind::kAwait:
      return model::SuspendPoint::Kind::kAwait;
    case symbolizer::SuspendPointInfo::Kind::kFinal:
      return model::SuspendPoint::Kind::kFinal;
  }
  return model::SuspendPoint::Kind::kUnknown;
}

}  // namespace

model::CoroFrame decode_frame(const FoundFrame& found) {
  const symbolizer::CoroFunction& fn = *found.ref.fn;
  const symbolizer::CoroCatalog& catalog = *found.ref.loaded->catalog;
  model::CoroFrame frame;
  frame.address = found.address;
  frame.resume_fn = found.resume_word;
  frame.destroy_fn = found.destroy_word;
  frame.function = !fn.name.empty() ? fn.name : util::hex(fn.resume + found.ref.loaded->bias);
  frame.object = found.ref.loaded->target_path;
  frame.on_stack = found.on_stack;
  frame.elided = found.ref.via_cleanup;
  frame.suspend.index = found.index;
  if (found.resume_word == 0) {
    // Finished: the place is the final suspend, shown at the function's declaration.
    frame.state = model::FrameState::kDone;
    frame.suspend.kind = model::SuspendPoint::Kind::kFinal;
    if (fn.decl_line != 0) {
      frame.suspend.file = fn.decl_file;
      frame.suspend.line = fn.decl_line;
      frame.suspend.rule = "function-entry";
    }
    return frame;
  }
  const symbolizer::SuspendPointInfo* sp = catalog.suspend_point(fn, found.index);
  if (sp == nullptr) {
    // Within the range of indices this coroutine uses but with no store we could read (merged
    // code): suspended, place unknown. Outside it (GCC's odd values are destroy dispatch) or
    // unreadable: unknown state. Never a guessed line.
    const auto& points = catalog.suspend_points(fn);
    // GCC numbers suspend points 2, 4, 6...: odd values are destroy dispatch, 0 and 1 are
    // set on the exception paths. Clang numbers them 0, 1, 2...
    bool gcc = fn.compiler == symbolizer::CoroCompiler::kGcc;
    bool valid = gcc ? found.index >= 2 && (found.index & 1) == 0 : found.index >= 0;
    if (valid && !points.empty() && found.index <= points.rbegin()->first) {
      frame.state = model::FrameState::kSuspended;
      frame.suspend.kind = model::SuspendPoint::Kind::kAwait;
    } else {
      frame.state = model::FrameState::kUnknown;
    }
    return frame;
  }
  frame.state = model::FrameState::kSuspended;
  frame.suspend.kind = to_model_kind(sp->kind);
  frame.suspend.file = sp->location.file;
  frame.suspend.line = sp->location.line;
  frame.suspend.rule = sp->rule;
  return frame;
}

}  // namespace asyncprobe::snapshot
