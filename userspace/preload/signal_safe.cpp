#include "userspace/preload/signal_safe.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

namespace asyncprobe::preload {

namespace {
std::atomic<pid_t> g_pid{0};
}  // namespace

pid_t self_pid() {
  pid_t p = g_pid.load(std::memory_order_relaxed);
  if (p == 0) {
    p = static_cast<pid_t>(sys(SYS_getpid));
    g_pid.store(p, std::memory_order_relaxed);
  }
  return p;
}

void refresh_self_pid() {
  g_pid.store(static_cast<pid_t>(sys(SYS_getpid)), std::memory_order_relaxed);
}

pid_t self_tid() { return static_cast<pid_t>(sys(SYS_gettid)); }

namespace {
__thread uint64_t t_overlay_base __attribute__((tls_model("initial-exec"))) = 0;
__thread uint64_t t_overlay_len __attribute__((tls_model("initial-exec"))) = 0;
__thread const unsigned char* t_overlay __attribute__((tls_model("initial-exec"))) = nullptr;
}  // namespace

void set_read_overlay(uint64_t base, const void* copy, size_t len) {
  t_overlay_base = base;
  t_overlay_len = len;
  t_overlay = static_cast<const unsigned char*>(copy);
}

void clear_read_overlay() {
  t_overlay = nullptr;
  t_overlay_len = 0;
}

bool safe_read(uint64_t addr, void* out, size_t len) {
  if (len == 0) return true;
  if (addr == 0 || addr + len < addr) return false;
  if (t_overlay != nullptr && addr < t_overlay_base + t_overlay_len &&
      addr + len > t_overlay_base) {
    // The part inside the copy from the copy, the rest (before or after it) from memory.
    auto* dst = static_cast<unsigned char*>(out);
    uint64_t lo = addr > t_overlay_base ? addr : t_overlay_base;
    uint64_t hi =
        addr + len < t_overlay_base + t_overlay_len ? addr + len : t_overlay_base + t_overlay_len;
    const unsigned char* copy = t_overlay;
    uint64_t base = t_overlay_base;
    t_overlay = nullptr;  // the pieces outside are plain reads
    bool ok = (lo == addr || safe_read(addr, dst, lo - addr)) &&
              (hi == addr + len || safe_read(hi, dst + (hi - addr), addr + len - hi));
    t_overlay = copy;
    for (uint64_t a = lo; ok && a < hi; ++a) dst[a - addr] = copy[a - base];
    return ok;
  }
  struct iovec local {
    out, len
  };
  struct iovec remote {
    reinterpret_cast<void*>(addr), len
  };
  int saved = errno;
  long n = sys(SYS_process_vm_readv, self_pid(), &local, 1, &remote, 1, 0);
  errno = saved;
  return n == static_cast<long>(len);
}

void write_fully(int fd, const char* p, size_t n) {
  int saved = errno;
  while (n > 0) {
    long w = sys(SYS_write, fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    p += w;
    n -= static_cast<size_t>(w);
  }
  errno = saved;
}

int raw_open(const char* path, int flags, int mode) {
  int saved = errno;
  int fd = static_cast<int>(sys(SYS_openat, AT_FDCWD, path, flags, mode));
  errno = saved;
  return fd;
}

void raw_close(int fd) {
  int saved = errno;
  sys(SYS_close, fd);
  errno = saved;
}

void sleep_ms(int ms) {
  struct timespec ts {
    ms / 1000, (ms % 1000) * 1000000L
  };
  int saved = errno;
  sys(SYS_nanosleep, &ts, nullptr);
  errno = saved;
}

uint64_t monotonic_ns() {
  struct timespec ts {};
  clock_gettime(CLOCK_MONOTONIC, &ts);  // vDSO; async-signal-safe per POSIX
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

Text& Text::str(const char* s) {
  if (s == nullptr) s = "(null)";
  size_t n = 0;
  while (s[n] != '\0') ++n;
  return str(s, n);
}

Text& Text::str(const char* s, size_t n) {
  for (size_t i = 0; i < n; ++i) ch(s[i]);
  return *this;
}

Text& Text::ch(char c) {
  if (len_ + 4 < cap_) {
    buf_[len_++] = c;
    if (c == '\n') line_start_ = len_;
  } else if (len_ + 4 == cap_) {
    buf_[len_++] = '.';
    buf_[len_++] = '.';
    buf_[len_++] = '.';
    buf_[len_++] = '\n';
  }
  return *this;
}

Text& Text::udec(uint64_t v) {
  char tmp[24];
  int n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0) ch(tmp[--n]);
  return *this;
}

Text& Text::dec(int64_t v) {
  if (v < 0) {
    ch('-');
    return udec(static_cast<uint64_t>(-(v + 1)) + 1);
  }
  return udec(static_cast<uint64_t>(v));
}

Text& Text::hex(uint64_t v, int min_digits) {
  char tmp[20];
  int n = 0;
  do {
    tmp[n++] = "0123456789abcdef"[v & 0xf];
    v >>= 4;
  } while (v != 0);
  while (n < min_digits && n < 16) tmp[n++] = '0';
  str("0x");
  while (n > 0) ch(tmp[--n]);
  return *this;
}

Text& Text::pad_to(size_t column) {
  while (len_ - line_start_ < column && len_ + 4 < cap_) ch(' ');
  return *this;
}

const char* signal_name(int sig) {
  switch (sig) {
    case SIGSEGV:
      return "SIGSEGV";
    case SIGBUS:
      return "SIGBUS";
    case SIGFPE:
      return "SIGFPE";
    case SIGILL:
      return "SIGILL";
    case SIGABRT:
      return "SIGABRT";
    case SIGTRAP:
      return "SIGTRAP";
    default:
      return "signal";
  }
}

const char* signal_code_text(int sig, int code) {
  if (code <= 0) {
    switch (code) {
      case SI_USER:
        return "sent by kill";
      case SI_TKILL:
        return "sent by tkill/raise";
      case SI_QUEUE:
        return "sent by sigqueue";
      default:
        return "sent by a process";
    }
  }
  switch (sig) {
    case SIGSEGV:
      return code == SEGV_MAPERR   ? "address not mapped"
             : code == SEGV_ACCERR ? "invalid permissions"
                                   : "segmentation fault";
    case SIGBUS:
      return code == BUS_ADRALN   ? "invalid address alignment"
             : code == BUS_ADRERR ? "nonexistent physical address"
                                  : "bus error";
    case SIGFPE:
      return code == FPE_INTDIV   ? "integer divide by zero"
             : code == FPE_INTOVF ? "integer overflow"
                                  : "arithmetic exception";
    case SIGILL:
      return code == ILL_ILLOPN   ? "illegal operand"
             : code == ILL_ILLOPC ? "illegal opcode"
                                  : "illegal instruction";
    default:
      return "";
  }
}

}  // namespace asyncprobe::preload
