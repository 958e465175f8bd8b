#include "userspace/diagnose/diagnose.h"

#include <algorithm>
#include <set>

namespace asyncprobe::diagnose {

namespace {

void add_limits(model::Snapshot& snap, const model::Snapshot* before) {
  std::vector<std::string>& l = snap.diagnosis_limits;
  if (before == nullptr) {
    l.push_back(
        "one look only (--window 0): a lock wait or await cycle seen once may be a moment's "
        "state or a torn read; take a window to confirm it");
  }
  l.push_back(
      "orphans: a pointer kept only in kernel memory (io_uring user_data, epoll_event.data) or "
      "in a tagged/compressed form makes a live coroutine look orphaned; a stale pointer in freed "
      "memory hides an orphan; running threads' registers are not read");
  if (snap.maps_io_uring) {
    l.push_back(
        "this process maps io_uring rings: coroutines waiting on io_uring completions are "
        "referenced from kernel memory we cannot read, so an orphaned diagnosis here is a "
        "suspicion, not a proof");
  }
  if (snap.orphan_unknown_extent > 0) {
    l.push_back(std::to_string(snap.orphan_unknown_extent) +
                " suspended coroutines have no known frame extent (not in a glibc malloc chunk, no "
                "DWARF size) and were not judged for orphaning");
  }
  l.push_back(
      "locks: glibc pthread_mutex_t (std::mutex), PI/robust mutexes and write-locked "
      "pthread_rwlock_t are read; read-locked rwlocks, semaphores and other futex users are not "
      "(condition variables are not locks)");
}

}  // namespace

void diagnose(model::Snapshot& snap, const model::Snapshot* before) {
  snap.diagnoses.clear();
  snap.diagnosis_limits.clear();
  if (before != nullptr && before->pid != snap.pid) before = nullptr;
  auto deadlocks = thread_deadlocks(snap, before);
  snap.diagnoses.insert(snap.diagnoses.end(), deadlocks.begin(), deadlocks.end());
  auto cycles = await_cycles(snap, before);
  snap.diagnoses.insert(snap.diagnoses.end(), cycles.begin(), cycles.end());
  auto orphaned = orphaned_coroutines(snap, before);
  snap.diagnoses.insert(snap.diagnoses.end(), orphaned.begin(), orphaned.end());
  auto failed = failed_coroutines(snap);
  snap.diagnoses.insert(snap.diagnoses.end(), failed.begin(), failed.end());
  add_limits(snap, before);
}

}  // namespace asyncprobe::diagnose
