// Host-wide discovery for `watch --all`: a /proc sweep that names the processes worth attaching
// to (new pids, not already watched, not known to hold no coroutine code), and the identity
// facts events carry: the process start time (so a reused pid is a new process) and the
// container id from /proc/PID/cgroup.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace asyncprobe::watch {

// The container id in a /proc/PID/cgroup text: the last 64-hex-digit run in a path component
// ("/docker/<id>", "docker-<id>.scope", "cri-containerd-<id>.scope", "crio-<id>.scope"); empty
// when there is none (a process on the host).
std::string container_id_from_cgroup(const std::string& cgroup_text);
std::string container_id_of(int pid);

// /proc/PID/comm without its newline; empty when unreadable.
std::string comm_of(int pid);

// Field 22 of /proc/PID/stat; 0 when the process is gone or is a kernel thread.
uint64_t start_time_of(int pid);

class ProcessSweep {
 public:
  explicit ProcessSweep(int self_pid) : self_(self_pid) {}
  // Pids of user processes seen in /proc now that are not in `watched` and not excluded, newest
  // first.
  std::vector<int> candidates(const std::set<std::pair<int, uint64_t>>& watched);
  // This process holds no coroutine code: its executable objects are remembered, and a later
  // process that maps only remembered objects is not attached to at all.
  void exclude_no_coroutines(int pid);
  // Not readable (permission) or otherwise failed: not retried while it lives.
  void exclude(int pid);

 private:
  // (dev, inode) of every executable file mapping of a process; empty when unreadable.
  std::set<std::pair<uint64_t, uint64_t>> exec_objects(int pid) const;
  int self_;
  // (pid, start time) -> the executable's inode then: an exec() makes it a new candidate (a
  // child seen between fork and exec still runs its parent's program).
  std::map<std::pair<int, uint64_t>, uint64_t> excluded_;
  std::set<std::pair<uint64_t, uint64_t>> barren_objects_;  // objects known to hold no coroutines
};

}  // namespace asyncprobe::watch
