#include "userspace/snapshot_taker.h"

#include <chrono>
#include <optional>

#include "userspace/awaiter_stitcher.h"
#include "userspace/frame_scanner.h"
#include "userspace/memory_reader.h"
#include "userspace/process_maps.h"
#include "userspace/target_process.h"
#include "userspace/thread_reader.h"

namespace asyncprobe {

struct SnapshotTaker::Impl {
  SnapshotSession session;
  std::optional<TargetProcess> target;
  std::unique_ptr<MemoryReader> memory;
  std::unique_ptr<sym::ModuleCache> modules;
  CoroutineIndex index;
  std::vector<std::string> warnings;
};

SnapshotTaker::SnapshotTaker(SnapshotSession session) : impl_(std::make_unique<Impl>()) {
  impl_->session = std::move(session);
}

SnapshotTaker::~SnapshotTaker() = default;

namespace {

bool fail_with(const TargetError& e, SnapshotError* error) {
  error->code = e.code();
  error->message = e.what();
  return false;
}

bool is_system_library(const std::string& path) {
  return path.rfind("/usr/lib", 0) == 0 || path.rfind("/lib", 0) == 0;
}

}  // namespace

bool SnapshotTaker::attach(SnapshotError* error) {
  Impl& s = *impl_;
  try {
    s.target.emplace(TargetProcess::open(s.session.pid));
    s.memory = std::make_unique<MemoryReader>(*s.target);
    sym::DebugSearchPaths paths;
    paths.sysroot = s.target->proc_path("root");
    for (const auto& d : s.session.debug_dirs)
      paths.debug_roots.insert(paths.debug_roots.begin(), d);
    s.modules = std::make_unique<sym::ModuleCache>(paths);

    MapsParseResult maps = s.target->read_maps();
    size_t objects = 0;
    std::vector<std::string> unnamed;
    for (const MappedObject& obj : group_objects(maps.mappings)) {
      if (!obj.has_exec() || obj.path.empty() || obj.path[0] != '/') continue;
      // The first mapping of the object is enough to open the file it maps.
      MappedFile file = s.target->open_mapped_file(obj.mappings.front());
      if (!file.fd.valid()) continue;
      std::string err;
      auto module = s.modules->get(file.path, obj.path, &err);
      if (module == nullptr) continue;
      ++objects;
      auto catalog = std::make_shared<sym::CoroCatalog>(module);
      if (catalog->functions().empty()) {
        // System libraries ship stripped and hold none of the user's coroutines; say so only for
        // the executable and the application's own libraries.
        if (!module->has_symtab() && module->dwarf() == nullptr &&
            (!is_system_library(obj.path) || obj.path == s.target->exe_path())) {
          unnamed.push_back(obj.path + (module->object().build_id().empty()
                                            ? std::string()
                                            : " (build-id " + module->object().build_id() + ")"));
        }
        continue;
      }
      std::vector<LoadSegment> loads;
      for (const auto& seg : module->object().load_segments()) {
        loads.push_back({seg.vaddr, seg.offset, seg.filesz, seg.memsz, seg.flags});
      }
      LoadBiasResult bias = compute_load_bias(obj, loads);
      if (!bias.ok) {
        s.warnings.push_back(obj.path + ": cannot place its coroutines (" + bias.error + ")");
        continue;
      }
      if (module->dwarf() == nullptr) {
        s.warnings.push_back(obj.path +
                             ": no DWARF debug info: functions are named but suspend "
                             "lines are unknown (build with -g or install its debug file)");
      }
      s.index.add(LoadedCatalog{catalog, bias.bias, obj.path});
    }
    if (s.index.empty()) {
      error->code = kExitNoCoroutines;
      error->message = "pid " + std::to_string(s.target->pid()) + " (" + s.target->comm() + "): ";
      if (!unnamed.empty()) {
        error->message += "no symbols for " + unnamed.front() +
                          ": coroutines cannot be recognised; install its debug file (by build-id "
                          "under /usr/lib/debug/.build-id, or beside it) or pass --debug-dir";
      } else {
        error->message +=
            "no coroutine code found in its " + std::to_string(objects) + " mapped objects";
      }
      return false;
    }
    for (const auto& u : unnamed) {
      s.warnings.push_back(u +
                           ": no symbols and no debug file found; coroutines in it cannot be "
                           "recognised: install its debug file or pass --debug-dir");
    }
    return true;
  } catch (const TargetError& e) {
    return fail_with(e, error);
  }
}

const CoroutineIndex& SnapshotTaker::index() const { return impl_->index; }

bool SnapshotTaker::take(Snapshot* out, SnapshotError* error) {
  Impl& s = *impl_;
  try {
    auto t0 = std::chrono::steady_clock::now();
    out->pid = s.target->pid();
    out->command = s.target->comm();
    out->executable = s.target->exe_path();
    out->warnings = s.warnings;
    MapsParseResult maps = s.target->read_maps();
    ThreadReadResult threads = read_threads(*s.target, maps.mappings);
    out->threads = threads.threads;

    // Thread stacks are scanned from the stack pointer up: below it is dead stack, full of stale
    // copies. A thread whose sp is unknown (running) gets its whole stack mapping.
    std::vector<ScanRegion> regions;
    for (const Mapping& m : scan_regions(maps.mappings)) {
      ScanRegion r{m.start, m.end, classify(m) == RegionKind::kMainStack};
      for (const ThreadInfo& t : out->threads) {
        if (t.sp >= m.start && t.sp < m.end) {
          r.is_stack = true;
          r.start = t.sp & ~uint64_t{7};
        }
      }
      regions.push_back(r);
    }
    MemoryReader& mem = *s.memory;
    ReadMemory reader = [&mem](uint64_t addr, void* buf, size_t len) {
      return mem.read(addr, buf, len);
    };
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
    if (!s.target->alive()) {
      error->code = kExitTargetExited;
      error->message = "pid " + std::to_string(out->pid) + " exited while it was being read";
      return false;
    }
    return true;
  } catch (const TargetError& e) {
    return fail_with(e, error);
  }
}

}  // namespace asyncprobe
