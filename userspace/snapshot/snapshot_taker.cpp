#include "userspace/snapshot/snapshot_taker.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <optional>

#include "symbolizer/stripped_coroutines.h"
#include "userspace/snapshot/awaiter_stitcher.h"
#include "userspace/snapshot/frame_scanner.h"
#include "userspace/process/memory_reader.h"
#include "userspace/process/preload_client.h"
#include "userspace/process/process_maps.h"
#include "userspace/process/target_process.h"
#include "userspace/process/thread_reader.h"
#include "userspace/snapshot/stuck_check.h"

namespace asyncprobe::snapshot {

// An executable or application library without symbols, searched for coroutines by code.
struct StrippedObject {
  std::shared_ptr<symbolizer::Module> module;
  uint64_t bias = 0;
  std::string path;
  std::vector<CodeRange> code;  // absolute
};

// A process started with `asyncprobe run` that we may not read directly (another user's rules:
// Yama ptrace_scope, a non-dumpable process, no CAP_SYS_PTRACE in a container): its library
// serves memory, maps and task files over its socket to its own user.
struct PreloadTarget {
  int pid = 0;
  process::PreloadSource source;
  process::UniqueFd proc_dir;  // /proc/PID stays readable: its stat tells whether the process lives on
  uint64_t start_time = 0;
};

struct SnapshotTaker::Impl {
  SnapshotSession session;
  std::optional<process::TargetProcess> target;   // direct reading
  std::optional<PreloadTarget> preload;  // or through the preload socket
  std::unique_ptr<process::MemoryReader> memory;
  process::ReadMemory read;
  process::ReadMemoryBatch batch;  // empty through the socket: pieces are read one by one
  std::unique_ptr<symbolizer::ModuleCache> modules;
  CoroutineIndex index;
  std::vector<std::string> warnings;

  int pid() const { return target ? target->pid() : preload->pid; }
  std::string comm() const { return target ? target->comm() : preload->source.comm; }
  std::string exe_path() const;
  bool alive() const;
  process::MapsParseResult read_maps() const;
  process::ThreadReadResult threads(const std::vector<process::Mapping>& maps) const;
  process::MappedFile open_object(const process::Mapping& m) const;
  bool open_preload(const process::TargetError& refused, SnapshotError* error);
};

SnapshotTaker::SnapshotTaker(SnapshotSession session) : impl_(std::make_unique<Impl>()) {
  impl_->session = std::move(session);
}

SnapshotTaker::~SnapshotTaker() = default;

namespace {

bool fail_with(const process::TargetError& e, SnapshotError* error) {
  error->code = e.code();
  error->message = e.what();
  return false;
}

// Thread stacks are scanned from the stack pointer up: below it is dead stack, full of stale
// copies. A thread whose sp is unknown (running) gets its whole stack mapping.
std::vector<ScanRegion> build_scan_regions(const std::vector<process::Mapping>& maps,
                                           const std::vector<model::ThreadInfo>& threads) {
  std::vector<ScanRegion> regions;
  for (const process::Mapping& m : process::scan_regions(maps)) {
    ScanRegion r{m.start, m.end, process::classify(m) == process::RegionKind::kMainStack};
    for (const model::ThreadInfo& t : threads) {
      if (t.sp >= m.start && t.sp < m.end) {
        r.is_stack = true;
        r.start = t.sp & ~uint64_t{7};
      }
    }
    regions.push_back(r);
  }
  return regions;
}

bool is_system_library(const std::string& path) {
  return path.rfind("/usr/lib", 0) == 0 || path.rfind("/lib", 0) == 0;
}

constexpr size_t kMaxTaskFile = 4096;

std::optional<process::ProcStat> read_stat(int dirfd) {
  std::string text;
  if (process::read_file_at(dirfd, "stat", kMaxTaskFile, &text) != 0) return std::nullopt;
  return process::parse_proc_stat(text);
}

// The thread group of a pid that may name a thread (the socket is named after the process).
int thread_group_of(int pid) {
  std::string status;
  if (process::read_file_at(AT_FDCWD, ("/proc/" + std::to_string(pid) + "/status").c_str(),
                   size_t{64} * 1024, &status) != 0) {
    return pid;
  }
  size_t p = status.find("\nTgid:");
  if (p == std::string::npos) return pid;
  long tgid = std::strtol(status.c_str() + p + 6, nullptr, 10);
  return tgid > 0 && tgid <= INT_MAX ? static_cast<int>(tgid) : pid;
}

// Opens a mapped object by its path (the /proc/PID routes need ptrace access): a regular file
// with the mapping's device and inode, else the regular file found there, flagged unverified.
process::MappedFile open_by_path(const process::Mapping& m) {
  process::MappedFile r;
  r.path = m.path;
  process::UniqueFd where(::open(m.path.c_str(), O_PATH | O_CLOEXEC));
  struct stat sb;
  if (!where.valid() || ::fstat(where.get(), &sb) != 0 || !S_ISREG(sb.st_mode)) return r;
  std::string self_fd = "/proc/self/fd/" + std::to_string(where.get());
  r.fd = process::UniqueFd(::open(self_fd.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  r.identity_verified = r.fd.valid() && static_cast<uint64_t>(sb.st_ino) == m.inode &&
                        major(sb.st_dev) == m.dev_major && minor(sb.st_dev) == m.dev_minor;
  return r;
}

}  // namespace

std::string SnapshotTaker::Impl::exe_path() const {
  if (target) return target->exe_path();
  constexpr std::string_view kDeleted = " (deleted)";
  const std::string& exe = preload->source.exe;
  if (exe.size() > kDeleted.size() &&
      exe.compare(exe.size() - kDeleted.size(), kDeleted.size(), kDeleted) == 0) {
    return exe.substr(0, exe.size() - kDeleted.size());
  }
  return exe;
}

bool SnapshotTaker::Impl::alive() const {
  if (target) return target->alive();
  auto st = read_stat(preload->proc_dir.get());
  return st && st->start_time == preload->start_time && st->state != 'Z' && st->state != 'X' &&
         st->state != 'x';
}

process::MapsParseResult SnapshotTaker::Impl::read_maps() const {
  if (target) return target->read_maps();
  std::string text;
  if (!preload->source.connection->proc_file("maps", &text) || !alive()) {
    throw process::TargetError(util::kExitTargetExited, "pid " + std::to_string(preload->pid) + " (" + comm() +
                                             ") exited while it was being read");
  }
  return process::parse_maps(text);
}

process::ThreadReadResult SnapshotTaker::Impl::threads(const std::vector<process::Mapping>& maps) const {
  if (target) return process::read_threads(*target, maps);
  process::PreloadConnection& c = *preload->source.connection;
  std::string list;
  if (!c.proc_file("tasks", &list)) {
    throw process::TargetError(util::kExitTargetExited, "pid " + std::to_string(preload->pid) +
                                             " exited while its threads were being read");
  }
  bool truncated = false;
  std::vector<int> tids = process::parse_task_list(list, {}, &truncated);
  // The library answers "not served" both for a thread that is gone and for a file the kernel
  // refuses it: a thread whose stat was served is still there.
  process::ThreadReadResult r = process::read_thread_files(
      preload->pid, std::move(tids),
      [&c](const std::string& leaf, size_t max_bytes, std::string* out) {
        if (!c.proc_file(leaf, out)) {
          return leaf.size() > 5 && leaf.compare(leaf.size() - 5, 5, "/stat") == 0 ? ENOENT
                                                                                   : EACCES;
        }
        if (out->size() > max_bytes) out->resize(max_bytes);
        return 0;
      },
      maps);
  r.truncated |= truncated;
  if (!alive()) {
    throw process::TargetError(util::kExitTargetExited, "pid " + std::to_string(preload->pid) +
                                             " exited while its threads were being read");
  }
  return r;
}

process::MappedFile SnapshotTaker::Impl::open_object(const process::Mapping& m) const {
  return target ? target->open_mapped_file(m) : open_by_path(m);
}

bool SnapshotTaker::Impl::open_preload(const process::TargetError& refused, SnapshotError* error) {
  int pid = thread_group_of(session.pid);
  std::string why;
  int code = util::kExitPermission;
  PreloadTarget p;
  p.pid = pid;
  p.proc_dir = process::UniqueFd(
      ::open(("/proc/" + std::to_string(pid)).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  auto st = p.proc_dir.valid() ? read_stat(p.proc_dir.get()) : std::nullopt;
  std::optional<process::PreloadSource> source;
  if (st) source = process::preload_source(pid, &why, &code);
  if (!source) {
    error->code = code == util::kExitTargetExited ? util::kExitTargetExited : util::kExitPermission;
    error->message = std::string(refused.what()) +
                     "; a process started with `asyncprobe run` is readable by its own user "
                     "(socket: " +
                     (st ? why : "its /proc entry is gone") + ")";
    return false;
  }
  p.source = std::move(*source);
  p.start_time = st->start_time;
  read = p.source.read;
  batch = nullptr;
  preload = std::move(p);
  return true;
}

bool SnapshotTaker::attach(SnapshotError* error) {
  Impl& s = *impl_;
  try {
    try {
      s.target.emplace(process::TargetProcess::open(s.session.pid));
      s.memory = std::make_unique<process::MemoryReader>(*s.target);
      process::MemoryReader& mem = *s.memory;
      s.read = [&mem](uint64_t addr, void* buf, size_t len) { return mem.read(addr, buf, len); };
      s.batch = [&mem](std::vector<process::ReadRequest>& pieces) {
        mem.read_batch(std::span<process::ReadRequest>(pieces));
      };
    } catch (const process::TargetError& e) {
      // Direct reading refused: a process started with `asyncprobe run` serves its own user.
      if (e.code() != util::kExitPermission) throw;
      s.target.reset();
      s.memory.reset();
      if (!s.open_preload(e, error)) return false;
    }
    symbolizer::DebugSearchPaths paths;
    // Through the socket we see the target's files by their paths: /proc/PID/root is closed.
    if (s.target) paths.sysroot = s.target->proc_path("root");
    for (const auto& d : s.session.debug_dirs)
      paths.debug_roots.insert(paths.debug_roots.begin(), d);
    s.modules = std::make_unique<symbolizer::ModuleCache>(paths);

    process::MapsParseResult maps = s.read_maps();
    size_t objects = 0;
    std::vector<StrippedObject> stripped;
    for (const process::MappedObject& obj : process::group_objects(maps.mappings)) {
      if (!obj.has_exec() || obj.path.empty() || obj.path[0] != '/') continue;
      // The first mapping of the object is enough to open the file it maps.
      process::MappedFile file = s.open_object(obj.mappings.front());
      if (!file.fd.valid()) continue;
      std::string err;
      auto module = s.modules->get(file.path, obj.path, &err);
      if (module == nullptr) continue;
      ++objects;
      std::vector<process::LoadSegment> loads;
      for (const auto& seg : module->object().load_segments()) {
        loads.push_back({seg.vaddr, seg.offset, seg.filesz, seg.memsz, seg.flags});
      }
      process::LoadBiasResult bias = process::compute_load_bias(obj, loads);
      auto catalog = std::make_shared<symbolizer::CoroCatalog>(module);
      if (catalog->functions().empty()) {
        // System libraries ship stripped and hold none of the user's coroutines; only the
        // executable and the application's own libraries are searched by code.
        if (!module->has_symtab() && module->dwarf() == nullptr && bias.ok &&
            (!is_system_library(obj.path) || obj.path == s.exe_path())) {
          StrippedObject so{module, bias.bias, obj.path, {}};
          for (const auto& seg : module->object().load_segments()) {
            if ((seg.flags & 1) != 0)
              so.code.push_back({seg.vaddr + bias.bias, seg.vaddr + seg.memsz + bias.bias});
          }
          stripped.push_back(std::move(so));
        }
        continue;
      }
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
    add_stripped_coroutines(stripped, maps.mappings);
    if (s.index.empty()) {
      error->code = util::kExitNoCoroutines;
      error->message = "pid " + std::to_string(s.pid()) + " (" + s.comm() + "): ";
      if (!stripped.empty()) {
        const auto& id = stripped.front().module->object().build_id();
        error->message +=
            "no coroutine frames recognised in " + stripped.front().path +
            ", which has no symbols: install its debug file" +
            (id.empty() ? std::string()
                        : " (build-id " + id + ", looked up as /usr/lib/debug/.build-id/" +
                              id.substr(0, 2) + "/" + id.substr(2) + ".debug)") +
            " or pass --debug-dir";
      } else {
        error->message +=
            "no coroutine code found in its " + std::to_string(objects) + " mapped objects";
      }
      return false;
    }
    return true;
  } catch (const process::TargetError& e) {
    return fail_with(e, error);
  }
}

void SnapshotTaker::add_stripped_coroutines(const std::vector<StrippedObject>& stripped,
                                            const std::vector<process::Mapping>& maps) {
  if (stripped.empty()) return;
  Impl& s = *impl_;
  std::vector<CodeRange> code;
  for (const auto& so : stripped) code.insert(code.end(), so.code.begin(), so.code.end());
  auto pairs = find_header_candidates(build_scan_regions(maps, {}), code, s.read);
  for (const auto& so : stripped) {
    symbolizer::AddressTakenIndex taken(so.module->object());
    std::map<uint64_t, symbolizer::CoroFunction> by_resume;
    for (const auto& [pair, count] : pairs) {
      (void)count;
      auto [w0, w1] = pair;
      bool mine = false;
      for (const auto& r : so.code) mine |= w1 >= r.start && w1 < r.end;
      if (!mine) continue;
      auto fn = symbolizer::recognise_stripped_coroutine(*so.module, taken, w0 == 0 ? 0 : w0 - so.bias,
                                                  w1 - so.bias);
      if (!fn) continue;
      auto [it, inserted] = by_resume.emplace(fn->resume, *fn);
      // Clang's .destroy and .cleanup are both clones after .resume, .cleanup last: a second
      // confirmed destroy word for the same resume is the .cleanup of elided frames.
      if (!inserted && it->second.compiler == symbolizer::CoroCompiler::kClang &&
          fn->destroy != it->second.destroy) {
        uint64_t lo = std::min(fn->destroy, it->second.destroy);
        uint64_t hi = std::max(fn->destroy, it->second.destroy);
        it->second.destroy = lo;
        it->second.cleanup = hi;
      }
    }
    if (by_resume.empty()) continue;
    std::vector<symbolizer::CoroFunction> fns;
    fns.reserve(by_resume.size());
    for (auto& [r, fn] : by_resume) fns.push_back(std::move(fn));
    const std::string& id = so.module->object().build_id();
    s.warnings.push_back(so.path + ": no symbols: " + std::to_string(fns.size()) +
                         " coroutine functions recognised from their code are shown by address "
                         "(no names, no lines; coroutines whose code could not be confirmed are "
                         "missing); install its debug file" +
                         (id.empty() ? std::string() : " (build-id " + id + ")") +
                         " or pass --debug-dir");
    s.index.add(LoadedCatalog{std::make_shared<symbolizer::CoroCatalog>(so.module, std::move(fns)),
                              so.bias, so.path});
  }
}

const CoroutineIndex& SnapshotTaker::index() const { return impl_->index; }

bool SnapshotTaker::take(model::Snapshot* out, SnapshotError* error) {
  Impl& s = *impl_;
  try {
    auto t0 = std::chrono::steady_clock::now();
    out->pid = s.pid();
    out->command = s.comm();
    out->executable = s.exe_path();
    out->warnings = s.warnings;
    process::MapsParseResult maps = s.read_maps();
    process::ThreadReadResult threads = s.threads(maps.mappings);
    out->threads = threads.threads;
    if (s.preload && threads.syscall_unreadable > 0) {
      out->warnings.push_back(
          std::to_string(threads.syscall_unreadable) + " of " +
          std::to_string(out->threads.size()) +
          " threads read through the asyncprobe socket have no syscall, sp or pc (the kernel "
          "shows them for a non-dumpable process to root only): their whole stacks were scanned");
    }

    std::vector<ScanRegion> regions = build_scan_regions(maps.mappings, out->threads);
    const process::ReadMemory& reader = s.read;
    const process::ReadMemoryBatch& batch = s.batch;
    FrameScanner scanner(s.index, reader, batch);
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
      model::CoroFrame frame = decode_frame(f);
      size_t promise_word = f.ref.fn->promise_offset / 8;
      if (frame.state != model::FrameState::kSuspended && promise_word < f.head_words &&
          f.head[promise_word] == f.address) {
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
    stitch_awaiters(out->frames, found, reader, batch);
    fingerprint_frames(out->frames, found, reader, batch);
    out->bytes_scanned = stats.bytes_scanned;
    out->scan_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (stats.torn > 0) {
      out->warnings.push_back(std::to_string(stats.torn) +
                              " frames changed while being read and were left out");
    }
    if (!s.alive()) {
      error->code = util::kExitTargetExited;
      error->message = "pid " + std::to_string(out->pid) + " exited while it was being read";
      return false;
    }
    return true;
  } catch (const process::TargetError& e) {
    return fail_with(e, error);
  }
}

}  // namespace asyncprobe::snapshot
