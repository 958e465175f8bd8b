#include "userspace/watch/discovery.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cctype>

#include "userspace/process/process_maps.h"
#include "userspace/process/target_process.h"

namespace asyncprobe::watch {

std::string container_id_from_cgroup(const std::string& text) {
  std::string found;
  size_t run = 0;
  for (size_t i = 0; i <= text.size(); ++i) {
    const char c = i < text.size() ? text[i] : '\n';
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    if (hex) {
      ++run;
      continue;
    }
    // A run of exactly 64 that sits between separators of a path component.
    if (run == 64) {
      const size_t start = i - 64;
      const char before = start > 0 ? text[start - 1] : '/';
      if ((before == '/' || before == '-') && (c == '\n' || c == '/' || c == '.')) {
        found = text.substr(start, 64);
      }
    }
    run = 0;
  }
  return found;
}

std::string container_id_of(int pid) {
  std::string text;
  const std::string path = "/proc/" + std::to_string(pid) + "/cgroup";
  if (process::read_file_at(AT_FDCWD, path.c_str(), size_t{64} * 1024, &text) != 0) return "";
  return container_id_from_cgroup(text);
}

std::string comm_of(int pid) {
  std::string text;
  const std::string path = "/proc/" + std::to_string(pid) + "/comm";
  if (process::read_file_at(AT_FDCWD, path.c_str(), 256, &text) != 0) return "";
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

uint64_t start_time_of(int pid) {
  std::string text;
  const std::string path = "/proc/" + std::to_string(pid) + "/stat";
  if (process::read_file_at(AT_FDCWD, path.c_str(), 4096, &text) != 0) return 0;
  auto st = process::parse_proc_stat(text);
  if (!st || (st->flags & process::kPfKthread) != 0 || st->state == 'Z') return 0;
  return st->start_time;
}

namespace {

uint64_t exe_inode(int pid) {
  struct stat sb;
  const std::string path = "/proc/" + std::to_string(pid) + "/exe";
  return ::stat(path.c_str(), &sb) == 0 ? static_cast<uint64_t>(sb.st_ino) : 0;
}

}  // namespace

std::set<std::pair<uint64_t, uint64_t>> ProcessSweep::exec_objects(int pid) const {
  std::set<std::pair<uint64_t, uint64_t>> out;
  process::MapsParseResult maps;
  if (process::read_maps_file("/proc/" + std::to_string(pid) + "/maps", &maps) != 0) return out;
  for (const process::Mapping& m : maps.mappings) {
    if (m.perms.exec && m.file_backed()) {
      out.emplace(makedev(m.dev_major, m.dev_minor), m.inode);
    }
  }
  return out;
}

std::vector<int> ProcessSweep::candidates(const std::set<std::pair<int, uint64_t>>& watched) {
  std::vector<int> out;
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return out;
  std::set<std::pair<int, uint64_t>> alive;
  std::map<int, uint64_t> starts;
  while (dirent* d = readdir(dir)) {
    if (!std::isdigit(static_cast<unsigned char>(d->d_name[0]))) continue;
    const int pid = std::atoi(d->d_name);
    if (pid <= 0 || pid == self_) continue;
    const uint64_t start = start_time_of(pid);
    if (start == 0) continue;
    const auto id = std::make_pair(pid, start);
    if (watched.count(id) > 0) continue;
    auto ex = excluded_.find(id);
    if (ex != excluded_.end() && ex->second == exe_inode(pid)) {
      alive.insert(id);
      continue;
    }
    const auto objects = exec_objects(pid);
    bool all_barren = !objects.empty();
    for (const auto& o : objects) all_barren = all_barren && barren_objects_.count(o) > 0;
    if (all_barren) {
      excluded_[id] = exe_inode(pid);
      alive.insert(id);
      continue;
    }
    out.push_back(pid);
    starts[pid] = start;
  }
  closedir(dir);
  // Newest first: a process that just started is the likeliest news, and a sweep may stop early.
  std::sort(out.begin(), out.end(), [&](int a, int b) { return starts[a] > starts[b]; });
  // Forget exclusions of processes that are gone, so the set stays as large as the host's.
  for (auto it = excluded_.begin(); it != excluded_.end();) {
    it = alive.count(it->first) > 0 ? std::next(it) : excluded_.erase(it);
  }
  return out;
}

void ProcessSweep::exclude_no_coroutines(int pid) {
  for (const auto& o : exec_objects(pid)) barren_objects_.insert(o);
  exclude(pid);
}

void ProcessSweep::exclude(int pid) {
  const uint64_t start = start_time_of(pid);
  if (start != 0) excluded_[{pid, start}] = exe_inode(pid);
}

}  // namespace asyncprobe::watch
