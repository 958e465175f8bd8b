// One watched process: attached once (modules, catalogs, coroutine index kept), then ticked.
// A tick either re-checks the frames already known (header, suspend index and a fingerprint of
// their bytes, read as merged spans in a handful of syscalls; frames long settled in their
// verdict only every kSettledRounds ticks, a block of them per tick) or, when due, rescans the
// whole process for new frames. Rescans are budgeted: they run at most every --stuck-threshold and
// no more often than their measured CPU cost allows (WatchSettings::rescan_cpu_share of one core).
// Frames whose header, index and content (a fingerprint of the frame's bytes: locals, promise)
// stay the same past the threshold form episodes per suspend point (see below for stuck).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "userspace/model/snapshot_model.h"
#include "userspace/snapshot/coroutine_index.h"
#include "userspace/snapshot/snapshot_taker.h"
#include "userspace/snapshot/stuck_check.h"
#include "userspace/watch/diagnosis_watch.h"
#include "userspace/watch/event.h"

namespace asyncprobe::watch {

// Frames unchanged for (threshold - interval) get a confirming resume probe (the stuck check's
// ResumeProber: a uprobe window on their functions) lasting one interval; a frame the probe saw
// not resumed while its memory stayed unchanged is `stuck`, one it saw resumed is busy (its clock
// restarts), and without a probe (no privileges, --no-probe, a function too hot to probe) it is
// `unchanged`. Never "the same suspend point seen twice".
// Time is snapshot::stuck_clock_now() seconds throughout.
struct WatchSettings {
  double interval_s = 1.0;
  double stuck_threshold_s = 5.0;
  double rescan_cpu_share = 0.005;       // full rescans may use this share of one core
  size_t max_point_series = 100;         // per process; the rest are summed into function="other"
  double recovered_retention_s = 300.0;  // a recovered point's series stays (at 0) this long
  double failed_window_s = 300.0;        // failed coroutines are counted per window this long
  std::vector<std::string> debug_dirs;
};

// What a tick did, for the daemon's own metrics.
struct TickReport {
  bool rescan = false;
  double cpu_seconds = 0.0;
  std::string error_reason;  // empty when the tick read what it meant to
};

// A point's current count, for the metrics page.
struct PointGauge {
  PointKey key;
  size_t count = 0;
  bool confirmed = false;  // stuck (probe-confirmed) rather than unchanged
};

class ProcessWatch {
 public:
  // `prober` may be null: no confirming probes, only `unchanged`.
  // `catalogs` is shared by every process the daemon watches (null: a private cache).
  ProcessWatch(int pid, const WatchSettings& settings, snapshot::ResumeProber* prober,
               std::shared_ptr<symbolizer::CatalogCache> catalogs = nullptr);
  ~ProcessWatch();

  // Attaches and takes the first full scan. On success emits `attached`; on failure fills
  // `error` (the snapshot's exit code and message) and emits nothing.
  bool attach(std::vector<Event>* events, snapshot::SnapshotError* error);
  // One tick at steady time `now`. false once the process is gone (a `detached` event was
  // emitted, after `recovered` for nothing: open episodes simply end with the process).
  bool tick(double now, std::vector<Event>* events, TickReport* report);

  // Between ticks while a probe window is open: detaches the functions past their hit budget.
  // A hot function costs the target a trap per resume until then, so the daemon calls this every
  // few tens of ms (kProbePollSeconds), not once per tick. false when no window is open.
  bool poll_probe();

  int pid() const { return pid_; }
  const std::string& command() const { return command_; }
  const std::string& container() const { return container_; }
  // Tracked frames by state: suspended, done, unknown.
  std::map<std::string, size_t> state_counts() const;
  // Current episode counts, plus recovered points (count 0) still within retention.
  std::vector<PointGauge> point_gauges(double now) const;
  double rescan_period_s() const { return rescan_period_s_; }
  // The diagnoses reported at the last rescan.
  const DiagnosisGauges& diagnosis_gauges() const { return diagnoses_.gauges(); }

 private:
  // The fields every per-tick pass reads come first: one cache line per track for those passes
  // (100k tracks are 12 MiB; the passes over them were most of the daemon's steady CPU).
  struct FrameTrack {
    uint64_t address = 0;
    double since = 0.0;        // steady time this header, index and content were first seen
    uint32_t content_len = 0;  // bytes of the frame fingerprinted (header included)
    uint32_t point = 0;        // into points_
    model::FrameState state = model::FrameState::kUnknown;
    bool content_known = false;
    bool in_probe = false;  // in the open probe window's request
    bool encloses = false;  // awaits another frame: its stack waits further in
    snapshot::CoroutineRef ref;
    uint64_t content = 0;  // the fingerprint; a change means the coroutine ran
    uint64_t resume = 0;
    uint64_t destroy = 0;
    int64_t index = -1;
    double confirmed_at = -1.0;  // end of the last probe window that saw it not resumed
    double hot_at = -1.0;        // last probe window that could not cover its function
    uint32_t confirmations = 0;  // windows in a row that saw it not resumed (this stretch)
  };
  struct ProbeWindow {
    std::unique_ptr<snapshot::ResumeProbeSession> session;
    snapshot::ResumeProbeRequest request;
    double started = 0.0;
  };
  struct PointInfo {
    PointKey key;
    std::vector<StackFrame> stack;  // root first, from the last rescan that saw the point
  };
  struct Episode {
    EventKind kind = EventKind::kUnchanged;
    size_t reported_count = 0;
    size_t current_count = 0;
    double longest_s = 0.0;
    std::string evidence;
  };

  bool rescan(double now, std::vector<Event>* events, std::string* error_reason, bool* gone);
  void track_frames(const model::Snapshot& snap, double now);
  // One read of target memory covering several frames; offset is its place in the buffer.
  struct ReadSpan {
    uint64_t start, end;
    size_t offset;
  };
  bool recheck(double now, bool* gone);
  static uint64_t read_end(const FrameTrack& t);
  std::vector<ReadSpan> plan_reads(const std::vector<size_t>& due) const;
  bool settled(const FrameTrack& t, double now) const;
  bool read_and_refresh(const std::vector<size_t>& due, double now, std::vector<char>& keep,
                        std::vector<char>* settled_before);
  bool refresh_track(FrameTrack& t, const unsigned char* at, double now);
  void update_episodes(double now, std::vector<Event>* events);
  void finish_probe(double now);
  void start_probe(double now);
  double reprobe_after(const FrameTrack& t) const;
  double probe_ripe_s() const;
  void purge_recovered(double now);
  FrameTrack* find_track(uint64_t address);
  uint32_t point_of(const model::CoroFrame& frame);
  Event base_event(EventKind kind) const;

  int pid_;
  const WatchSettings& settings_;
  snapshot::ResumeProber* prober_;
  std::shared_ptr<symbolizer::CatalogCache> catalogs_;
  std::optional<ProbeWindow> probe_;
  std::string no_probe_why_;  // why the last probe could not start ("" if it did)
  double next_probe_try_ = 0.0;
  std::unique_ptr<snapshot::SnapshotTaker> taker_;
  std::string command_;
  std::string container_;
  std::vector<FrameTrack> tracks_;  // sorted by address
  std::vector<PointInfo> points_;
  std::map<PointKey, uint32_t> point_ids_;
  std::map<PointKey, Episode> episodes_;
  struct Recovered {
    double at = 0.0;
    bool confirmed = false;
  };
  std::map<PointKey, Recovered> recovered_at_;
  DiagnosisWatch diagnoses_;
  uint64_t recheck_round_ = 0;
  bool any_unreadable_ = false;  // a piece of the last recheck could not be read
  // Work skipped while nothing can have changed: update_episodes until a track changes or a
  // frame crosses the threshold (next_crossing_), start_probe until next_probe_at_.
  bool episodes_dirty_ = true;
  double next_crossing_ = 0.0;
  double next_probe_at_ = 0.0;
  std::vector<unsigned char> recheck_buf_;  // kept between ticks: no 10 MiB allocation each
  double next_rescan_ = 0.0;
  double rescan_period_s_ = 0.0;
};

}  // namespace asyncprobe::watch
