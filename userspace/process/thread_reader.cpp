#include "userspace/process/thread_reader.h"

#include <dirent.h>
#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <memory>

namespace asyncprobe::process {
namespace {

struct SyscallEntry {
  int nr;
  const char* name;
};

// x86-64 numbers (arch/x86/entry/syscalls/syscall_64.tbl). The blocking calls come first in
// spirit; the rest make "where is this thread" readable for common non-blocking ones too.
constexpr SyscallEntry kSyscalls[] = {
    {0, "read"},
    {1, "write"},
    {2, "open"},
    {3, "close"},
    {4, "stat"},
    {5, "fstat"},
    {6, "lstat"},
    {7, "poll"},
    {8, "lseek"},
    {9, "mmap"},
    {10, "mprotect"},
    {11, "munmap"},
    {12, "brk"},
    {13, "rt_sigaction"},
    {14, "rt_sigprocmask"},
    {15, "rt_sigreturn"},
    {16, "ioctl"},
    {17, "pread64"},
    {18, "pwrite64"},
    {19, "readv"},
    {20, "writev"},
    {23, "select"},
    {24, "sched_yield"},
    {25, "mremap"},
    {26, "msync"},
    {28, "madvise"},
    {32, "dup"},
    {33, "dup2"},
    {34, "pause"},
    {35, "nanosleep"},
    {39, "getpid"},
    {40, "sendfile"},
    {41, "socket"},
    {42, "connect"},
    {43, "accept"},
    {44, "sendto"},
    {45, "recvfrom"},
    {46, "sendmsg"},
    {47, "recvmsg"},
    {48, "shutdown"},
    {49, "bind"},
    {50, "listen"},
    {56, "clone"},
    {57, "fork"},
    {58, "vfork"},
    {59, "execve"},
    {60, "exit"},
    {61, "wait4"},
    {62, "kill"},
    {65, "semop"},
    {70, "msgrcv"},
    {72, "fcntl"},
    {73, "flock"},
    {74, "fsync"},
    {75, "fdatasync"},
    {96, "gettimeofday"},
    {101, "ptrace"},
    {128, "rt_sigtimedwait"},
    {130, "rt_sigsuspend"},
    {202, "futex"},
    {208, "io_getevents"},
    {217, "getdents64"},
    {220, "semtimedop"},
    {228, "clock_gettime"},
    {230, "clock_nanosleep"},
    {231, "exit_group"},
    {232, "epoll_wait"},
    {233, "epoll_ctl"},
    {242, "mq_timedsend"},
    {243, "mq_timedreceive"},
    {247, "waitid"},
    {257, "openat"},
    {270, "pselect6"},
    {271, "ppoll"},
    {275, "splice"},
    {277, "sync_file_range"},
    {281, "epoll_pwait"},
    {288, "accept4"},
    {295, "preadv"},
    {296, "pwritev"},
    {299, "recvmmsg"},
    {307, "sendmmsg"},
    {318, "getrandom"},
    {327, "preadv2"},
    {328, "pwritev2"},
    {333, "io_pgetevents"},
    {426, "io_uring_enter"},
    {435, "clone3"},
    {441, "epoll_pwait2"},
    {449, "futex_waitv"},
    {454, "futex_wake"},
    {455, "futex_wait"},
    {456, "futex_requeue"},
};

bool parse_hex_token(std::string_view t, uint64_t* out) {
  if (t.size() < 3 || t.size() > 18 || t[0] != '0' || t[1] != 'x') return false;
  uint64_t v = 0;
  for (char c : t.substr(2)) {
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return false;
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  *out = v;
  return true;
}

bool parse_int_token(std::string_view t, int64_t* out) {
  bool neg = !t.empty() && t[0] == '-';
  if (neg) t.remove_prefix(1);
  if (t.empty() || t.size() > 10) return false;
  int64_t v = 0;
  for (char c : t) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  if (v > INT_MAX) return false;
  *out = neg ? -v : v;
  return true;
}

bool is_gone(int err) { return err == ENOENT || err == ESRCH; }

struct DirCloser {
  void operator()(DIR* d) const { ::closedir(d); }
};

}  // namespace

const char* syscall_name_x86_64(int64_t nr) {
  for (const auto& e : kSyscalls) {
    if (e.nr == nr) return e.name;
  }
  return nullptr;
}

std::optional<SyscallState> parse_syscall_file(std::string_view text) {
  if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  SyscallState s;
  if (text == "running") return s;
  if (text.size() > 512) return std::nullopt;
  std::string_view tok[10];
  size_t n = 0;
  while (!text.empty()) {
    if (n == 10) return std::nullopt;
    size_t sp = text.find(' ');
    tok[n++] = text.substr(0, sp);
    if (sp == std::string_view::npos) break;
    text.remove_prefix(sp + 1);
    if (text.empty()) return std::nullopt;  // trailing space: not the kernel's format
  }
  int64_t nr;
  if (n == 0 || !parse_int_token(tok[0], &nr)) return std::nullopt;
  if (nr < 0) {
    // "-1 sp pc": blocked, but not inside a system call.
    if (nr != -1 || n != 3) return std::nullopt;
    s.kind = SyscallState::Kind::kNotInSyscall;
    if (!parse_hex_token(tok[1], &s.sp) || !parse_hex_token(tok[2], &s.pc)) return std::nullopt;
    return s;
  }
  if (n != 9) return std::nullopt;
  s.kind = SyscallState::Kind::kInSyscall;
  s.nr = nr;
  for (size_t i = 0; i < 6; ++i) {
    if (!parse_hex_token(tok[1 + i], &s.args[i])) return std::nullopt;
  }
  if (!parse_hex_token(tok[7], &s.sp) || !parse_hex_token(tok[8], &s.pc)) return std::nullopt;
  return s;
}

std::vector<int> parse_task_list(std::string_view text, const ThreadReadOptions& options,
                                 bool* truncated) {
  std::vector<int> tids;
  *truncated = false;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    int64_t tid;
    if (!parse_int_token(line, &tid) || tid <= 0 || tid > INT32_MAX) continue;
    if (tids.size() >= options.max_threads) {
      *truncated = true;
      break;
    }
    tids.push_back(static_cast<int>(tid));
  }
  return tids;
}

ThreadReadResult read_thread_files(int pid, std::vector<int> tids, const TaskFileReader& read_file,
                                   const std::vector<Mapping>& maps,
                                   const ThreadReadOptions& options) {
  ThreadReadResult result;
  std::sort(tids.begin(), tids.end());
  tids.erase(std::unique(tids.begin(), tids.end()), tids.end());
  if (tids.size() > options.max_threads) {
    tids.resize(options.max_threads);
    result.truncated = true;
  }
  const Mapping* stack_main = main_stack(maps);
  for (int tid : tids) {
    const std::string base = "task/" + std::to_string(tid) + "/";
    std::string text;
    int err = read_file(base + "stat", 4096, &text);
    if (err != 0) {
      ++result.vanished;  // any failure to read stat means the thread is no longer there
      continue;
    }
    auto st = parse_proc_stat(text);
    if (!st || st->pid != tid) {
      ++result.malformed;
      continue;
    }
    model::ThreadInfo ti;
    ti.tid = tid;
    ti.name = st->comm;
    ti.state = st->state;

    err = read_file(base + "syscall", 1024, &text);
    if (err != 0) {
      if (is_gone(err)) {
        ++result.vanished;
        continue;
      }
      ++result.syscall_unreadable;  // EACCES and the like: keep the thread, syscall unknown
    } else if (auto sc = parse_syscall_file(text)) {
      switch (sc->kind) {
        case SyscallState::Kind::kRunning:
          ti.syscall = "running";
          break;
        case SyscallState::Kind::kInSyscall: {
          ti.syscall_nr = sc->nr;
          const char* name = syscall_name_x86_64(sc->nr);
          ti.syscall = name != nullptr ? name : "syscall_" + std::to_string(sc->nr);
          std::copy(std::begin(sc->args), std::end(sc->args), std::begin(ti.syscall_args));
          ti.sp = sc->sp;
          ti.pc = sc->pc;
          break;
        }
        case SyscallState::Kind::kNotInSyscall:
          ti.sp = sc->sp;
          ti.pc = sc->pc;
          break;
      }
    } else {
      ++result.syscall_unreadable;
    }

    const Mapping* stack = stack_mapping_for(maps, ti.sp);
    if (stack == nullptr && ti.sp == 0 && tid == pid) stack = stack_main;
    if (stack != nullptr) {
      ti.stack_lo = stack->start;
      ti.stack_hi = stack->end;
    }
    result.threads.push_back(std::move(ti));
  }
  return result;
}

ThreadReadResult read_threads(const TargetProcess& target, const std::vector<Mapping>& maps,
                              const ThreadReadOptions& options) {
  ThreadReadResult result;
  // Through the pinned /proc/PID: a reused PID cannot slip another process's threads in.
  int task_fd = ::openat(target.proc_dir_fd(), "task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (task_fd < 0) {
    int err = errno;
    if (is_gone(err) || !target.alive()) {
      throw TargetError(util::kExitTargetExited,
                        "process " + std::to_string(target.pid()) + " exited");
    }
    throw TargetError(util::kExitInternal,
                      "cannot list " + target.proc_path("task") + ": " + std::strerror(err));
  }
  std::unique_ptr<DIR, DirCloser> dir(::fdopendir(task_fd));
  if (!dir) {
    ::close(task_fd);
    throw TargetError(util::kExitInternal, std::string("fdopendir: ") + std::strerror(errno));
  }
  std::vector<int> tids;
  // Bound the walk itself, not only what we keep: a directory is input too.
  const size_t max_entries = options.max_threads * 2 + 16;
  size_t entries = 0;
  while (struct dirent* e = ::readdir(dir.get())) {
    if (++entries > max_entries) {
      result.truncated = true;
      break;
    }
    int64_t tid;
    if (!parse_int_token(e->d_name, &tid) || tid <= 0) continue;
    if (tids.size() >= options.max_threads) {
      result.truncated = true;
      break;
    }
    tids.push_back(static_cast<int>(tid));
  }
  ThreadReadResult threads = read_thread_files(
      target.pid(), std::move(tids),
      [&target](const std::string& leaf, size_t max_bytes, std::string* out) {
        return target.read_proc_file(leaf.c_str(), max_bytes, out);
      },
      maps, options);
  threads.truncated |= result.truncated;
  result = std::move(threads);
  if (!target.alive()) {
    throw TargetError(util::kExitTargetExited, "process " + std::to_string(target.pid()) +
                                                   " exited while its threads were being read");
  }
  return result;
}

}  // namespace asyncprobe::process
