// How one look works (moved here from docs/ARCHITECTURE.md, next to the code).
//
// 1. `SnapshotTaker::attach`: every executable file mapping is opened through
//    `/proc/PID/map_files/<range>` (deleted and containerised files work), falling back to
//    `/proc/PID/root/<path>`; its module and catalog are built and placed at the load bias
//    (`CoroutineIndex`: absolute destroy/cleanup address -> coroutine).
// 2. `FrameScanner`: reads every writable anonymous/heap/stack region in 1 MiB chunks (memory use
//    is bounded whatever the heap size) and matches each aligned word pair against the index:
//    `word_range_filter` finds the words inside the [lowest, highest] destroy address, 32 words per
//    step with AVX2 when the CPU has it (chosen at run time; a scalar loop otherwise, and the
//    reference the tests hold it to), then a hash lookup for the rare candidate. A live frame's
//    first word is its own resume function; a
//    finished frame's is NULL. Unreadable chunks are skipped and counted, never read as zeros. A
//    heap frame's header found on a thread stack is a stale copy and is ignored (only Clang's
//    elided frames, `.cleanup` in the destroy slot, live on stacks).
// 3. Re-validation: every hit is read again twice after the scan; header and suspend index must be
//    unchanged, else the frame was being created, resumed or freed and is left out (counted in a
//    warning). A torn read therefore cannot produce a chain. Hits are merged into spans (a gap
//    under a page joins them) and each pass is one batched `process_vm_readv` per 1024 spans:
//    per-frame reads made a 100k-frame snapshot 10x a plain read of the heap, spans (with the
//    batched generic rule and the vector filter) make it about 1.5x. The first 64 bytes of each
//    frame are kept for the stitcher (promise words) so it reads nothing again for known layouts.
// 4. `decode_frame`: state (suspended at index N / done / unknown) and suspend point.
// 5. `stitch_awaiters`: the edge "A awaits B", with the rule that found it:
//    - `asio-caller`: Boost.Asio `awaitable_frame_base {coro_, attached_thread_, caller_, ...}`,
//      recognised by `coro_` being the frame itself; `caller_` points at the caller's promise;
//    - `continuation-in-promise` (cppcoro, libcoro, unifex, most hand-written tasks): the promise's
//      first word is the awaiting frame's address; named `folly-async-stack` when folly's
//      `AsyncStackFrame.parentFrame` right after the continuation agrees;
//    - `mutual-pointer` (unknown libraries): B holds A's address (or A's promise) and A holds B's
//      address, the continuation nearer B's header than the task object is to A's. Marked as a
//      generic link in reports. Its candidates are collected first and every frame they name is
//      read once, in one batch (one read per candidate cost 50,000 system calls a snapshot).
// 6. Boost.Asio's frame recycler (`thread_info_base::deallocate`) writes the frame's size in 8-byte
//    chunks over the header's first byte, and frames it does not keep go back to malloc, which
//    writes its free list over the first two words: a recycled frame no longer matches a
//    (resume, destroy) pair, so every frame found is kept.
// 7. Objects without symbols and without a debug file (`symbolizer/stripped_coroutines`): candidate
//    headers (two words pointing into the object's code) are collected in one pass at attach and
//    accepted only when code confirms them: GCC's destroy stub (`or $1, idx(%rdi); jmp actor`), or
//    code that takes the addresses of both (`lea resume(%rip)` / `lea destroy(%rip)` close
//    together: the ramp, or a caller it was inlined into). The compiler is told from `.comment`.
//    Such coroutines are shown by address with a warning naming the build-id debug file to install.
//
// Whether a coroutine is stuck is decided across two looks by the stuck check
// (snapshot/stuck_check.h): memory evidence first, a resume probe to confirm.

#include "userspace/snapshot/snapshot_taker.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <optional>

#include "symbolizer/stripped_coroutines.h"
#include "userspace/process/exception_reader.h"
#include "userspace/process/lock_reader.h"
#include "userspace/process/memory_reader.h"
#include "userspace/process/preload_client.h"
#include "userspace/process/process_maps.h"
#include "userspace/process/target_process.h"
#include "userspace/process/thread_reader.h"
#include "userspace/snapshot/awaiter_stitcher.h"
#include "userspace/snapshot/frame_scanner.h"
#include "userspace/snapshot/orphan_marker.h"
#include "userspace/snapshot/stuck_check.h"
#include "userspace/util/stop_request.h"

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
  process::UniqueFd
      proc_dir;  // /proc/PID stays readable: its stat tells whether the process lives on
  uint64_t start_time = 0;
};

struct SnapshotTaker::Impl {
  SnapshotSession session;
  std::optional<process::TargetProcess> target;  // direct reading
  std::optional<PreloadTarget> preload;          // or through the preload socket
  std::unique_ptr<process::MemoryReader> memory;
  process::ReadMemory read;
  process::ReadMemoryBatch batch;  // empty through the socket: pieces are read one by one
  symbolizer::DebugSearchPaths paths;
  std::vector<std::shared_ptr<const symbolizer::CachedObject>> objects;  // held: keeps them cached
  size_t objects_shared = 0;
  CoroutineIndex index;
  std::vector<std::string> warnings;
  // For mark_running(), made on first use.
  std::unique_ptr<process::TraceUnwinder> unwinder;
  std::unique_ptr<ResumeFunctionTable> resume_functions;

  int pid() const { return target ? target->pid() : preload->pid; }
  std::string comm() const { return target ? target->comm() : preload->source.comm; }
  std::string exe_path() const;
  bool alive() const;
  process::MapsParseResult read_maps() const;
  process::ThreadReadResult threads(const std::vector<process::Mapping>& maps) const;
  process::MappedFile open_object(const process::Mapping& m) const;
  bool open_preload(const process::TargetError& refused, SnapshotError* error);
  // Parts of attach(), in order.
  bool open_target(SnapshotError* error);
  void open_module_cache();
  bool index_object(const process::MappedObject& obj, std::vector<StrippedObject>* stripped);
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

// The exceptions frames hold (promises whose DWARF type names an exception_ptr member), and a
// warning for frames whose promise type is unknown (Clang -O1+ emits no frame type).
void read_held_exceptions(std::vector<model::CoroFrame>& frames,
                          const std::vector<FoundFrame>& found, const process::ReadMemory& read,
                          std::vector<std::string>* warnings) {
  size_t unknown = 0;
  for (size_t i = 0; i < frames.size() && i < found.size(); ++i) {
    const symbolizer::CoroFunction* fn = found[i].ref.fn;
    frames[i].promise_layout_known = fn != nullptr && fn->promise_type_known;
    if (!frames[i].promise_layout_known) {
      ++unknown;
      continue;
    }
    for (uint32_t off : fn->exception_offsets) {
      uint64_t object = 0;
      if (!read(found[i].address + off, &object, sizeof object) || object == 0) continue;
      frames[i].exception = process::read_held_exception(object, read);
      break;
    }
  }
  if (unknown > 0) {
    warnings->push_back(std::to_string(unknown) +
                        " coroutines have no promise type in the debug info (no frame type, no "
                        "ramp `__promise`): whether they hold an exception could not be read");
  }
}

// The span of the regions frames can live in (non-stack ones), for the scan's pointer record.
PointerRecord frame_memory_range(const std::vector<ScanRegion>& regions) {
  PointerRecord rec;
  uint64_t lo = UINT64_MAX, hi = 0;
  for (const ScanRegion& r : regions) {
    if (r.end <= r.start) continue;
    lo = std::min(lo, r.start);
    hi = std::max(hi, r.end);
  }
  if (hi == 0) {
    rec.overflow = true;  // nothing to record
    return rec;
  }
  rec.lo = lo;
  rec.span = hi - 1 - lo;
  return rec;
}

// The orphan mark phase; roots are what the frame scan read plus the modules' writable data.
void find_orphans(model::Snapshot* out, const std::vector<process::Mapping>& maps,
                  const std::vector<ScanRegion>& regions, const std::vector<FoundFrame>& found,
                  const PointerRecord& seen, const process::ReadMemory& read) {
  std::vector<ScanRegion> roots = regions;
  for (const process::Mapping& m : maps) {
    if (m.perms.read && m.perms.write && process::classify(m) == process::RegionKind::kFileData) {
      roots.push_back(ScanRegion{m.start, m.end, false});
    }
    out->maps_io_uring |= m.path.find("io_uring") != std::string::npos;
  }
  OrphanStats orphans = mark_orphans(out->frames, frame_extents(out->frames, found, read), roots,
                                     read, &seen, regions.size());
  out->orphan_candidates = orphans.candidates;
  out->orphan_unknown_extent = orphans.unknown_extent;
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
    throw process::TargetError(
        util::kExitTargetExited,
        "pid " + std::to_string(preload->pid) + " (" + comm() + ") exited while it was being read");
  }
  return process::parse_maps(text);
}

process::ThreadReadResult SnapshotTaker::Impl::threads(
    const std::vector<process::Mapping>& maps) const {
  if (target) return process::read_threads(*target, maps);
  process::PreloadConnection& c = *preload->source.connection;
  std::string list;
  if (!c.proc_file("tasks", &list)) {
    throw process::TargetError(
        util::kExitTargetExited,
        "pid " + std::to_string(preload->pid) + " exited while its threads were being read");
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
    throw process::TargetError(
        util::kExitTargetExited,
        "pid " + std::to_string(preload->pid) + " exited while its threads were being read");
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
    // Gone meanwhile, or busy, is said as such; anything else is the refusal we started from.
    if (!st) code = util::kExitTargetExited;
    error->code = code == util::kExitTargetExited || code == util::kExitBusy
                      ? static_cast<util::ExitCode>(code)
                      : util::kExitPermission;
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

bool SnapshotTaker::Impl::open_target(SnapshotError* error) {
  try {
    target.emplace(process::TargetProcess::open(session.pid));
    memory = std::make_unique<process::MemoryReader>(*target);
    process::MemoryReader& mem = *memory;
    read = [&mem](uint64_t addr, void* buf, size_t len) { return mem.read(addr, buf, len); };
    batch = [&mem](std::vector<process::ReadRequest>& pieces) {
      mem.read_batch(std::span<process::ReadRequest>(pieces));
    };
    return true;
  } catch (const process::TargetError& e) {
    // Direct reading refused: a process started with `asyncprobe run` serves its own user.
    if (e.code() != util::kExitPermission) throw;
    target.reset();
    memory.reset();
    return open_preload(e, error);
  }
}

void SnapshotTaker::Impl::open_module_cache() {
  paths = {};
  // Through the socket we see the target's files by their paths: /proc/PID/root is closed.
  if (target) paths.sysroot = target->proc_path("root");
  for (const auto& d : session.debug_dirs) paths.debug_roots.insert(paths.debug_roots.begin(), d);
  if (session.catalogs == nullptr) session.catalogs = std::make_shared<symbolizer::CatalogCache>();
}

// Adds the object's coroutine catalog to the index, or queues it for the search by code when it
// has no symbols; false when its file or module could not be opened.
bool SnapshotTaker::Impl::index_object(const process::MappedObject& obj,
                                       std::vector<StrippedObject>* stripped) {
  // The first mapping of the object is enough to open the file it maps.
  process::MappedFile file = open_object(obj.mappings.front());
  if (!file.fd.valid()) return false;
  std::string err;
  bool shared = false;
  auto cached = session.catalogs->get(file.path, obj.path, paths, &shared, &err);
  if (cached == nullptr) return false;
  objects.push_back(cached);
  objects_shared += shared ? 1 : 0;
  const std::shared_ptr<symbolizer::Module>& module = cached->module;
  std::vector<process::LoadSegment> loads;
  for (const auto& seg : module->object().load_segments()) {
    loads.push_back({seg.vaddr, seg.offset, seg.filesz, seg.memsz, seg.flags});
  }
  process::LoadBiasResult bias = process::compute_load_bias(obj, loads);
  const std::shared_ptr<symbolizer::CoroCatalog>& catalog = cached->catalog;
  if (catalog->functions().empty()) {
    // System libraries ship stripped and hold none of the user's coroutines; only the
    // executable and the application's own libraries are searched by code.
    if (!module->has_symtab() && module->dwarf() == nullptr && bias.ok &&
        (!is_system_library(obj.path) || obj.path == exe_path())) {
      StrippedObject so{module, bias.bias, obj.path, {}};
      for (const auto& seg : module->object().load_segments()) {
        if ((seg.flags & 1) != 0)
          so.code.push_back({seg.vaddr + bias.bias, seg.vaddr + seg.memsz + bias.bias});
      }
      stripped->push_back(std::move(so));
    }
    return true;
  }
  if (!bias.ok) {
    warnings.push_back(obj.path + ": cannot place its coroutines (" + bias.error + ")");
    return true;
  }
  if (module->dwarf() == nullptr) {
    warnings.push_back(obj.path +
                       ": no DWARF debug info: functions are named but suspend "
                       "lines are unknown (build with -g or install its debug file)");
  }
  index.add(LoadedCatalog{catalog, bias.bias, obj.path});
  return true;
}

namespace {

// Why a target with no recognised coroutine code cannot be snapshotted, and what to do.
std::string no_coroutines_message(int pid, const std::string& comm,
                                  const std::vector<StrippedObject>& stripped, size_t objects) {
  std::string message = "pid " + std::to_string(pid) + " (" + comm + "): ";
  if (!stripped.empty()) {
    const auto& id = stripped.front().module->object().build_id();
    message += "no coroutine frames recognised in " + stripped.front().path +
               ", which has no symbols: install its debug file" +
               (id.empty() ? std::string()
                           : " (build-id " + id + ", looked up as /usr/lib/debug/.build-id/" +
                                 id.substr(0, 2) + "/" + id.substr(2) + ".debug)") +
               " or pass --debug-dir";
  } else {
    message += "no coroutine code found in its " + std::to_string(objects) + " mapped objects";
  }
  return message;
}

}  // namespace

bool SnapshotTaker::attach(SnapshotError* error) {
  Impl& s = *impl_;
  try {
    if (!s.open_target(error)) return false;
    s.open_module_cache();
    process::MapsParseResult maps = s.read_maps();
    size_t objects = 0;
    std::vector<StrippedObject> stripped;
    for (const process::MappedObject& obj : process::group_objects(maps.mappings)) {
      if (!obj.has_exec() || obj.path.empty() || obj.path[0] != '/') continue;
      if (s.index_object(obj, &stripped)) ++objects;
    }
    add_stripped_coroutines(stripped, maps.mappings);
    if (s.index.empty()) {
      error->code = util::kExitNoCoroutines;
      error->message = no_coroutines_message(s.pid(), s.comm(), stripped, objects);
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
      auto fn = symbolizer::recognise_stripped_coroutine(*so.module, taken,
                                                         w0 == 0 ? 0 : w0 - so.bias, w1 - so.bias);
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

const process::ReadMemory& SnapshotTaker::reader() const { return impl_->read; }

void SnapshotTaker::read_pieces(std::vector<process::ReadRequest>& pieces) {
  Impl& s = *impl_;
  try {
    if (s.batch) {
      s.batch(pieces);
      return;
    }
    for (auto& p : pieces) p.ok = s.read && s.read(p.addr, p.out, p.len);
  } catch (const process::TargetError&) {
    for (auto& p : pieces) p.ok = false;
  }
}

size_t SnapshotTaker::objects_opened() const { return impl_->objects.size(); }

size_t SnapshotTaker::objects_shared() const { return impl_->objects_shared; }

RunningScan SnapshotTaker::mark_running(model::Snapshot* snap) {
  Impl& s = *impl_;
  if (!s.read || snap == nullptr) return {};
  if (!s.unwinder) {
    s.unwinder = std::make_unique<process::TraceUnwinder>(s.pid(), s.session.debug_dirs);
    s.resume_functions = std::make_unique<ResumeFunctionTable>(s.index);
  }
  try {
    return mark_running_coroutines(*snap, *s.resume_functions, *s.unwinder, s.read);
  } catch (const process::TargetError&) {
    return {};  // the target went away: the look stands as it was
  }
}

bool SnapshotTaker::alive() const {
  if (!impl_->target && !impl_->preload) return false;
  try {
    return impl_->alive();
  } catch (const process::TargetError&) {
    return false;
  }
}

namespace {

// The awaiter edges the stitcher would not count, each kind in a warning.
void add_stitch_warnings(const StitchStats& s, std::vector<std::string>* warnings) {
  if (s.torn_edges > 0) {
    warnings->push_back(std::to_string(s.torn_edges) +
                        " awaiter edges read differently in two reads of a frame (it was being "
                        "resumed or handed on) and were left out: those frames show as roots");
  }
  if (s.misshapen_edges > 0) {
    warnings->push_back(std::to_string(s.misshapen_edges) +
                        " awaiter edges named a coroutine that has not started (at its initial "
                        "suspend, awaiting nothing) and were left out: those frames show as roots");
  }
  if (s.self_loops > 0) {
    warnings->push_back(std::to_string(s.self_loops) +
                        " frames name themselves as their awaiter: shown as cycles, uncertain");
  }
}

}  // namespace

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
    // The orphan mark phase reuses the words the scan sees pointing into frame memory: heap and
    // anonymous mappings, where frames live.
    PointerRecord pointers;
    if (s.session.find_orphans) pointers = frame_memory_range(regions);
    std::vector<FoundFrame> found =
        scanner.scan(regions, &stats, 1 << 20, s.session.find_orphans ? &pointers : nullptr);
    // Every frame whose header names its coroutine is kept, Boost.Asio's included: Asio's frame
    // recycler (thread_info_base::deallocate) writes the frame's size in 8-byte chunks over the
    // header's first byte, and frames it does not keep go back to malloc, which writes its free
    // list over the first two words, so neither matches a (resume, destroy) pair any more.
    out->frames.clear();
    out->frames.reserve(found.size());
    for (const auto& f : found) {
      if (out->frames.size() % 4096 == 0) util::check_interrupt();
      out->frames.push_back(decode_frame(f));
    }
    // Between phases, a pending stop request is noticed (util/stop_request.h).
    util::check_interrupt();
    HeapRanges heap;
    for (const ScanRegion& r : regions) {
      if (!r.is_stack && r.end > r.start) heap.emplace_back(r.start, r.end);
    }
    std::sort(heap.begin(), heap.end());
    const StitchStats stitched = stitch_awaiters(out->frames, found, reader, batch, heap);
    add_stitch_warnings(stitched, &out->warnings);
    util::check_interrupt();
    fingerprint_frames(out->frames, found, reader, batch);
    util::check_interrupt();
    read_held_exceptions(out->frames, found, reader, &out->warnings);
    for (model::ThreadInfo& t : out->threads) t.lock_wait = process::read_lock_wait(t, reader);
    util::check_interrupt();
    if (s.session.find_orphans) find_orphans(out, maps.mappings, regions, found, pointers, reader);
    util::check_interrupt();
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
