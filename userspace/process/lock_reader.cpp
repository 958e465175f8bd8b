#include "userspace/process/lock_reader.h"

#include <cstring>

namespace asyncprobe::process {

namespace {

// linux include/uapi/linux/futex.h
constexpr uint64_t kFutexCmdMask = 0x7f;  // without FUTEX_PRIVATE_FLAG and FUTEX_CLOCK_REALTIME
constexpr uint64_t kFutexWait = 0;
constexpr uint64_t kFutexLockPi = 6;
constexpr uint64_t kFutexWaitBitset = 9;
constexpr uint64_t kFutexLockPi2 = 13;
constexpr uint32_t kFutexWaiters = 0x80000000u;
constexpr uint32_t kFutexOwnerDied = 0x40000000u;
constexpr uint32_t kFutexTidMask = 0x3fffffffu;

// glibc pthread_mutex_t (x86-64): int __lock; unsigned __count; int __owner; unsigned __nusers;
// int __kind; short __spins, __elision; list (16 bytes).
constexpr size_t kMutexOwner = 8, kMutexNusers = 12, kMutexKind = 16, kMutexSize = 40;
// __kind: the type in the low two bits, then flags (nptl/pthreadP.h).
constexpr int kKindRobust = 16, kKindPi = 32, kKindPp = 64, kKindPshared = 128;
constexpr int kKindElision = 256, kKindNoElision = 512;
constexpr int kKindKnownBits =
    3 | kKindRobust | kKindPi | kKindPp | kKindPshared | kKindElision | kKindNoElision;
// Robust owner values that name no thread (nptl/pthreadP.h).
constexpr int kOwnerInconsistent = 0x7fffffff, kOwnerNotRecoverable = 0x7ffffffe;

// glibc pthread_rwlock_t (x86-64, glibc >= 2.25): unsigned __readers, __writers,
// __wrphase_futex, __writers_futex, __pad3, __pad4; int __cur_writer, __shared; ...; unsigned
// __flags at 48. Readers wait on __wrphase_futex, writers on __writers_futex.
constexpr size_t kRwWrphase = 8, kRwWritersFutex = 12, kRwCurWriter = 24, kRwShared = 28;
constexpr size_t kRwFlags = 48, kRwSize = 56;
constexpr uint32_t kRwWrLocked = 2;  // __readers bit: write-locked (PTHREAD_RWLOCK_WRLOCKED)

// The bytes of [addr, addr + size) when the window holds them.
const uint8_t* view(uint64_t base, const uint8_t* bytes, size_t len, uint64_t addr, size_t size) {
  if (addr < base || addr - base > len || len - (addr - base) < size) return nullptr;
  return bytes + (addr - base);
}

uint32_t u32_at(const uint8_t* p, size_t off) {
  uint32_t v;
  std::memcpy(&v, p + off, sizeof v);
  return v;
}

bool plausible_tid(int64_t tid) { return tid > 0 && tid <= static_cast<int64_t>(kFutexTidMask); }

std::optional<model::LockWait> decode_mutex(const uint8_t* m, uint64_t addr, uint64_t expected) {
  const uint32_t word = u32_at(m, 0);
  const int owner = static_cast<int>(u32_at(m, kMutexOwner));
  const uint32_t nusers = u32_at(m, kMutexNusers);
  const int kind = static_cast<int>(u32_at(m, kMutexKind));
  if ((kind & ~kKindKnownBits) != 0 || (kind & (kKindPi | kKindPp)) != 0) return std::nullopt;
  model::LockWait w;
  w.address = addr;
  w.type = "pthread_mutex";
  if ((kind & kKindRobust) != 0) {
    // A robust waiter waits on the owner's TID with FUTEX_WAITERS set.
    const uint32_t tid = word & kFutexTidMask;
    if ((word & kFutexWaiters) == 0 || !plausible_tid(tid) || expected != word) return std::nullopt;
    if (owner != static_cast<int>(tid) && owner != kOwnerInconsistent &&
        owner != kOwnerNotRecoverable) {
      return std::nullopt;
    }
    w.owner = static_cast<int>(tid);
    w.owner_died = (word & kFutexOwnerDied) != 0;
    return w;
  }
  // A normal/recursive/errorcheck/adaptive waiter sets the word to 2 ("locked, waiters") and
  // waits for it to change from 2 (glibc __lll_lock_wait). The owner stores its TID in __owner.
  if (word != 2 || expected != 2 || !plausible_tid(owner) || nusers == 0 || nusers > (1u << 24)) {
    return std::nullopt;
  }
  w.owner = owner;
  return w;
}

// A PI futex: the kernel defines the word (owner TID, FUTEX_WAITERS, FUTEX_OWNER_DIED).
std::optional<model::LockWait> decode_pi(const uint8_t* m, uint64_t addr, const uint8_t* whole) {
  const uint32_t word = u32_at(m, 0);
  const uint32_t tid = word & kFutexTidMask;
  if (!plausible_tid(tid)) return std::nullopt;
  model::LockWait w;
  w.address = addr;
  w.type = "pi_futex";
  if (whole != nullptr) {
    const int kind = static_cast<int>(u32_at(whole, kMutexKind));
    const int owner = static_cast<int>(u32_at(whole, kMutexOwner));
    if ((kind & ~kKindKnownBits) == 0 && (kind & kKindPi) != 0 &&
        (owner == static_cast<int>(tid) || owner == kOwnerInconsistent ||
         owner == kOwnerNotRecoverable || owner == 0)) {
      w.type = "pthread_mutex_pi";
    }
  }
  w.owner = static_cast<int>(tid);
  w.owner_died = (word & kFutexOwnerDied) != 0;
  return w;
}

std::optional<model::LockWait> decode_rwlock(const uint8_t* rw, uint64_t addr) {
  const uint32_t readers = u32_at(rw, 0);
  const int writer = static_cast<int>(u32_at(rw, kRwCurWriter));
  const uint32_t shared = u32_at(rw, kRwShared);
  const uint32_t flags = u32_at(rw, kRwFlags);
  if ((readers & kRwWrLocked) == 0 || !plausible_tid(writer) || shared > 1 || flags > 2) {
    return std::nullopt;
  }
  model::LockWait w;
  w.address = addr;
  w.type = "pthread_rwlock";
  w.owner = writer;
  return w;
}

}  // namespace

std::optional<model::LockWait> decode_futex_wait(const uint64_t args[6], uint64_t base,
                                                 const uint8_t* bytes, size_t len) {
  if (bytes == nullptr) return std::nullopt;
  const uint64_t uaddr = args[0];
  const uint64_t op = args[1] & kFutexCmdMask;
  const uint8_t* word = view(base, bytes, len, uaddr, sizeof(uint32_t));
  if (word == nullptr || uaddr % 4 != 0) return std::nullopt;
  if (op == kFutexLockPi || op == kFutexLockPi2) {
    return decode_pi(word, uaddr, view(base, bytes, len, uaddr, kMutexSize));
  }
  if (op != kFutexWait && op != kFutexWaitBitset) return std::nullopt;
  const uint64_t expected = args[2] & 0xffffffffu;
  if (const uint8_t* m = view(base, bytes, len, uaddr, kMutexSize)) {
    if (auto w = decode_mutex(m, uaddr, expected)) return w;
  }
  // Write-locked rwlock: a reader waits on __wrphase_futex, a writer on __writers_futex.
  for (size_t off : {kRwWrphase, kRwWritersFutex}) {
    if (uaddr < off) continue;
    if (const uint8_t* rw = view(base, bytes, len, uaddr - off, kRwSize)) {
      if (auto w = decode_rwlock(rw, uaddr - off)) return w;
    }
  }
  return std::nullopt;
}

std::optional<model::LockWait> read_lock_wait(const model::ThreadInfo& thread,
                                              const ReadMemory& read) {
  if (thread.syscall_nr != kSyscallFutex || !read) return std::nullopt;
  const uint64_t uaddr = thread.syscall_args[0];
  if (uaddr < kLockWindowBefore) return std::nullopt;
  uint8_t buf[kLockWindowBefore + kLockWindowAfter];
  const uint64_t base = uaddr - kLockWindowBefore;
  if (read(base, buf, sizeof buf))
    return decode_futex_wait(thread.syscall_args, base, buf, sizeof buf);
  // The word may sit at the start of a mapping: try the part from the word on.
  if (read(uaddr, buf, kLockWindowAfter)) {
    return decode_futex_wait(thread.syscall_args, uaddr, buf, kLockWindowAfter);
  }
  return std::nullopt;
}

}  // namespace asyncprobe::process
