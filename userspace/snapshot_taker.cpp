#include "userspace/snapshot_taker.h"

#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "userspace/awaiter_stitcher.h"
#include "userspace/frame_scanner.h"

namespace asyncprobe {

namespace {

struct MapLine {
  uint64_t start = 0, end = 0, offset = 0;
  std::string perms;
  uint64_t inode = 0;
  std::string path;
};

std::vector<MapLine> read_maps(int pid) {
  std::vector<MapLine> out;
  std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
  std::string line;
  while (std::getline(in, line) && out.size() < 1'000'000) {
    MapLine m;
    char perms[8] = {};
    unsigned long long s = 0, e = 0, off = 0, ino = 0;
    int path_at = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx %7s %llx %*s %llu %n", &s, &e, perms, &off, &ino,
                    &path_at) < 5) {
      continue;
    }
    m.start = s;
    m.end = e;
    m.perms = perms;
    m.offset = off;
    m.inode = ino;
    if (path_at > 0 && static_cast<size_t>(path_at) <= line.size()) m.path = line.substr(path_at);
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace

struct SnapshotTaker::Impl {
  SnapshotSession session;
  std::unique_ptr<sym::ModuleCache> modules;
  CoroutineIndex index;
  std::vector<std::string> warnings;
  std::string comm, exe;

  bool read(uint64_t addr, void* out, size_t len) const {
    struct iovec local {
      out, len
    };
    struct iovec remote {
      reinterpret_cast<void*>(addr), len
    };
    ssize_t n = process_vm_readv(session.pid, &local, 1, &remote, 1, 0);
    return n == static_cast<ssize_t>(len);
  }
};

SnapshotTaker::SnapshotTaker(SnapshotSession session) : impl_(std::make_unique<Impl>()) {
  impl_->session = std::move(session);
}

SnapshotTaker::~SnapshotTaker() = default;

bool SnapshotTaker::attach(SnapshotError* error) {
  Impl& s = *impl_;
  const std::string proc = "/proc/" + std::to_string(s.session.pid);
  sym::DebugSearchPaths paths;
  paths.sysroot = proc + "/root";
  for (const auto& d : s.session.debug_dirs) paths.debug_roots.insert(paths.debug_roots.begin(), d);
  s.modules = std::make_unique<sym::ModuleCache>(paths);
  {
    std::ifstream c(proc + "/comm");
    std::getline(c, s.comm);
    char buf[4096];
    ssize_t n = readlink((proc + "/exe").c_str(), buf, sizeof buf - 1);
    if (n > 0) s.exe.assign(buf, static_cast<size_t>(n));
  }
  // One module per mapped ELF file with executable code; bias from the mapping of offset 0.
  std::map<std::string, std::vector<MapLine>> by_path;
  for (auto& m : read_maps(s.session.pid)) {
    if (m.inode == 0 || m.path.empty() || m.path[0] != '/') continue;
    by_path[m.path].push_back(m);
  }
  size_t objects = 0;
  for (auto& [path, maps] : by_path) {
    bool exec = false;
    for (auto& m : maps) exec |= m.perms.find('x') != std::string::npos;
    if (!exec) continue;
    const MapLine& first = maps.front();
    char range[64];
    std::snprintf(range, sizeof range, "%llx-%llx", static_cast<unsigned long long>(first.start),
                  static_cast<unsigned long long>(first.end));
    std::string open_path = proc + "/map_files/" + range;
    std::string err;
    auto module = s.modules->get(open_path, path, &err);
    if (module == nullptr) {
      std::string target_side = paths.sysroot + (path.size() > 10 && path.substr(path.size() - 10) == " (deleted)"
                                                     ? path.substr(0, path.size() - 10)
                                                     : path);
      module = s.modules->get(target_side, path, &err);
    }
    if (module == nullptr) continue;
    ++objects;
    auto catalog = std::make_shared<sym::CoroCatalog>(module);
    if (catalog->functions().empty()) {
      // System libraries ship stripped and hold no coroutines of the user's; warn about the
      // executable and the application's own libraries only.
      bool system_lib = path.rfind("/usr/lib", 0) == 0 || path.rfind("/lib", 0) == 0;
      if (!module->has_symtab() && module->dwarf() == nullptr && (!system_lib || path == s.exe)) {
        s.warnings.push_back(path + ": no symbol table and no debug file found; coroutines in it "
                             "cannot be recognised: install its debug file or pass --debug-dir");
      }
      continue;
    }
    // Load bias: the mapping of the lowest file offset belongs to the segment with that offset.
    uint64_t bias = 0;
    bool have_bias = false;
    for (const auto& seg : module->object().load_segments()) {
      for (const auto& m : maps) {
        uint64_t seg_page = seg.offset & ~uint64_t{0xfff};
        if (m.offset == seg_page) {
          bias = m.start - (seg.vaddr & ~uint64_t{0xfff});
          have_bias = true;
          break;
        }
      }
      if (have_bias) break;
    }
    if (!have_bias) continue;
    if (module->dwarf() == nullptr) {
      s.warnings.push_back(path + ": no DWARF debug info: functions are named but suspend lines "
                           "are unknown (build with -g or install its debug file)");
    }
    s.index.add(LoadedCatalog{catalog, bias, path});
  }
  if (s.index.empty()) {
    error->code = kExitNoCoroutines;
    error->message = "pid " + std::to_string(s.session.pid) + " (" + s.comm +
                     "): no coroutine code found in its " + std::to_string(objects) +
                     " mapped objects";
    return false;
  }
  return true;
}

const CoroutineIndex& SnapshotTaker::index() const { return impl_->index; }

bool SnapshotTaker::take(Snapshot* out, SnapshotError* error) {
  Impl& s = *impl_;
  (void)error;
  auto t0 = std::chrono::steady_clock::now();
  out->pid = s.session.pid;
  out->command = s.comm;
  out->executable = s.exe;
  out->warnings = s.warnings;
  std::vector<ScanRegion> regions;
  for (auto& m : read_maps(s.session.pid)) {
    if (m.perms.size() < 2 || m.perms[0] != 'r' || m.perms[1] != 'w') continue;
    if (m.path == "[vvar]" || m.path == "[vsyscall]" || m.path == "[vdso]") continue;
    regions.push_back({m.start, m.end, m.path == "[stack]"});
  }
  ReadMemory reader = [&s](uint64_t addr, void* buf, size_t len) { return s.read(addr, buf, len); };
  FrameScanner scanner(s.index, reader);
  ScanStats stats;
  std::vector<FoundFrame> found = scanner.scan(regions, &stats);
  // Boost.Asio recycles frame memory without clearing it: a finished or undecodable frame with
  // Asio's promise signature (coro_ == the frame itself) is a dead frame in the recycler.
  size_t recycled = 0;
  std::vector<FoundFrame> live;
  live.reserve(found.size());
  out->frames.clear();
  out->frames.reserve(found.size());
  for (const auto& f : found) {
    CoroFrame frame = decode_frame(f);
    uint64_t first_promise_word = 0;
    if (frame.state != FrameState::kSuspended &&
        reader(f.address + f.ref.fn->promise_offset, &first_promise_word, 8) &&
        first_promise_word == f.address) {
      ++recycled;
      continue;
    }
    live.push_back(f);
    out->frames.push_back(std::move(frame));
  }
  found.swap(live);
  if (recycled > 0) {
    out->warnings.push_back(std::to_string(recycled) +
                            " finished Boost.Asio frames held for reuse by its frame recycler "
                            "were left out");
  }
  stitch_awaiters(out->frames, found, reader);
  out->bytes_scanned = stats.bytes_scanned;
  out->scan_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (stats.torn > 0) {
    out->warnings.push_back(std::to_string(stats.torn) +
                            " frames changed while being read and were left out");
  }
  return true;
}

}  // namespace asyncprobe
