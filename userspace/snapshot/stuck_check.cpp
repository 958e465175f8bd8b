#include "userspace/snapshot/stuck_check.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <thread>

#include "userspace/snapshot/frame_scanner.h"
#include "userspace/snapshot/snapshot_taker.h"

namespace asyncprobe::snapshot {

namespace {

// FNV-1a, 64 bit: a fingerprint only needs to change when the bytes do.
void reset_marks(model::CoroFrame& f) {
  f.stuck = false;
  f.stuck_for_s = 0.0;
  f.unchanged = false;
  f.unchanged_for_s = 0.0;
  f.resumes = -1;
}

// Memory evidence between the kept state of an address and a frame seen there now.
model::StuckEvidence compare(const FrameTrack& t, const model::CoroFrame& f) {
  if (t.destroy_fn != f.destroy_fn) return model::StuckEvidence::kRecreated;
  if (t.resume_fn != f.resume_fn || t.state != f.state || t.index != f.suspend.index) {
    return model::StuckEvidence::kSuspendPointChanged;
  }
  // A frame whose bytes could not be read either time is judged on its point alone.
  if (t.fingerprint_bytes != 0 && f.fingerprint_bytes != 0 &&
      (t.fingerprint_bytes != f.fingerprint_bytes || t.fingerprint != f.fingerprint)) {
    return model::StuckEvidence::kContentChanged;
  }
  return model::StuckEvidence::kUnchangedNoProbe;
}

FrameTrack track_of(const model::CoroFrame& f, double at_s) {
  FrameTrack t;
  t.address = f.address;
  t.resume_fn = f.resume_fn;
  t.destroy_fn = f.destroy_fn;
  t.state = f.state;
  t.index = f.suspend.index;
  t.fingerprint = f.fingerprint;
  t.fingerprint_bytes = f.fingerprint_bytes;
  t.unchanged_since_s = at_s;
  t.point_since_s = at_s;
  return t;
}

}  // namespace

double stuck_clock_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

uint64_t fingerprint_bytes(const unsigned char* p, size_t len) {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ len;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ w) * 0xff51afd7ed558ccdull;
    h = (h << 29) | (h >> 35);
  }
  for (; i < len; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

void fingerprint_frames(std::vector<model::CoroFrame>& frames, const std::vector<FoundFrame>& found,
                        const process::ReadMemory& read, const process::ReadMemoryBatch& batch) {
  const size_t n = std::min(frames.size(), found.size());
  std::vector<uint32_t> lengths(n);
  std::vector<size_t> offsets(n);
  size_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint64_t size = found[i].ref.fn != nullptr ? found[i].ref.fn->frame_size : 0;
    // Unknown size: the header and the start of the promise, as the scan read them.
    lengths[i] = static_cast<uint32_t>(size == 0 ? FoundFrame::kHeadWords * 8
                                                 : std::min<uint64_t>(size, kFingerprintBytes));
    offsets[i] = total;
    total += lengths[i];
  }
  std::vector<unsigned char> buf(total);
  std::vector<process::ReadRequest> pieces(n);
  for (size_t i = 0; i < n; ++i) {
    pieces[i].addr = found[i].address;
    pieces[i].out = buf.data() + offsets[i];
    pieces[i].len = lengths[i];
  }
  if (batch) {
    batch(pieces);
  } else {
    for (auto& p : pieces) p.ok = read(p.addr, p.out, p.len);
  }
  for (size_t i = 0; i < n; ++i) {
    if (pieces[i].ok) {
      frames[i].fingerprint = fingerprint_bytes(buf.data() + offsets[i], lengths[i]);
      frames[i].fingerprint_bytes = lengths[i];
    } else if (found[i].head_words > 0) {
      // The frame ends before the bytes asked for (a short mapping): its head as re-read.
      const size_t bytes = found[i].head_words * 8;
      frames[i].fingerprint =
          fingerprint_bytes(reinterpret_cast<const unsigned char*>(found[i].head), bytes);
      frames[i].fingerprint_bytes = static_cast<uint32_t>(bytes);
    } else {
      frames[i].fingerprint = 0;
      frames[i].fingerprint_bytes = 0;
    }
  }
}

void wait_probe_window(ResumeProbeSession& session, double until_s, double poll_s) {
  for (;;) {
    const double left = until_s - stuck_clock_now();
    if (left <= 0) return;
    std::this_thread::sleep_for(std::chrono::duration<double>(std::min(left, poll_s)));
    session.check_budget();
  }
}

void StuckCheck::observe(model::Snapshot& snap, double at_s) {
  const bool first = last_look_s_ < 0;
  snap.window_seconds = first ? 0.0 : std::max(0.0, at_s - last_look_s_);
  snap.stuck_probe = model::StuckProbeInfo{};
  std::unordered_map<uint64_t, FrameTrack> next;
  next.reserve(snap.frames.size());
  for (model::CoroFrame& f : snap.frames) {
    reset_marks(f);
    FrameTrack cur = track_of(f, at_s);
    auto it = first ? tracks_.end() : tracks_.find(f.address);
    if (first) {
      f.stuck_evidence = model::StuckEvidence::kNotChecked;
    } else if (it == tracks_.end()) {
      f.stuck_evidence = model::StuckEvidence::kNew;
    } else {
      f.stuck_evidence = compare(it->second, f);
      if (f.stuck_evidence == model::StuckEvidence::kContentChanged ||
          f.stuck_evidence == model::StuckEvidence::kUnchangedNoProbe) {
        cur.point_since_s = it->second.point_since_s;
      }
      if (f.stuck_evidence == model::StuckEvidence::kUnchangedNoProbe) {
        const FrameTrack& t = it->second;
        cur.unchanged_since_s = t.unchanged_since_s;
        cur.stuck_since_s = t.stuck_since_s;
        cur.stuck_until_s = t.stuck_until_s;
        f.unchanged = true;
        f.unchanged_for_s = at_s - t.unchanged_since_s;
        if (t.stuck_since_s >= 0) {
          // Known not resumed over an earlier probe stretch, and unchanged since: still stuck,
          // for as long as the probes covered.
          f.unchanged = false;
          f.stuck = true;
          f.stuck_for_s = t.stuck_until_s - t.stuck_since_s;
          f.stuck_evidence = model::StuckEvidence::kResumeProbe;
        }
      }
    }
    next.emplace(f.address, cur);  // a repeated address (torn read) keeps its first frame
  }
  tracks_.swap(next);
  last_look_s_ = at_s;
}

ResumeProbeRequest StuckCheck::probe_request(const model::Snapshot& snap,
                                             const CoroutineIndex& index,
                                             double min_unchanged_s) const {
  ResumeProbeRequest req;
  req.pid = snap.pid;
  std::map<const symbolizer::CoroFunction*, size_t> slot;
  for (const model::CoroFrame& f : snap.frames) {
    if (min_unchanged_s > 0) {
      auto it = tracks_.find(f.address);
      if (it == tracks_.end() || !(f.unchanged || f.stuck)) continue;
      if (last_look_s_ - it->second.unchanged_since_s < min_unchanged_s) continue;
    }
    CoroutineRef ref = index.match_header(f.resume_fn, f.destroy_fn);
    if (ref.fn == nullptr) continue;
    auto [it, added] = slot.emplace(ref.fn, req.functions.size());
    if (added) {
      ResumeProbeFunction pf;
      pf.loaded = ref.loaded;
      pf.fn = ref.fn;
      req.functions.push_back(std::move(pf));
    }
    req.functions[it->second].frames.push_back(f.address);
  }
  for (ResumeProbeFunction& pf : req.functions) {
    std::sort(pf.frames.begin(), pf.frames.end());
    pf.frames.erase(std::unique(pf.frames.begin(), pf.frames.end()), pf.frames.end());
  }
  return req;
}

void StuckCheck::apply_probe(const ResumeProbeRequest& request, const ResumeProbeResult& result,
                             model::Snapshot& snap) {
  std::unordered_map<uint64_t, size_t> fn_of;  // candidate frame -> request function
  for (size_t i = 0; i < request.functions.size(); ++i) {
    for (uint64_t a : request.functions[i].frames) fn_of.emplace(a, i);
  }
  model::StuckProbeInfo& info = snap.stuck_probe;
  info = model::StuckProbeInfo{};
  info.ran = true;
  info.functions = request.functions.size();
  info.frames = fn_of.size();
  info.hits = result.hits;
  info.covered_s = std::max(0.0, result.ended_at_s - result.started_at_s);
  info.attach_s = result.attach_s;
  info.detach_s = result.detach_s;
  for (const ResumeProbeFunctionResult& r : result.functions) {
    info.functions_hot += r.hot;
    info.functions_failed += !r.attached;
  }
  for (model::CoroFrame& f : snap.frames) {
    auto fi = fn_of.find(f.address);
    auto ti = tracks_.find(f.address);
    if (fi == fn_of.end() || ti == tracks_.end() || fi->second >= result.functions.size()) continue;
    FrameTrack& t = ti->second;
    const ResumeProbeFunctionResult& r = result.functions[fi->second];
    const bool looked_same = f.unchanged || f.stuck;
    if (!r.attached) {
      if (f.unchanged) f.stuck_evidence = model::StuckEvidence::kUnchangedProbeMissed;
      continue;
    }
    auto ei = result.entries.find(f.address);
    const uint64_t entries = ei != result.entries.end() ? ei->second : 0;
    f.resumes = static_cast<int64_t>(entries);
    if (entries > 0) {
      // Resumed (or destroyed and made again) in the window, whatever memory says.
      f.stuck = f.unchanged = false;
      f.stuck_for_s = f.unchanged_for_s = 0.0;
      if (looked_same) f.stuck_evidence = model::StuckEvidence::kResumed;
      t.unchanged_since_s = last_look_s_;
      t.stuck_since_s = t.stuck_until_s = -1.0;
      continue;
    }
    // Zero entries prove something only for the same frame at the same suspend point since
    // before the probe was live, over a probe that stayed attached until this look. Its bytes
    // may have changed meanwhile (an object living in the frame, written by other coroutines):
    // without an entry into its resume or destroy function it was not resumed, and not made
    // again at that address either (that takes a destroy, or a resume that frees it).
    const bool same_point =
        looked_same || f.stuck_evidence == model::StuckEvidence::kContentChanged;
    if (!same_point || t.point_since_s > r.attached_at_s) continue;
    if (r.covered_until_s < last_look_s_) {
      if (looked_same && !f.stuck) f.stuck_evidence = model::StuckEvidence::kUnchangedProbeHot;
      continue;
    }
    const bool continues = t.stuck_since_s >= 0 && t.stuck_until_s >= r.attached_at_s;
    if (!continues) t.stuck_since_s = r.attached_at_s;
    t.stuck_until_s = last_look_s_;
    f.unchanged = false;
    f.stuck = true;
    f.stuck_for_s = t.stuck_until_s - t.stuck_since_s;
    f.stuck_evidence = model::StuckEvidence::kResumeProbe;
  }
}

void StuckCheck::note_no_probe(model::Snapshot& snap, const std::string& why) const {
  snap.stuck_probe = model::StuckProbeInfo{};
  snap.stuck_probe.note = why;
}

uint64_t one_shot_hot_budget(double window_s) {
  const double budget = static_cast<double>(kOneShotHitsPerSecond) * std::max(window_s, 0.2);
  return static_cast<uint64_t>(std::min(budget, 1e12));
}

bool take_with_stuck_check(SnapshotTaker& taker, double window_s, ResumeProber* prober,
                           const std::string& no_probe_why, model::Snapshot* out,
                           SnapshotError* error, model::Snapshot* first_out) {
  StuckCheck check;
  model::Snapshot first;
  if (!taker.take(&first, error)) return false;
  check.observe(first, stuck_clock_now());
  std::string why = no_probe_why;
  ResumeProbeRequest request;
  std::unique_ptr<ResumeProbeSession> session;
  if (prober != nullptr) {
    request = check.probe_request(first, taker.index(), 0.0);
    request.hot_budget = one_shot_hot_budget(window_s);
    if (request.functions.empty()) {
      why = "no frame to probe";
    } else {
      session = prober->start(request, &why);
    }
  }
  // The window starts once the probes are live, so that it is covered whole.
  const double until = stuck_clock_now() + window_s;
  if (session != nullptr) {
    wait_probe_window(*session, until);
  } else {
    std::this_thread::sleep_for(std::chrono::duration<double>(until - stuck_clock_now()));
  }
  const bool ok = taker.take(out, error);
  const double looked = stuck_clock_now();
  ResumeProbeResult result;
  if (session != nullptr) result = session->finish();  // detached before anything else
  if (!ok) return false;
  check.observe(*out, looked);
  // The looks are at least the window apart and a probe covered at least the window: the
  // window asked for is the bound every mark holds to.
  out->window_seconds = window_s;
  if (session != nullptr) {
    check.apply_probe(request, result, *out);
    for (const std::string& w : result.warnings) out->warnings.push_back(w);
  } else {
    check.note_no_probe(*out, why);
  }
  if (first_out != nullptr) *first_out = std::move(first);
  return true;
}

}  // namespace asyncprobe::snapshot
