// Building blocks that are safe inside a signal handler: raw system calls (they also bypass the
// blocking-call interposers), reads of our own memory that cannot fault, and a formatter into a
// caller-provided buffer. Nothing here allocates or takes a lock.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>

#include <unistd.h>

#include <type_traits>

namespace asyncprobe::preload {

// syscall(2) with every argument widened to a full register. libc's syscall() passes its
// variadic arguments on as 64-bit registers, and an `int` argument leaves the upper half
// undefined (the kernel then sees e.g. an iovec count of 0x7f...00000001).
template <typename T>
long syscall_arg(T v) {
  if constexpr (std::is_pointer_v<T> || std::is_null_pointer_v<T>) {
    return reinterpret_cast<long>(v);
  } else {
    return static_cast<long>(v);
  }
}
template <typename... A>
long sys(long nr, A... args) {
  return syscall(nr, syscall_arg(args)...);
}

// The process id, cached (updated after fork by the library's fork handler).
pid_t self_pid();
void refresh_self_pid();
pid_t self_tid();

// Reads our own memory through process_vm_readv: an unmapped or protected address gives false,
// never a fault. All-or-nothing.
bool safe_read(uint64_t addr, void* out, size_t len);
// While set on a thread, that thread's safe_read serves [base, base + len) from `copy`: a copy of
// memory as it was earlier (the stack at a throw, analysed at std::terminate).
void set_read_overlay(uint64_t base, const void* copy, size_t len);
void clear_read_overlay();
template <typename T>
bool safe_load(uint64_t addr, T* out) {
  return safe_read(addr, out, sizeof(T));
}

// write(2) until done or an error other than EINTR; raw syscall.
void write_fully(int fd, const char* p, size_t n);
// open(2) / close(2) / nanosleep, raw.
int raw_open(const char* path, int flags, int mode);
void raw_close(int fd);
void sleep_ms(int ms);
uint64_t monotonic_ns();

// Formats into a fixed buffer; anything past its capacity is dropped (and marked with "...").
class Text {
 public:
  Text(char* buf, size_t cap) : buf_(buf), cap_(cap) {}
  Text& str(const char* s);
  Text& str(const char* s, size_t n);
  Text& ch(char c);
  Text& dec(int64_t v);
  Text& udec(uint64_t v);
  Text& hex(uint64_t v, int min_digits = 0);  // "0x" + lowercase digits
  Text& pad_to(size_t column);                // spaces up to a column of the current line
  const char* data() const { return buf_; }
  size_t size() const { return len_; }
  void clear() {
    len_ = 0;
    line_start_ = 0;
  }

 private:
  char* buf_;
  size_t cap_;
  size_t len_ = 0;
  size_t line_start_ = 0;
};

// The name of a signal ("SIGSEGV") and a short description of a si_code for it.
const char* signal_name(int sig);
const char* signal_code_text(int sig, int code);

}  // namespace asyncprobe::preload
