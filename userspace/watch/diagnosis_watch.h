// The diagnoses (userspace/diagnose: orphaned, await_cycle, thread_deadlock, lock_owner_gone,
// failed) as a watched process's events and gauges. Each full rescan is one look; the diagnosis
// engine runs on it. A diagnosis that could be a moment's state or a torn read (everything but
// `failed`) is reported once two successive rescans both show it, as `--window` wants two looks;
// `failed` is a fact (a promise holds an exception) and is reported at once. Each diagnosis is an
// episode: one event when it appears, an update when its count changes by a factor of two, and
// nothing while it stays. Failed coroutines are grouped by exception type and message; a group's
// event counts how many of its frames were first seen within the last `failed_window_s` (the
// "10 related failures in the last 5 minutes"), and a group that gains new failures is reported
// again at most once per window.
#pragma once

#include <cstddef>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "userspace/model/snapshot_model.h"
#include "userspace/watch/event.h"

namespace asyncprobe::watch {

// Gauges for the metrics page, from the diagnoses reported (stable) at the last rescan.
struct DiagnosisGauges {
  size_t orphaned_coroutines = 0;
  size_t await_cycles = 0;
  size_t thread_deadlocks = 0;
  size_t lock_owner_gone = 0;
  std::map<std::string, size_t> failed_by_type;  // failed coroutines by exception type
};

class DiagnosisWatch {
 public:
  explicit DiagnosisWatch(double failed_window_s) : failed_window_s_(failed_window_s) {}
  // One rescan's look, already diagnosed (snap.diagnoses filled). Appends events whose kind,
  // diagnosis fields and counts are filled; the caller fills time, pid, command and container.
  void update(const model::Snapshot& snap, double now, std::vector<Event>* events);
  const DiagnosisGauges& gauges() const { return gauges_; }

 private:
  struct Episode {
    size_t reported = 0;       // count last reported (0: seen once, not reported yet)
    double reported_at = 0.0;  // when last reported
    bool seen_now = false;
  };
  struct FailedFrame {
    uint64_t address, resume, destroy;
    bool operator<(const FailedFrame& o) const {
      return std::tie(address, resume, destroy) < std::tie(o.address, o.resume, o.destroy);
    }
  };
  Event describe(const model::Snapshot& snap, const model::Diagnosis& d, size_t* count) const;
  size_t note_failed(const model::Snapshot& snap, const model::Diagnosis& d, double now,
                     double since, Event* e);

  double failed_window_s_;
  std::map<std::string, Episode> episodes_;  // by diagnosis key (kind and what it names)
  std::map<FailedFrame, double> failed_first_seen_;
  DiagnosisGauges gauges_;
};

}  // namespace asyncprobe::watch
