// The wait-for graph of threads blocked on locks: thread -> lock -> owner thread. Each thread
// waits on at most one lock, so every thread has at most one outgoing edge and each cycle is
// found once by a colouring walk, O(threads).
#include <algorithm>
#include <map>
#include <set>

#include "userspace/diagnose/diagnose.h"
#include "userspace/process/lock_reader.h"
#include "userspace/util/format.h"

namespace asyncprobe::diagnose {

namespace {

// The lock waits that count: in `snap`, and (with an earlier look) the same lock and owner then.
std::map<int, model::LockWait> stable_waits(const model::Snapshot& snap,
                                            const model::Snapshot* before) {
  std::map<int, model::LockWait> earlier;
  if (before != nullptr) {
    for (const model::ThreadInfo& t : before->threads) {
      if (t.lock_wait) earlier.emplace(t.tid, *t.lock_wait);
    }
  }
  std::map<int, model::LockWait> waits;
  for (const model::ThreadInfo& t : snap.threads) {
    if (!t.lock_wait) continue;
    if (before != nullptr) {
      auto it = earlier.find(t.tid);
      if (it == earlier.end() || it->second.address != t.lock_wait->address ||
          it->second.owner != t.lock_wait->owner) {
        continue;
      }
    }
    waits.emplace(t.tid, *t.lock_wait);
  }
  return waits;
}

model::Diagnosis::Lock lock_of(const model::LockWait& w, bool alive,
                               const std::map<uint64_t, std::vector<int>>& waiters) {
  model::Diagnosis::Lock l;
  l.address = w.address;
  l.type = w.type;
  l.owner = w.owner;
  l.owner_alive = alive;
  l.owner_died = w.owner_died;
  auto it = waiters.find(w.address);
  if (it != waiters.end()) l.waiters = it->second;
  return l;
}

std::string cycle_summary(const std::vector<int>& cycle,
                          const std::map<int, model::LockWait>& waits) {
  std::string s = std::to_string(cycle.size()) + " threads wait for each other's locks: ";
  for (int tid : cycle) {
    const model::LockWait& w = waits.at(tid);
    s += std::to_string(tid) + " waits for " + w.type + " " + util::hex(w.address) + " held by ";
  }
  return s + std::to_string(cycle.front());
}

// glibc answers a PI lock the kernel refused with EDEADLK (a deadlock it detected) by waiting
// forever on a zero word of the thread's own stack, with no timeout (nptl/pthread_mutex_lock.c):
// that thread names no lock any more, but it holds the PI mutex its partner waits for.
bool parked_after_pi_deadlock(const model::ThreadInfo& t) {
  const uint64_t uaddr = t.syscall_args[0];
  return t.syscall_nr == process::kSyscallFutex && !t.lock_wait && t.syscall_args[2] == 0 &&
         t.syscall_args[3] == 0 && t.sp != 0 && uaddr >= t.sp && uaddr < t.stack_hi;
}

}  // namespace

std::vector<model::Diagnosis> thread_deadlocks(const model::Snapshot& snap,
                                               const model::Snapshot* before) {
  const std::map<int, model::LockWait> waits = stable_waits(snap, before);
  std::set<int> alive;
  for (const model::ThreadInfo& t : snap.threads) alive.insert(t.tid);
  std::map<uint64_t, std::vector<int>> waiters;  // ascending tids (waits is ordered)
  for (const auto& [tid, w] : waits) waiters[w.address].push_back(tid);

  std::vector<model::Diagnosis> out;
  // Cycles: walk from each thread along its wait edge; 1 = on the current path, 2 = finished.
  std::map<int, int> colour;
  for (const auto& [start, w0] : waits) {
    (void)w0;
    if (colour[start] != 0) continue;
    std::vector<int> path;
    int at = start;
    while (waits.count(at) != 0 && colour[at] == 0) {
      colour[at] = 1;
      path.push_back(at);
      at = waits.at(at).owner;
    }
    if (waits.count(at) != 0 && colour[at] == 1) {
      auto first = std::find(path.begin(), path.end(), at);
      std::vector<int> cycle(first, path.end());
      // Start at the lowest tid so the same deadlock always reads the same way.
      std::rotate(cycle.begin(), std::min_element(cycle.begin(), cycle.end()), cycle.end());
      model::Diagnosis d;
      d.kind = model::Diagnosis::Kind::kThreadDeadlock;
      d.threads = cycle;
      for (int tid : cycle) d.locks.push_back(lock_of(waits.at(tid), true, waiters));
      d.summary = cycle_summary(cycle, waits);
      out.push_back(std::move(d));
    }
    for (int t : path) colour[t] = 2;
  }
  // PI deadlocks the kernel refused: the owner is parked forever, its partner waits on it.
  std::map<int, std::vector<int>> parked_owner;
  for (const model::ThreadInfo& t : snap.threads) {
    if (!parked_after_pi_deadlock(t)) continue;
    for (const auto& [tid, w] : waits) {
      if (w.owner == t.tid && w.type == "pthread_mutex_pi") parked_owner[t.tid].push_back(tid);
    }
  }
  for (const auto& [owner, partners] : parked_owner) {
    model::Diagnosis d;
    d.kind = model::Diagnosis::Kind::kThreadDeadlock;
    d.threads.push_back(owner);
    d.threads.insert(d.threads.end(), partners.begin(), partners.end());
    std::set<uint64_t> seen;
    for (int p : partners) {
      if (seen.insert(waits.at(p).address).second)
        d.locks.push_back(lock_of(waits.at(p), true, waiters));
    }
    d.summary = "thread " + std::to_string(owner) + " holds " + d.locks.front().type + " " +
                util::hex(d.locks.front().address) + " that thread " +
                std::to_string(partners.front()) +
                " waits for, and is parked forever by glibc after the kernel refused its own PI "
                "lock as a deadlock (EDEADLK)";
    out.push_back(std::move(d));
  }
  // Locks held by a thread that is gone, or marked OWNER_DIED by the kernel: one per lock.
  std::set<uint64_t> reported;
  for (const auto& [tid, w] : waits) {
    const bool gone = alive.count(w.owner) == 0;
    if ((!gone && !w.owner_died) || !reported.insert(w.address).second) continue;
    model::Diagnosis d;
    d.kind = model::Diagnosis::Kind::kLockOwnerGone;
    d.locks.push_back(lock_of(w, !gone, waiters));
    d.threads = d.locks.back().waiters;
    std::string who = d.threads.size() == 1 ? "thread " + std::to_string(d.threads.front())
                                            : std::to_string(d.threads.size()) + " threads";
    d.summary =
        who + " wait" + (d.threads.size() == 1 ? "s" : "") + " for " + w.type + " " +
        util::hex(w.address) + " whose owner, thread " + std::to_string(w.owner) +
        (gone ? ", is gone (it exited holding the lock)" : ", died holding it (FUTEX_OWNER_DIED)");
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace asyncprobe::diagnose
