#include "userspace/watch/process_watch.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "userspace/diagnose/diagnose.h"
#include "userspace/process/memory_reader.h"
#include "userspace/snapshot/frame_scanner.h"
#include "userspace/util/thread_cpu_clock.h"
#include "userspace/watch/discovery.h"

namespace asyncprobe::watch {

namespace {

constexpr size_t kMaxStackDepth = 64;
// Re-check spans: frames closer than this are read as one piece; no piece grows past kMaxSpan.
constexpr uint64_t kJoinGap = 512;
constexpr uint64_t kMaxSpan = uint64_t{1} << 20;

// Frames of unknown size are fingerprinted over their first 64 bytes (header, promise, the
// start of the locals); a larger read could take in a neighbouring allocation's changes.
constexpr uint32_t kDefaultContentBytes = 64;
constexpr uint32_t kMaxContentBytes = 4096;

// A frame confirmed stuck window after window is probed again at most this far apart: re-probing
// 100k stuck frames every threshold cost the daemon CPU and the target traps for nothing new.
constexpr double kMaxReprobeSeconds = 60.0;

// Settled frames (see ProcessWatch::settled) are re-read once every this many ticks.
constexpr uint64_t kSettledRounds = 8;

uint32_t content_bytes(const symbolizer::CoroFunction* fn) {
  if (fn != nullptr && fn->frame_size >= 16 && fn->frame_size <= kMaxContentBytes) {
    return static_cast<uint32_t>(fn->frame_size);
  }
  return kDefaultContentBytes;
}

const char* state_name(model::FrameState s) { return model::to_string(s); }

// Whether `count` moved far enough from what was last reported to say so again.
bool changed_by_factor(size_t count, size_t reported) {
  return count >= 2 * reported || 2 * count <= reported;
}

}  // namespace

ProcessWatch::ProcessWatch(int pid, const WatchSettings& settings, snapshot::ResumeProber* prober,
                           std::shared_ptr<symbolizer::CatalogCache> catalogs)
    : pid_(pid),
      settings_(settings),
      prober_(prober),
      catalogs_(std::move(catalogs)),
      command_(comm_of(pid)),
      diagnoses_(settings.failed_window_s) {}

ProcessWatch::~ProcessWatch() = default;

Event ProcessWatch::base_event(EventKind kind) const {
  Event e;
  e.kind = kind;
  e.time = std::chrono::system_clock::now();
  e.pid = pid_;
  e.command = command_;
  e.container = container_;
  return e;
}

bool ProcessWatch::attach(std::vector<Event>* events, snapshot::SnapshotError* error) {
  taker_ = std::make_unique<snapshot::SnapshotTaker>(
      snapshot::SnapshotSession{pid_, settings_.debug_dirs, true, catalogs_});
  if (!taker_->attach(error)) return false;
  // Loading catalogs takes a while: the frames' clocks start when the scan sees them.
  const double now = snapshot::stuck_clock_now();
  container_ = container_id_of(pid_);
  std::string reason;
  bool gone = false;
  std::vector<Event> diagnosed;
  if (!rescan(now, &diagnosed, &reason, &gone)) {
    error->code = gone ? util::kExitTargetExited : util::kExitInternal;
    error->message = "pid " + std::to_string(pid_) + ": first scan failed (" + reason + ")";
    return false;
  }
  Event e = base_event(EventKind::kAttached);
  e.coroutines = tracks_.size();
  e.functions = taker_->index().function_count();
  e.objects = taker_->objects_opened();
  e.objects_shared = taker_->objects_shared();
  events->push_back(std::move(e));
  for (Event& d : diagnosed) events->push_back(std::move(d));
  return true;
}

uint32_t ProcessWatch::point_of(const model::CoroFrame& f) {
  PointKey key{f.function, f.suspend.file, f.suspend.line,
               f.suspend.line > 0 ? -1 : f.suspend.index};
  auto [it, inserted] = point_ids_.emplace(key, static_cast<uint32_t>(points_.size()));
  if (inserted) points_.push_back(PointInfo{key, {}});
  return it->second;
}

bool ProcessWatch::rescan(double now, std::vector<Event>* events, std::string* error_reason,
                          bool* gone) {
  const double cpu0 = util::thread_cpu_seconds();
  model::Snapshot snap;
  snapshot::SnapshotError err;
  if (!taker_->take(&snap, &err)) {
    *gone = err.code == util::kExitTargetExited || !taker_->alive();
    *error_reason = *gone ? "exited" : "scan-failed";
    return false;
  }
  if (!snap.command.empty()) command_ = snap.command;  // empty once the process has exited
  track_frames(snap, now);
  diagnose::diagnose(snap, nullptr);
  std::vector<Event> diagnosed;
  diagnoses_.update(snap, now, &diagnosed);
  for (Event& d : diagnosed) {
    Event e = base_event(d.kind);
    d.time = e.time;
    d.pid = e.pid;
    d.command = e.command;
    d.container = e.container;
    events->push_back(std::move(d));
  }
  const double cost = util::thread_cpu_seconds() - cpu0;
  rescan_period_s_ =
      std::max({settings_.stuck_threshold_s, settings_.interval_s,
                settings_.rescan_cpu_share > 0 ? cost / settings_.rescan_cpu_share : 0.0});
  next_rescan_ = now + rescan_period_s_;
  return true;
}

// The frames of a rescan become the tracks; a frame at the same place as at the last look keeps
// its unchanged clock. Each point's stack comes from a leaf frame at it.
void ProcessWatch::track_frames(const model::Snapshot& snap, double now) {
  std::unordered_map<uint64_t, size_t> by_address;
  std::unordered_set<uint64_t> awaited_by;  // frames some other frame names as its awaiter
  by_address.reserve(snap.frames.size());
  for (size_t i = 0; i < snap.frames.size(); ++i) {
    by_address.emplace(snap.frames[i].address, i);
    if (snap.frames[i].awaiter != 0) awaited_by.insert(snap.frames[i].awaiter);
  }
  std::vector<FrameTrack> next;
  next.reserve(snap.frames.size());
  std::vector<bool> stack_done(points_.size(), false);
  for (const model::CoroFrame& f : snap.frames) {
    FrameTrack t;
    t.address = f.address;
    t.resume = f.resume_fn;
    t.destroy = f.destroy_fn;
    t.index = f.suspend.index;
    t.ref = taker_->index().match_header(f.resume_fn, f.destroy_fn);
    t.state = f.state;
    t.encloses = awaited_by.count(f.address) > 0;
    t.point = point_of(f);
    t.since = now;
    t.content_len = content_bytes(t.ref.fn);
    // Same place as at the last look: its unchanged clock keeps running.
    auto old =
        std::lower_bound(tracks_.begin(), tracks_.end(), f.address,
                         [](const FrameTrack& a, uint64_t addr) { return a.address < addr; });
    if (old != tracks_.end() && old->address == f.address && old->resume == t.resume &&
        old->destroy == t.destroy && old->index == t.index) {
      t.since = old->since;
      t.content = old->content;
      t.content_known = old->content_known;
      t.confirmed_at = old->confirmed_at;
      t.confirmations = old->confirmations;
      t.hot_at = old->hot_at;
      t.in_probe = old->in_probe;
    }
    if (t.ref.fn == nullptr) continue;
    if (stack_done.size() < points_.size()) stack_done.resize(points_.size(), false);
    if (!stack_done[t.point] && !t.encloses) {
      // The point's stack: this frame and its awaiters, outermost first.
      std::vector<StackFrame> stack;
      const model::CoroFrame* cur = &f;
      while (cur != nullptr && stack.size() < kMaxStackDepth) {
        stack.push_back({cur->function, cur->suspend.file, cur->suspend.line});
        auto up = cur->awaiter != 0 ? by_address.find(cur->awaiter) : by_address.end();
        cur = up == by_address.end() || up->second >= snap.frames.size() ||
                      &snap.frames[up->second] == cur
                  ? nullptr
                  : &snap.frames[up->second];
      }
      std::reverse(stack.begin(), stack.end());
      points_[t.point].stack = std::move(stack);
      stack_done[t.point] = true;
    }
    next.push_back(t);
  }
  std::sort(next.begin(), next.end(),
            [](const FrameTrack& a, const FrameTrack& b) { return a.address < b.address; });
  tracks_ = std::move(next);
  episodes_dirty_ = true;
  next_probe_at_ = 0.0;
}

// Each frame needs its two header words, its index field and the bytes fingerprinted.
uint64_t ProcessWatch::read_end(const FrameTrack& t) {
  uint64_t end = t.address + std::max<uint64_t>(16, t.content_len);
  if (t.ref.fn != nullptr && t.ref.fn->index_width > 0) {
    end = std::max(end, t.address + t.ref.fn->index_offset + t.ref.fn->index_width);
  }
  return end;
}

// Nearby frames joined into few reads (gaps up to kJoinGap, spans up to kMaxSpan), laid end to
// end in one buffer. `due`: indexes into tracks_, ascending.
std::vector<ProcessWatch::ReadSpan> ProcessWatch::plan_reads(const std::vector<size_t>& due) const {
  std::vector<ReadSpan> spans;
  for (size_t i : due) {
    const FrameTrack& t = tracks_[i];
    const uint64_t end = read_end(t);
    if (!spans.empty() && t.address <= spans.back().end + kJoinGap &&
        end - spans.back().start <= kMaxSpan) {
      spans.back().end = std::max(spans.back().end, end);
    } else {
      spans.push_back({t.address, end, 0});
    }
  }
  size_t total = 0;
  for (ReadSpan& s : spans) {
    s.offset = total;
    total += s.end - s.start;
  }
  return spans;
}

// Updates a track from its frame's bytes as read now; false when the frame was freed or reused.
bool ProcessWatch::refresh_track(FrameTrack& t, const unsigned char* at, double now) {
  uint64_t w[2];
  std::memcpy(w, at, sizeof w);
  if (w[1] != t.destroy || (w[0] != t.resume && w[0] != 0)) return false;  // freed or reused
  int64_t index = -1;
  if (t.ref.fn != nullptr && t.ref.fn->index_width > 0 && t.ref.fn->index_width <= 8) {
    uint64_t v = 0;
    std::memcpy(&v, at + t.ref.fn->index_offset, t.ref.fn->index_width);
    index = static_cast<int64_t>(v);
  }
  const uint64_t content = snapshot::fingerprint_bytes(at, t.content_len);
  const bool was_known = t.content_known;
  const bool content_changed = was_known && content != t.content;
  t.content = content;
  t.content_known = true;
  // Same place but it ran (or was written to); or the first look at its content: either way
  // the frame is known unchanged from now on only.
  if (content_changed || !was_known) {
    t.since = now;
    episodes_dirty_ = true;
  }
  if (w[0] != t.resume || index != t.index) {
    // Moved (or finished): decode the new place with the snapshot's own rules.
    snapshot::FoundFrame found;
    found.address = t.address;
    found.resume_word = w[0];
    found.destroy_word = w[1];
    found.index = index;
    found.ref = t.ref;
    model::CoroFrame decoded = snapshot::decode_frame(found);
    t.resume = w[0];
    t.index = index;
    t.state = decoded.state;
    t.point = point_of(decoded);
    t.since = now;
    episodes_dirty_ = true;
    next_probe_at_ = std::min(next_probe_at_, now + probe_ripe_s());
  }
  return true;
}

// A frame unchanged past threshold + interval and not in a probe window has its verdict (stuck,
// or unchanged with the reason): only a change can alter it, which ends the episode (recovered).
// Such frames are re-read one block in kSettledRounds per tick, so 100k stuck frames cost an
// eighth of the reads and fingerprints; `recovered` comes up to kSettledRounds intervals later.
bool ProcessWatch::settled(const FrameTrack& t, double now) const {
  return t.content_known && !t.in_probe &&
         now - t.since >= settings_.stuck_threshold_s + settings_.interval_s;
}

// Reads the `due` tracks' frames and refreshes them; keep[i] = 0 for those freed or reused.
// Returns whether a settled one changed.
bool ProcessWatch::read_and_refresh(const std::vector<size_t>& due, double now,
                                    std::vector<char>& keep, std::vector<char>* settled_before) {
  if (due.empty()) return false;
  const std::vector<ReadSpan> spans = plan_reads(due);
  recheck_buf_.resize(spans.back().offset + (spans.back().end - spans.back().start));
  std::vector<process::ReadRequest> pieces;
  pieces.reserve(spans.size());
  for (const ReadSpan& s : spans)
    pieces.push_back({s.start, recheck_buf_.data() + s.offset, s.end - s.start, false});
  taker_->read_pieces(pieces);

  bool settled_changed = false;
  size_t span = 0;
  for (size_t i : due) {
    FrameTrack& t = tracks_[i];
    while (spans[span].end < read_end(t) || spans[span].start > t.address) ++span;
    const unsigned char* at =
        recheck_buf_.data() + spans[span].offset + (t.address - spans[span].start);
    const double since = t.since;
    // Unmapped since (freed), or freed or reused in place.
    keep[i] = pieces[span].ok && refresh_track(t, at, now);
    if (settled_before != nullptr && (*settled_before)[i] && (!keep[i] || t.since != since))
      settled_changed = true;
  }
  any_unreadable_ |= std::any_of(pieces.begin(), pieces.end(),
                                 [](const process::ReadRequest& p) { return !p.ok; });
  return settled_changed;
}

bool ProcessWatch::recheck(double now, bool* gone) {
  if (tracks_.empty()) return true;
  const uint64_t round = recheck_round_++;
  const size_t block = (tracks_.size() + kSettledRounds - 1) / kSettledRounds;
  std::vector<size_t> due, rest;
  std::vector<char> was_settled(tracks_.size(), 0);
  due.reserve(tracks_.size());
  for (size_t i = 0; i < tracks_.size(); ++i) {
    was_settled[i] = settled(tracks_[i], now);
    (!was_settled[i] || (i / block) % kSettledRounds == round % kSettledRounds ? due : rest)
        .push_back(i);
  }
  any_unreadable_ = false;
  std::vector<char> keep(tracks_.size(), 1);
  // A settled frame that changed is the start of a recovery: the others are read now too, so the
  // recovery is seen whole (not an eighth per tick, which reported shrinking counts).
  if (read_and_refresh(due, now, keep, &was_settled)) read_and_refresh(rest, now, keep, nullptr);
  if (std::find(keep.begin(), keep.end(), 0) != keep.end()) {
    size_t out = 0;
    for (size_t i = 0; i < tracks_.size(); ++i) {
      if (keep[i] && out != i) tracks_[out] = tracks_[i];
      out += keep[i] ? 1 : 0;
    }
    tracks_.resize(out);
    episodes_dirty_ = true;
  }
  if (any_unreadable_ && !taker_->alive()) {
    *gone = true;
    return false;
  }
  return true;
}

bool ProcessWatch::tick(double now, std::vector<Event>* events, TickReport* report) {
  const double cpu0 = util::thread_cpu_seconds();
  bool gone = false;
  bool ok;
  std::string reason;
  if (now >= next_rescan_) {
    report->rescan = true;
    ok = rescan(now, events, &reason, &gone);
  } else {
    ok = recheck(now, &gone);
    if (!ok && !gone) reason = "recheck-failed";
  }
  if (!gone && !taker_->alive()) gone = true;
  report->cpu_seconds = util::thread_cpu_seconds() - cpu0;
  if (gone) {
    report->error_reason = "exited";
    Event e = base_event(EventKind::kDetached);
    e.reason = "exited";
    e.message = "the process exited";
    events->push_back(std::move(e));
    return false;
  }
  report->error_reason = ok ? "" : reason;
  // The window is one interval, give or take the tick's jitter.
  if (probe_ && now - probe_->started >= 0.75 * settings_.interval_s) finish_probe(now);
  if (probe_) probe_->session->check_budget();
  update_episodes(now, events);
  if (!probe_) start_probe(now);
  return true;
}

bool ProcessWatch::poll_probe() {
  if (!probe_) return false;
  probe_->session->check_budget();
  return true;
}

ProcessWatch::FrameTrack* ProcessWatch::find_track(uint64_t address) {
  auto it = std::lower_bound(tracks_.begin(), tracks_.end(), address,
                             [](const FrameTrack& a, uint64_t addr) { return a.address < addr; });
  return it != tracks_.end() && it->address == address ? &*it : nullptr;
}

// Probed early enough that the verdict is in by the threshold: one interval before it.
double ProcessWatch::probe_ripe_s() const {
  return std::max(0.0, settings_.stuck_threshold_s - settings_.interval_s);
}

double ProcessWatch::reprobe_after(const FrameTrack& t) const {
  const double base = settings_.stuck_threshold_s;
  if (t.confirmed_at < t.since || t.confirmations <= 1) return base;
  const double grown =
      base * static_cast<double>(1u << std::min<uint32_t>(t.confirmations - 1, 10));
  return std::min(grown, std::max(base, kMaxReprobeSeconds));
}

void ProcessWatch::start_probe(double now) {
  // Nothing can have become due before next_probe_at_ (a pass over 100k tracks per tick was a
  // fifth of the daemon's CPU).
  if (prober_ == nullptr || now < next_probe_try_ || now < next_probe_at_) return;
  const double ripe = probe_ripe_s();
  next_probe_at_ = std::numeric_limits<double>::infinity();
  std::map<const symbolizer::CoroFunction*, snapshot::ResumeProbeFunction> by_fn;
  for (const FrameTrack& t : tracks_) {
    if (t.state != model::FrameState::kSuspended || t.encloses || t.ref.fn == nullptr) continue;
    if (!t.content_known) {
      next_probe_at_ = std::min(next_probe_at_, now + settings_.interval_s);
      continue;
    }
    if (now - t.since < ripe) {
      next_probe_at_ = std::min(next_probe_at_, t.since + ripe);
      continue;
    }
    // Confirmed or found too hot lately: the next window comes a threshold later, and for a
    // frame confirmed again and again, twice as late each time (up to kMaxReprobeSeconds). Its
    // memory is still re-checked: a change ends the stretch.
    const double verdict = std::max(t.confirmed_at, t.hot_at);
    if (verdict >= t.since && now - verdict < reprobe_after(t)) {
      next_probe_at_ = std::min(next_probe_at_, verdict + reprobe_after(t));
      continue;
    }
    snapshot::ResumeProbeFunction& f = by_fn[t.ref.fn];
    f.loaded = t.ref.loaded;
    f.fn = t.ref.fn;
    f.frames.push_back(t.address);  // tracks are sorted: ascending
  }
  for (FrameTrack& t : tracks_) {
    auto f = t.ref.fn != nullptr ? by_fn.find(t.ref.fn) : by_fn.end();
    t.in_probe = f != by_fn.end() &&
                 std::binary_search(f->second.frames.begin(), f->second.frames.end(), t.address);
  }
  if (by_fn.empty()) return;
  next_probe_at_ = 0.0;  // after this window, look again
  episodes_dirty_ = true;
  ProbeWindow w;
  w.request.pid = pid_;
  for (auto& [fn, f] : by_fn) w.request.functions.push_back(std::move(f));
  std::string why;
  w.session = prober_->start(w.request, &why);
  if (w.session == nullptr) {
    for (FrameTrack& t : tracks_) t.in_probe = false;
    // Not possible here (privileges, BPF): frames stay `unchanged`; asking again costs a BPF
    // load, so not before a minute.
    no_probe_why_ = why.empty() ? "the resume probe could not start" : why;
    episodes_dirty_ = true;
    next_probe_try_ = now + 60.0;
    return;
  }
  no_probe_why_.clear();
  w.started = snapshot::stuck_clock_now();
  probe_ = std::move(w);
}

void ProcessWatch::finish_probe(double now) {
  snapshot::ResumeProbeResult r = probe_->session->finish();
  next_probe_at_ = 0.0;
  episodes_dirty_ = true;
  for (FrameTrack& t : tracks_) t.in_probe = false;
  const snapshot::ResumeProbeRequest& req = probe_->request;
  for (size_t i = 0; i < req.functions.size() && i < r.functions.size(); ++i) {
    const snapshot::ResumeProbeFunctionResult& fr = r.functions[i];
    // The function's probe watched the whole window: a frame it never saw enter was not resumed.
    const bool covered = fr.attached && !fr.hot && fr.attached_at_s <= r.started_at_s &&
                         fr.covered_until_s >= r.ended_at_s;
    for (uint64_t addr : req.functions[i].frames) {
      FrameTrack* t = find_track(addr);
      if (t == nullptr) continue;
      auto hits = r.entries.find(addr);
      if (hits != r.entries.end() && hits->second > 0) {
        t->since = now;  // resumed: busy, not stuck
      } else if (covered && t->since <= probe_->started) {
        t->confirmations = t->confirmed_at >= t->since ? t->confirmations + 1 : 1;
        t->confirmed_at = now;
      } else if (t->since <= probe_->started) {
        t->hot_at = now;  // unchanged, but the probe could not watch it throughout
      }
    }
  }
  probe_.reset();
}

void ProcessWatch::purge_recovered(double now) {
  for (auto it = recovered_at_.begin(); it != recovered_at_.end();) {
    it = now - it->second.at > settings_.recovered_retention_s ? recovered_at_.erase(it)
                                                               : std::next(it);
  }
}

void ProcessWatch::update_episodes(double now, std::vector<Event>* events) {
  purge_recovered(now);
  // Nothing changed and no frame crossed the threshold since the last pass: the groups are the
  // same (the pass over 100k tracks each tick was a sixth of the daemon's CPU).
  if (!episodes_dirty_ && now < next_crossing_) return;
  episodes_dirty_ = false;
  next_crossing_ = std::numeric_limits<double>::infinity();
  // Leaf frames unchanged past the threshold, by point; the stuck ones (a probe saw them not
  // resumed during their present unchanged stretch) apart from the merely unchanged.
  struct Group {
    std::vector<const FrameTrack*> stuck, unchanged;
  };
  std::map<uint32_t, Group> over;
  for (const FrameTrack& t : tracks_) {
    if (t.state != model::FrameState::kSuspended || t.encloses || !t.content_known) continue;
    if (now - t.since < settings_.stuck_threshold_s) {
      next_crossing_ = std::min(next_crossing_, t.since + settings_.stuck_threshold_s);
      continue;
    }
    // A verdict is on its way: neither `stuck` nor `unchanged` until it is in. With a prober at
    // hand, a frame no probe has judged yet (a late tick on a loaded machine) waits for one too.
    if (t.in_probe && t.confirmed_at < t.since) continue;
    const bool judged = t.confirmed_at >= t.since || t.hot_at >= t.since;
    if (!judged && prober_ != nullptr && no_probe_why_.empty()) continue;
    Group& g = over[t.point];
    (t.confirmed_at >= t.since ? g.stuck : g.unchanged).push_back(&t);
  }
  std::set<PointKey> present;
  for (const auto& [point, group] : over) {
    const PointInfo& info = points_[point];
    const bool stuck = !group.stuck.empty();
    const std::vector<const FrameTrack*>& frames = stuck ? group.stuck : group.unchanged;
    double shortest = now - frames.front()->since;
    double longest = shortest;
    for (const FrameTrack* t : frames) {
      shortest = std::min(shortest, now - t->since);
      longest = std::max(longest, now - t->since);
    }
    auto [it, fresh] = episodes_.try_emplace(info.key);
    Episode& ep = it->second;
    const EventKind kind = stuck ? EventKind::kStuck : EventKind::kUnchanged;
    const bool kind_changed = fresh || ep.kind != kind;
    ep.kind = kind;
    ep.evidence = stuck                                          ? "resume-probe"
                  : prober_ == nullptr || !no_probe_why_.empty() ? "memory-unchanged"
                                                                 : "probe-not-covered";
    ep.current_count = frames.size();
    ep.longest_s = std::max(ep.longest_s, longest);
    present.insert(info.key);
    if (!kind_changed && !changed_by_factor(frames.size(), ep.reported_count)) continue;
    Event e = base_event(kind);
    e.suspend = info.key;
    e.count = frames.size();
    e.previous_count = kind_changed ? 0 : ep.reported_count;
    e.for_s = shortest;
    e.evidence = ep.evidence;
    if (!stuck) e.message = prober_ == nullptr ? "no resume probe (--no-probe)" : no_probe_why_;
    e.stack = info.stack;
    events->push_back(std::move(e));
    ep.reported_count = frames.size();
    recovered_at_.erase(info.key);
  }
  for (auto it = episodes_.begin(); it != episodes_.end();) {
    if (present.count(it->first) > 0) {
      ++it;
      continue;
    }
    Event e = base_event(EventKind::kRecovered);
    e.suspend = it->first;
    e.count = it->second.reported_count;
    e.for_s = it->second.longest_s;
    e.evidence = it->second.evidence;
    auto id = point_ids_.find(it->first);
    if (id != point_ids_.end()) e.stack = points_[id->second].stack;
    events->push_back(std::move(e));
    recovered_at_[it->first] = Recovered{now, it->second.kind == EventKind::kStuck};
    it = episodes_.erase(it);
  }
}

std::map<std::string, size_t> ProcessWatch::state_counts() const {
  std::map<std::string, size_t> counts{{"suspended", 0}, {"done", 0}, {"unknown", 0}};
  for (const FrameTrack& t : tracks_) ++counts[state_name(t.state)];
  return counts;
}

std::vector<PointGauge> ProcessWatch::point_gauges(double now) const {
  (void)now;
  std::vector<PointGauge> out;
  for (const auto& [key, ep] : episodes_) {
    out.push_back({key, ep.current_count, ep.kind == EventKind::kStuck});
  }
  for (const auto& [key, r] : recovered_at_) out.push_back({key, 0, r.confirmed});
  return out;
}

}  // namespace asyncprobe::watch
