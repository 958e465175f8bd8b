#include "userspace/process/target_process.h"

#include <elf.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "userspace/process/process_maps.h"

namespace asyncprobe::process {

TargetError::TargetError(util::ExitCode code, const std::string& message)
    : std::runtime_error(message), code_(code) {}

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.release();
  }
  return *this;
}

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) ::close(fd_);
}

int read_file_at(int dirfd, const char* rel, size_t max_bytes, std::string* out, bool* truncated) {
  out->clear();
  if (truncated != nullptr) *truncated = false;
  UniqueFd fd(::openat(dirfd, rel, O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd.valid()) return errno;
  // Read one byte past the cap so "exactly max_bytes" and "longer" can be told apart.
  constexpr size_t kStep = size_t{64} * 1024;
  while (out->size() <= max_bytes) {
    size_t want = std::min(kStep, max_bytes + 1 - out->size());
    size_t old = out->size();
    out->resize(old + want);
    ssize_t n = ::read(fd.get(), out->data() + old, want);
    if (n < 0) {
      out->resize(old);
      if (errno == EINTR) continue;
      return errno;
    }
    out->resize(old + static_cast<size_t>(n));
    if (n == 0) break;
  }
  if (out->size() > max_bytes) {
    out->resize(max_bytes);
    if (truncated != nullptr) *truncated = true;
  }
  return 0;
}

std::optional<ProcStat> parse_proc_stat(std::string_view text) {
  // "pid (comm) state ppid ...": comm may contain ')' and spaces, so the last ')' ends it.
  size_t open = text.find(" (");
  size_t close = text.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open + 2) {
    return std::nullopt;
  }
  ProcStat st;
  auto parse_u64 = [](std::string_view s, uint64_t* v) {
    if (s.empty() || s.size() > 20) return false;
    uint64_t x = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return false;
      uint64_t d = static_cast<uint64_t>(c - '0');
      if (x > (UINT64_MAX - d) / 10) return false;
      x = x * 10 + d;
    }
    *v = x;
    return true;
  };
  auto parse_i64 = [&](std::string_view s, int64_t* v) {
    bool neg = !s.empty() && s.front() == '-';
    uint64_t x;
    if (!parse_u64(neg ? s.substr(1) : s, &x) || x > static_cast<uint64_t>(INT64_MAX)) {
      return false;
    }
    *v = neg ? -static_cast<int64_t>(x) : static_cast<int64_t>(x);
    return true;
  };
  int64_t pid;
  if (!parse_i64(text.substr(0, open), &pid) || pid <= 0 || pid > INT_MAX) return std::nullopt;
  st.pid = static_cast<int>(pid);
  st.comm.assign(text.substr(open + 2, close - open - 2));
  if (st.comm.size() > 64) return std::nullopt;  // the kernel's comm is at most 15 bytes

  // Fields from 3 on are single-space separated; we need up to field 22.
  std::string_view rest = text.substr(close + 1);
  std::string_view fields[20];
  size_t n = 0;
  while (n < 20) {
    if (rest.empty() || rest.front() != ' ') return std::nullopt;
    rest.remove_prefix(1);
    size_t e = rest.find_first_of(" \n");
    fields[n++] = rest.substr(0, e);
    rest.remove_prefix(e == std::string_view::npos ? rest.size() : e);
  }
  if (fields[0].size() != 1) return std::nullopt;
  st.state = fields[0][0];
  int64_t ppid, threads;
  if (!parse_i64(fields[1], &ppid) || ppid < 0 || ppid > INT_MAX) return std::nullopt;
  st.ppid = static_cast<int>(ppid);
  if (!parse_u64(fields[9 - 3], &st.flags)) return std::nullopt;
  if (!parse_i64(fields[20 - 3], &threads)) return std::nullopt;
  st.num_threads = threads;
  if (!parse_u64(fields[22 - 3], &st.start_time)) return std::nullopt;
  return st;
}

namespace {

const char* machine_name(unsigned machine) {
  switch (machine) {
    case EM_386:
      return "i386";
    case EM_MIPS:
      return "mips";
    case EM_PPC:
      return "ppc";
    case EM_PPC64:
      return "ppc64";
    case EM_S390:
      return "s390";
    case EM_ARM:
      return "arm";
    case EM_SPARCV9:
      return "sparcv9";
    case EM_IA_64:
      return "ia64";
    case EM_X86_64:
      return "x86-64";
    case EM_AARCH64:
      return "aarch64";
    case EM_RISCV:
      return "riscv";
    case 258:
      return "loongarch";  // EM_LOONGARCH, newer than some elf.h
    default:
      return nullptr;
  }
}

std::string arch_of(unsigned machine) {
  const char* n = machine_name(machine);
  return n != nullptr ? n : "machine " + std::to_string(machine);
}

}  // namespace

ElfHeaderCheck check_elf_header(const unsigned char* data, size_t size) {
  ElfHeaderCheck c;
  if (data == nullptr || size < SELFMAG || std::memcmp(data, ELFMAG, SELFMAG) != 0) {
    c.problem = "not an ELF file";
    return c;
  }
  c.is_elf = true;
  if (size < 20) {
    c.problem = "a truncated ELF file";
    return c;
  }
  const unsigned cls = data[EI_CLASS];
  const unsigned enc = data[EI_DATA];
  // e_machine sits at offset 18 in both classes, in the file's declared byte order.
  const unsigned machine =
      enc == ELFDATA2MSB ? (data[18] << 8) | data[19] : data[18] | (data[19] << 8);
  if (cls == ELFCLASS32) {
    c.problem = machine == EM_X86_64 ? "an x32 ELF (32-bit pointers on x86-64)"
                                     : "a 32-bit ELF (" + arch_of(machine) + ")";
  } else if (cls != ELFCLASS64) {
    c.problem = "an ELF of unknown class " + std::to_string(cls);
  } else if (enc != ELFDATA2LSB) {
    c.problem = "a big-endian 64-bit ELF (" + arch_of(machine) + ")";
  } else if (machine != EM_X86_64) {
    c.problem = "a 64-bit ELF for " + arch_of(machine) + ", not x86-64";
  } else {
    c.supported = true;
  }
  return c;
}

namespace {

constexpr size_t kMaxSmallProcFile =
    size_t{64} * 1024;  // stat, status: a few hundred bytes in practice
constexpr int kCapSysPtrace = 19;

// Keeps messages on one line whatever bytes a hostile comm or path holds.
std::string printable(std::string_view s, size_t max = 256) {
  std::string out;
  for (char c : s.substr(0, max)) {
    unsigned char u = static_cast<unsigned char>(c);
    out.push_back(u < 0x20 || u == 0x7f ? '?' : c);
  }
  if (s.size() > max) out += "...";
  return out;
}

std::string who(int pid, const std::string& comm) {
  std::string s = "process " + std::to_string(pid);
  if (!comm.empty()) s += " (" + printable(comm) + ")";
  return s;
}

// The first number after "Name:" in a status-like file, or -1.
int64_t status_field(const std::string& status, std::string_view name) {
  size_t pos = 0;
  while (pos < status.size()) {
    size_t nl = status.find('\n', pos);
    std::string_view line(status.data() + pos,
                          (nl == std::string::npos ? status.size() : nl) - pos);
    pos = nl == std::string::npos ? status.size() : nl + 1;
    if (line.substr(0, name.size()) != name) continue;
    line.remove_prefix(name.size());
    size_t b = line.find_first_not_of(" \t");
    if (b == std::string_view::npos) return -1;
    int64_t v = 0;
    size_t digits = 0;
    for (size_t i = b; i < line.size() && line[i] >= '0' && line[i] <= '9' && digits < 18;
         ++i, ++digits) {
      v = v * 10 + (line[i] - '0');
    }
    return digits == 0 ? -1 : v;
  }
  return -1;
}

bool have_cap_sys_ptrace() {
  std::string status;
  if (read_file_at(AT_FDCWD, "/proc/self/status", kMaxSmallProcFile, &status) != 0) return false;
  size_t p = status.find("CapEff:");
  if (p == std::string::npos) return false;
  p += 7;
  while (p < status.size() && (status[p] == ' ' || status[p] == '\t')) ++p;
  uint64_t caps = 0;
  size_t digits = 0;
  for (; p < status.size() && digits < 16; ++p, ++digits) {
    char c = status[p];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) break;
    caps = (caps << 4) | static_cast<uint64_t>(d);
  }
  return (caps >> kCapSysPtrace) & 1u;
}

// "; kernel.yama.ptrace_scope=N: meaning", or "" when Yama is absent or not restricting.
std::string yama_note() {
  std::string text;
  if (read_file_at(AT_FDCWD, "/proc/sys/kernel/yama/ptrace_scope", 16, &text) != 0) return "";
  int scope = text.empty() ? -1 : text[0] - '0';
  switch (scope) {
    case 1:
      return "; kernel.yama.ptrace_scope=1: without CAP_SYS_PTRACE only an ancestor may read a "
             "process";
    case 2:
      return "; kernel.yama.ptrace_scope=2: reading another process requires CAP_SYS_PTRACE";
    case 3:
      return "; kernel.yama.ptrace_scope=3: no process may be read, not even by root, until "
             "reboot";
    default:
      return "";
  }
}

[[noreturn]] void throw_permission(int pid, const std::string& comm, int dirfd,
                                   const std::string& what, int err) {
  std::string msg = "cannot read " + who(pid, comm) + ": " + what + ": " + std::strerror(err);
  std::string status;
  int64_t target_uid = -1;
  if (read_file_at(dirfd, "status", kMaxSmallProcFile, &status) == 0) {
    target_uid = status_field(status, "Uid:");
  }
  if (have_cap_sys_ptrace()) {
    msg += "; asyncprobe has CAP_SYS_PTRACE but the kernel still refused";
    std::string yama = yama_note();
    msg += yama.empty() ? " (a security module or a user-namespace boundary denies it)" : yama;
  } else {
    msg += "; need root or CAP_SYS_PTRACE (running as uid " + std::to_string(geteuid()) +
           " without CAP_SYS_PTRACE";
    if (target_uid >= 0) msg += ", target owned by uid " + std::to_string(target_uid);
    msg += ")" + yama_note();
  }
  throw TargetError(util::kExitPermission, msg);
}

bool is_permission_errno(int err) { return err == EACCES || err == EPERM; }
bool is_gone_errno(int err) { return err == ENOENT || err == ESRCH; }

UniqueFd open_proc_dir(int pid) {
  std::string path = "/proc/" + std::to_string(pid);
  UniqueFd dir(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.valid()) return dir;
  int err = errno;
  if (err == ENOENT) {
    if (::access("/proc/self/stat", R_OK) != 0) {
      throw TargetError(util::kExitInternal, "/proc is not mounted or not readable");
    }
    throw TargetError(util::kExitNoProcess, "no such process: PID " + std::to_string(pid));
  }
  throw TargetError(util::kExitInternal, "cannot open " + path + ": " + std::strerror(err));
}

ProcStat read_stat_or_throw(int dirfd, int pid) {
  std::string text;
  int err = read_file_at(dirfd, "stat", kMaxSmallProcFile, &text);
  if (err != 0) {
    if (is_gone_errno(err)) {
      throw TargetError(util::kExitNoProcess, "no such process: PID " + std::to_string(pid));
    }
    throw TargetError(util::kExitInternal,
                      "cannot read /proc/" + std::to_string(pid) + "/stat: " + std::strerror(err));
  }
  auto st = parse_proc_stat(text);
  if (!st) {
    throw TargetError(util::kExitInternal,
                      "unexpected format of /proc/" + std::to_string(pid) + "/stat");
  }
  return *st;
}

[[noreturn]] void throw_exited(int pid, const std::string& comm) {
  throw TargetError(util::kExitTargetExited,
                    who(pid, comm) + " exited while asyncprobe was opening it");
}

}  // namespace

std::string TargetProcess::proc_path(std::string_view leaf) const {
  std::string p = "/proc/" + std::to_string(pid_);
  if (!leaf.empty()) {
    p += '/';
    p += leaf;
  }
  return p;
}

int TargetProcess::read_proc_file(const char* leaf, size_t max_bytes, std::string* out,
                                  bool* truncated) const {
  return read_file_at(proc_dir_.get(), leaf, max_bytes, out, truncated);
}

bool TargetProcess::alive() const {
  std::string text;
  if (read_file_at(proc_dir_.get(), "stat", kMaxSmallProcFile, &text) != 0) return false;
  auto st = parse_proc_stat(text);
  return st && st->start_time == start_time_ && st->state != 'Z' && st->state != 'X' &&
         st->state != 'x';
}

MapsParseResult TargetProcess::read_maps() const {
  std::string text;
  bool truncated = false;
  int err = read_file_at(proc_dir_.get(), "maps", kMaxMapsBytes, &text, &truncated);
  if (err != 0) {
    if (is_permission_errno(err))
      throw_permission(pid_, comm_, proc_dir_.get(), proc_path("maps"), err);
    if (is_gone_errno(err) || !alive()) {
      throw TargetError(util::kExitTargetExited, who(pid_, comm_) + " exited");
    }
    throw TargetError(util::kExitInternal,
                      "cannot read " + proc_path("maps") + ": " + std::strerror(err));
  }
  MapsParseResult r = parse_maps(text);
  r.truncated = truncated;
  return r;
}

std::vector<std::string> TargetProcess::mapped_file_candidates(const Mapping& m) const {
  std::vector<std::string> out;
  char range[64];
  std::snprintf(range, sizeof range, "%llx-%llx", static_cast<unsigned long long>(m.start),
                static_cast<unsigned long long>(m.end));
  out.push_back(proc_path(std::string("map_files/") + range));
  if (!m.path.empty() && m.path[0] == '/' && m.path.size() < PATH_MAX) {
    out.push_back(proc_path("root") + m.path);
  }
  return out;
}

MappedFile TargetProcess::open_mapped_file(const Mapping& m) const {
  MappedFile fallback;
  const std::string prefix = proc_path() + "/";
  for (const auto& path : mapped_file_candidates(m)) {
    // Look the route up relative to the pinned directory so a reused PID cannot hand us another
    // file, and only as a path first: opening a FIFO or device named in hostile maps could
    // block or have side effects. Regular files are then reopened for reading.
    std::string rel = path.substr(prefix.size());
    UniqueFd where(::openat(proc_dir_.get(), rel.c_str(), O_PATH | O_CLOEXEC));
    struct stat sb;
    if (!where.valid() || ::fstat(where.get(), &sb) != 0 || !S_ISREG(sb.st_mode)) {
      if (!fallback.fd.valid()) fallback.path = path;
      continue;
    }
    std::string self_fd = "/proc/self/fd/" + std::to_string(where.get());
    UniqueFd fd(::open(self_fd.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (!fd.valid()) {
      if (!fallback.fd.valid()) fallback.path = path;
      continue;
    }
    bool same = static_cast<uint64_t>(sb.st_ino) == m.inode && major(sb.st_dev) == m.dev_major &&
                minor(sb.st_dev) == m.dev_minor;
    if (same) {
      MappedFile r;
      r.fd = std::move(fd);
      r.path = path;
      r.identity_verified = true;
      return r;
    }
    if (!fallback.fd.valid()) {
      // Overlay filesystems report another device; keep it, flagged, in case nothing better.
      fallback.fd = std::move(fd);
      fallback.path = path;
    }
  }
  return fallback;
}

MappedFile TargetProcess::open_exe() const {
  MappedFile r;
  r.path = exe_open_path();
  r.fd = UniqueFd(::openat(proc_dir_.get(), "exe", O_RDONLY | O_CLOEXEC | O_NOCTTY));
  r.identity_verified = r.fd.valid();
  return r;
}

namespace {

// Opens /proc/PID, or the thread group leader's entry when PID names another thread:
// /proc/TID exists for every thread; the address space belongs to the thread group leader.
UniqueFd open_thread_group_leader(int pid, ProcStat* st) {
  UniqueFd dir = open_proc_dir(pid);
  *st = read_stat_or_throw(dir.get(), pid);
  std::string status;
  if (read_file_at(dir.get(), "status", kMaxSmallProcFile, &status) == 0) {
    int64_t tgid = status_field(status, "Tgid:");
    if (tgid > 0 && tgid <= INT_MAX && tgid != pid) {
      dir = open_proc_dir(static_cast<int>(tgid));
      *st = read_stat_or_throw(dir.get(), static_cast<int>(tgid));
    }
  }
  return dir;
}

// Kernel threads, zombies and exited processes have no user memory to read.
void reject_uninspectable_state(const ProcStat& st, int pid, const std::string& comm) {
  if (st.flags & kPfKthread) {
    throw TargetError(util::kExitNotInspectable,
                      who(pid, comm) + " is a kernel thread: it has no user memory to read");
  }
  if (st.state == 'Z' && st.num_threads > 1) {
    // A leader that called pthread_exit: the process lives on, but the leader's /proc entry
    // and PID no longer lead to its memory.
    throw TargetError(util::kExitNotInspectable,
                      who(pid, comm) + ": its main thread has exited while " +
                          std::to_string(st.num_threads - 1) +
                          " other thread(s) still run; its memory cannot be read through PID " +
                          std::to_string(pid));
  }
  if (st.state == 'Z') {
    throw TargetError(
        util::kExitNotInspectable,
        who(pid, comm) + " is a zombie (exited, not yet reaped by its parent): no memory to read");
  }
  if (st.state == 'X' || st.state == 'x') throw_exited(pid, comm);
}

// The first mapping worth a test read: readable, and neither special nor a device.
const Mapping* first_probe_mapping(const MapsParseResult& maps) {
  for (const auto& m : maps.mappings) {
    RegionKind k = classify(m);
    if (m.perms.read && k != RegionKind::kSpecial && k != RegionKind::kDevice) return &m;
  }
  return nullptr;
}

}  // namespace

void TargetProcess::read_exe_link() {
  const int dirfd = proc_dir_.get();
  char link[PATH_MAX + 1];
  ssize_t n = ::readlinkat(dirfd, "exe", link, PATH_MAX);
  if (n < 0) {
    int err = errno;
    if (is_permission_errno(err)) throw_permission(pid_, comm_, dirfd, proc_path("exe"), err);
    if (!alive()) throw_exited(pid_, comm_);
    if (err == ENOENT) {
      throw TargetError(util::kExitNotInspectable,
                        who(pid_, comm_) + " has no executable or user address space");
    }
    throw TargetError(util::kExitInternal,
                      "cannot read " + proc_path("exe") + ": " + std::strerror(err));
  }
  std::string exe(link, static_cast<size_t>(n));
  constexpr std::string_view kDeleted = " (deleted)";
  if (exe.size() > kDeleted.size() &&
      std::string_view(exe).substr(exe.size() - kDeleted.size()) == kDeleted) {
    exe_deleted_ = true;
    exe.resize(exe.size() - kDeleted.size());
  }
  exe_path_ = exe;
}

void TargetProcess::check_memory_readable(const MapsParseResult& maps) {
  const int dirfd = proc_dir_.get();
  // Permission is settled by reading, not by guessing from uids: /proc/PID/mem needs the same
  // ptrace access check as process_vm_readv.
  UniqueFd mem(::openat(dirfd, "mem", O_RDONLY | O_CLOEXEC));
  if (!mem.valid()) {
    int err = errno;
    if (is_permission_errno(err)) throw_permission(pid_, comm_, dirfd, proc_path("mem"), err);
    if (!alive()) throw_exited(pid_, comm_);
    throw TargetError(util::kExitInternal,
                      "cannot open " + proc_path("mem") + ": " + std::strerror(err));
  }
  const Mapping* probe = first_probe_mapping(maps);
  if (probe == nullptr) return;
  unsigned char byte[8];
  struct iovec local = {byte, sizeof byte};
  struct iovec remote = {reinterpret_cast<void*>(probe->start), sizeof byte};
  ssize_t got = ::process_vm_readv(pid_, &local, 1, &remote, 1, 0);
  int vm_err = got < 0 ? errno : 0;
  // Only a denial means the syscall is unusable; a vanished probe page says nothing.
  vm_readv_works_ = !(vm_err == EPERM || vm_err == ENOSYS);
  if (vm_err == ESRCH) throw_exited(pid_, comm_);
  if (got <= 0) {
    ssize_t pgot = ::pread(mem.get(), byte, sizeof byte, static_cast<off_t>(probe->start));
    int mem_err = pgot < 0 ? errno : 0;
    if (pgot == 0 || !alive()) throw_exited(pid_, comm_);
    if (pgot < 0 && is_permission_errno(mem_err) && is_permission_errno(vm_err)) {
      throw_permission(pid_, comm_, dirfd, "process_vm_readv and " + proc_path("mem"), vm_err);
    }
    // Other failures (the probed page vanished) say nothing about permission: go on.
  }
}

void TargetProcess::check_exe_supported() const {
  const int dirfd = proc_dir_.get();
  UniqueFd exe_fd(::openat(dirfd, "exe", O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!exe_fd.valid()) {
    int err = errno;
    if (is_permission_errno(err)) throw_permission(pid_, comm_, dirfd, proc_path("exe"), err);
    if (!alive()) throw_exited(pid_, comm_);
    throw TargetError(util::kExitInternal,
                      "cannot open " + proc_path("exe") + ": " + std::strerror(err));
  }
  unsigned char header[EI_NIDENT + 8] = {};
  size_t have = 0;
  while (have < sizeof header) {
    ssize_t r =
        ::pread(exe_fd.get(), header + have, sizeof header - have, static_cast<off_t>(have));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    have += static_cast<size_t>(r);
  }
  ElfHeaderCheck check = check_elf_header(header, have);
  if (!check.supported) {
    throw TargetError(util::kExitUnsupported,
                      who(pid_, comm_) + " runs " + printable(exe_path_) +
                          (check.is_elf ? ", " : ", which is ") + check.problem +
                          "; asyncprobe supports 64-bit x86-64 ELF processes only");
  }
}

TargetProcess TargetProcess::open(int pid) {
  if (pid <= 0) {
    throw TargetError(util::kExitUsage,
                      "invalid PID " + std::to_string(pid) + ": expected a positive process id");
  }
  TargetProcess t;
  t.requested_pid_ = pid;
  ProcStat st;
  UniqueFd dir = open_thread_group_leader(pid, &st);
  t.pid_ = st.pid;
  t.comm_ = st.comm;
  t.state_ = st.state;
  t.start_time_ = st.start_time;
  t.proc_dir_ = std::move(dir);
  reject_uninspectable_state(st, t.pid_, t.comm_);

  t.read_exe_link();

  MapsParseResult maps = t.read_maps();
  if (maps.mappings.empty()) {
    if (!t.alive()) throw_exited(t.pid_, t.comm_);
    throw TargetError(util::kExitNotInspectable,
                      who(t.pid_, t.comm_) + " has no user memory mapped");
  }
  t.check_memory_readable(maps);
  t.check_exe_supported();
  return t;
}

}  // namespace asyncprobe::process
