#include "userspace/preload/code_patch.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#include <climits>

namespace asyncprobe::preload {

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kReach = 0x7fff0000ull;  // a little under 2 GiB

long raw_syscall3(long nr, long a, long b, long c) {
  long ret;
  asm volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
  return ret;
}

}  // namespace

void* map_near(uint64_t lo, uint64_t hi, size_t bytes, uint64_t margin) {
  bytes = (bytes + kPage - 1) & ~(kPage - 1);
  uint64_t span = hi - lo;
  if (span + bytes + margin >= kReach) return nullptr;
  uint64_t reach = kReach - span - bytes - margin;
  // Candidates just past the module, then just before it, stepping away in 1 MiB strides.
  for (uint64_t step = 1ull << 20; step < reach; step += 1ull << 20) {
    for (int side = 0; side < 2; ++side) {
      uint64_t want =
          side == 0 ? ((hi + step) & ~(kPage - 1)) : ((lo - step - bytes) & ~(kPage - 1));
      if (side == 1 && lo < step + bytes + kPage) continue;
      void* p = mmap(reinterpret_cast<void*>(want), bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
      if (p == MAP_FAILED) continue;
      uint64_t got = reinterpret_cast<uint64_t>(p);
      uint64_t top = got + bytes > hi ? got + bytes : hi;
      uint64_t bottom = got < lo ? got : lo;
      if (top - bottom < kReach) return p;
      munmap(p, bytes);
    }
  }
  return nullptr;
}

bool seal_code(void* region, size_t bytes) {
  bytes = (bytes + kPage - 1) & ~(kPage - 1);
  return mprotect(region, bytes, PROT_READ | PROT_EXEC) == 0;
}

bool write_code(uint64_t addr, const void* bytes, size_t n) {
  uint64_t first = addr & ~(kPage - 1);
  uint64_t last = (addr + n + kPage - 1) & ~(kPage - 1);
  long len = static_cast<long>(last - first);
  if (raw_syscall3(SYS_mprotect, static_cast<long>(first), len, PROT_READ | PROT_WRITE) != 0)
    return false;
  volatile unsigned char* dst = reinterpret_cast<volatile unsigned char*>(addr);
  const unsigned char* src = static_cast<const unsigned char*>(bytes);
  for (size_t i = 0; i < n; ++i) dst[i] = src[i];
  return raw_syscall3(SYS_mprotect, static_cast<long>(first), len, PROT_READ | PROT_EXEC) == 0;
}

}  // namespace asyncprobe::preload
