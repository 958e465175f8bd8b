// The stuck check: "stuck" means "not resumed during the window", known, never "the same suspend
// point seen twice" (a timer loop waking 100 times a second waits at the same co_await every
// time, and Asio or malloc hand out the same frame addresses again).
//
// Two kinds of evidence, cheapest first:
//  1. Memory, no privileges: each look records every frame's header, state, suspend index and a
//     fingerprint of its bytes (up to kFingerprintBytes, at most the DWARF frame size). A frame
//     that is new, was recreated at the same address, changed its suspend point or changed its
//     bytes between looks is NOT stuck. Bytes can change without a resume (an operation that
//     completes writes its result into the awaiter before the resume is queued): such a frame is
//     "moving", not stuck either way.
//  2. A resume probe (userspace/kernel/resume_probe.h, root or CAP_BPF+CAP_PERFMON): for the
//     frames that look unchanged, a uprobe on their functions' resume (and destroy) entry counts
//     entries per frame address in the kernel, attached only for the window and detached at once
//     after it. A function whose hits pass a budget is detached early ("hot"); its frames that
//     were not seen resumed stay "unchanged". A frame with 0 entries over a covered window is
//     `stuck` (known).
// Without a probe, a frame that looks the same is `unchanged`, never `stuck`.
//
// StuckCheck keeps per-frame state between looks (point, fingerprint, since when unchanged, since
// when known stuck), so a daemon can look periodically and ask for a confirming probe window only
// for frames unchanged past a threshold: observe() every look, probe_request() for candidates,
// then apply_probe() with the probe's result after the look that ends its window.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "userspace/model/snapshot_model.h"
#include "userspace/process/memory_reader.h"
#include "userspace/snapshot/coroutine_index.h"

namespace asyncprobe::snapshot {

struct FoundFrame;

// Seconds on the monotonic clock (steady_clock): looks and probe windows share it.
double stuck_clock_now();

// Frame bytes fingerprinted per frame: the DWARF frame size when known, capped here (a look
// reads this much more per frame; most frames' state lives in their first few hundred bytes).
inline constexpr uint32_t kFingerprintBytes = 512;

// The fingerprint of `len` bytes (word-wise multiply-rotate: cheap enough for every frame of
// every look), shared by the one-shot check and the watch daemon's re-checks.
uint64_t fingerprint_bytes(const unsigned char* p, size_t len);

// Fills fingerprint/fingerprint_bytes of `frames` (aligned with `found`) from memory, batched.
// SnapshotTaker::take() calls it; exposed for tests.
void fingerprint_frames(std::vector<model::CoroFrame>& frames, const std::vector<FoundFrame>& found,
                        const process::ReadMemory& read, const process::ReadMemoryBatch& batch);

// ---- The probe interface (implemented by userspace/kernel/resume_probe.h; no libbpf here) ----

// One coroutine function to probe and the frames of it to count.
struct ResumeProbeFunction {
  const LoadedCatalog* loaded = nullptr;
  const symbolizer::CoroFunction* fn = nullptr;
  std::vector<uint64_t> frames;  // candidate frame addresses (absolute), ascending
};

struct ResumeProbeRequest {
  int pid = 0;
  std::vector<ResumeProbeFunction> functions;
  // Hits of one function (every resume/destroy of any of its frames) past which it is detached
  // before the window ends: bounds what the probe costs a busy target. This default is for
  // resident users (watch, top), which probe again every interval; a one-shot window uses
  // one_shot_hot_budget().
  uint64_t hot_budget = 20000;
};

// A one-shot window (snapshot --window) keeps a function probed while it is entered up to
// kOneShotHitsPerSecond times a second of window: a busy server's connection handler (an Asio
// echo at tens of thousands of resumes a second) stays probed, so its idle connections are known
// stuck rather than left unchanged. At the measured 0.47 us per hit (docs/BENCHMARKS.md) that is
// at most ~94 ms of the target's CPU per second of window per probed function (a tenth of a
// core), paid once. An idle machine runs Asio's echo example at ~100,000 entries a second into
// echo()'s resume function with three busy clients; a function hotter than the budget is detached
// and its idle frames stay `unchanged` (a hardware write watchpoint on a frame's suspend index
// would confirm them at no cost per resume: not built).
inline constexpr uint64_t kOneShotHitsPerSecond = 200000;
uint64_t one_shot_hot_budget(double window_s);

struct ResumeProbeFunctionResult {
  bool attached = false;
  bool hot = false;              // detached early; covered_until_s says when
  uint64_t hits = 0;             // all entries of the function seen while attached
  double attached_at_s = 0.0;    // stuck_clock_now() once its probe was live
  double covered_until_s = 0.0;  // when its probe was detached (hot) or the window ended
};

struct ResumeProbeResult {
  std::vector<ResumeProbeFunctionResult> functions;  // aligned with the request's
  std::unordered_map<uint64_t, uint64_t> entries;    // candidate frame -> resumes + destroys
  double started_at_s = 0.0;                         // every probe live from here
  double ended_at_s = 0.0;  // the window's end: the first detach began here
  double attach_s = 0.0;    // loading + attaching
  double detach_s = 0.0;
  uint64_t hits = 0;  // all functions
  std::vector<std::string> warnings;
};

// A probe window in progress.
class ResumeProbeSession {
 public:
  virtual ~ResumeProbeSession() = default;
  // Detaches the functions whose hits passed the budget. Call every few tens of ms.
  virtual void check_budget() = 0;
  // The counts so far; the probes stay attached (a daemon reads at every look and keeps one
  // window open across looks, so the covered stretch has no gaps). ended_at_s = now.
  virtual ResumeProbeResult read() = 0;
  // Ends the window now: reads the counts, detaches everything.
  virtual ResumeProbeResult finish() = 0;
};

class ResumeProber {
 public:
  virtual ~ResumeProber() = default;
  // Attaches the probes. nullptr with a one-line reason when probing is not possible here (no
  // privileges, no BPF, the kernel refuses); the caller then reports `unchanged`.
  virtual std::unique_ptr<ResumeProbeSession> start(const ResumeProbeRequest& request,
                                                    std::string* why_not) = 0;
};

// Sleeps until `until_s` (stuck_clock_now() scale), calling check_budget() every poll_s.
void wait_probe_window(ResumeProbeSession& session, double until_s, double poll_s = 0.02);

// ---- Per-frame state across looks ----

struct FrameTrack {
  uint64_t address = 0;
  uint64_t resume_fn = 0;
  uint64_t destroy_fn = 0;
  model::FrameState state = model::FrameState::kUnknown;
  int64_t index = -1;
  uint64_t fingerprint = 0;
  uint32_t fingerprint_bytes = 0;
  double unchanged_since_s = 0.0;  // first look that saw it exactly as it is now
  // First look that saw the same frame at the same suspend point (its bytes may have changed
  // since: state that lives in the frame, e.g. a chat room, changes without a resume).
  double point_since_s = 0.0;
  double stuck_since_s = -1.0;  // start of the probe-covered stretch without a resume, or -1
  double stuck_until_s = -1.0;  // end of that stretch
};

class StuckCheck {
 public:
  // One look taken at `at_s`. Compares every frame of `snap` with what was kept about its
  // address and sets its stuck fields from memory evidence (never stuck = true: a frame that
  // looks the same is `unchanged` until a probe says more); keeps `snap`'s frames as the state.
  // The first look marks nothing (kNotChecked). Sets snap.window_seconds to the time since the
  // previous look (0 on the first).
  void observe(model::Snapshot& snap, double at_s);
  // The frames of the last observed look that have looked unchanged for at least
  // `min_unchanged_s` (0: every frame of the look, the CLI's one-window case), grouped by
  // function, for a probe window that starts now.
  ResumeProbeRequest probe_request(const model::Snapshot& snap, const CoroutineIndex& index,
                                   double min_unchanged_s) const;
  // After the look that ends a probe window (observe() first): frames that looked unchanged
  // since before the window began get `resumes`, and become `stuck` (kResumeProbe) when their
  // function's probe covered the whole window with 0 entries for them, kResumed when entries
  // were seen, kUnchangedProbeHot / kUnchangedProbeMissed otherwise. Back-to-back windows
  // extend stuck_for_s; a gap between windows restarts it. Fills snap.stuck_probe.
  void apply_probe(const ResumeProbeRequest& request, const ResumeProbeResult& result,
                   model::Snapshot& snap);
  // Records that no probe ran for the last look (why: "--no-probe", the prober's reason).
  void note_no_probe(model::Snapshot& snap, const std::string& why) const;
  const std::unordered_map<uint64_t, FrameTrack>& tracks() const { return tracks_; }

 private:
  std::unordered_map<uint64_t, FrameTrack> tracks_;
  double last_look_s_ = -1.0;
};

class SnapshotTaker;
struct SnapshotError;

// The one-window check `asyncprobe -p PID --window W` makes: a look, a probe window of W on the
// functions of every frame of that look (when `prober` is given and can start), a second look
// at the window's end, the counts. Without a prober (or when it cannot start: its reason, else
// `no_probe_why`, goes to snap.stuck_probe.note) frames that look the same are `unchanged`.
// `out` is the second look, marked; `first_out`, when given, gets the first look (the diagnoses
// compare both). false with `error` when a look fails.
bool take_with_stuck_check(SnapshotTaker& taker, double window_s, ResumeProber* prober,
                           const std::string& no_probe_why, model::Snapshot* out,
                           SnapshotError* error, model::Snapshot* first_out = nullptr);

}  // namespace asyncprobe::snapshot
