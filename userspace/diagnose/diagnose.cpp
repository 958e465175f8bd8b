#include "userspace/diagnose/diagnose.h"

#include <algorithm>
#include <set>

#include "userspace/process/stack_unwind.h"

namespace asyncprobe::diagnose {

namespace {

constexpr size_t kMaxStackBytes = 256 * 1024;  // of a blocked thread's stack, from sp up
constexpr size_t kMaxNativeFrames = 32;

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

void add_native_stacks(model::Snapshot& snap, int pid, const std::vector<std::string>& debug_dirs,
                       const process::ReadMemory& read) {
  std::set<int> wanted;
  for (const model::Diagnosis& d : snap.diagnoses)
    wanted.insert(d.threads.begin(), d.threads.end());
  if (wanted.empty() || !read) return;
  process::TraceUnwinder unwinder(pid, debug_dirs);
  if (!unwinder.ok()) return;
  for (model::ThreadInfo& t : snap.threads) {
    if (wanted.count(t.tid) == 0 || t.sp == 0 || t.pc == 0) continue;
    size_t len = kMaxStackBytes;
    if (t.stack_hi > t.sp) len = std::min<uint64_t>(len, t.stack_hi - t.sp);
    std::vector<uint8_t> bytes(len);
    // A shorter stack than asked for: halve until a read succeeds (the mapping may end early).
    while (len >= 4096 && !read(t.sp, bytes.data(), len)) len /= 2;
    if (len < 4096) continue;
    uint64_t regs[17] = {};
    regs[7] = t.sp;   // rsp
    regs[16] = t.pc;  // rip
    t.native_stack.clear();
    for (const process::UnwoundFrame& f :
         unwinder.unwind(regs, t.sp, bytes.data(), len, kMaxNativeFrames)) {
      model::NativeFrame nf;
      nf.pc = f.pc;
      if (!f.functions.empty()) {
        nf.function = f.functions.front().function;
        nf.file = f.functions.front().location.file;
        nf.line = f.functions.front().location.line;
      }
      t.native_stack.push_back(std::move(nf));
    }
  }
}

}  // namespace asyncprobe::diagnose
