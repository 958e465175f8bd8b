// The readers behind the diagnoses, on real objects of this process (a contended glibc mutex's
// bytes, a thrown std::runtime_error) and on hostile bytes: type_info pointers into garbage,
// message lengths of 2^40, condition-variable words. Memory is read through process_vm_readv on
// ourselves, so a bad pointer is a failed read, as in a real target.
#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>
#include <vector>

#include "userspace/process/exception_reader.h"
#include "userspace/process/lock_reader.h"

namespace asyncprobe::process {
namespace {

bool read_self(uint64_t addr, void* out, size_t len) {
  iovec local{out, len};
  iovec remote{reinterpret_cast<void*>(addr), len};
  return ::process_vm_readv(::getpid(), &local, 1, &remote, 1, 0) == static_cast<ssize_t>(len);
}

uint64_t addr_of(const void* p) { return reinterpret_cast<uint64_t>(p); }

struct MutexBytes {
  int lock;
  unsigned count;
  int owner;
  unsigned nusers;
  int kind;
  short spins, elision;
  void* prev;
  void* next;
};
static_assert(sizeof(MutexBytes) == sizeof(pthread_mutex_t));

std::optional<model::LockWait> decode(const MutexBytes& m, uint64_t op, uint64_t val) {
  uint64_t args[6] = {addr_of(&m), op, val, 0, 0, 0};
  return decode_futex_wait(args, addr_of(&m), reinterpret_cast<const uint8_t*>(&m), sizeof m);
}

TEST(LockReader, ContendedNormalMutexNamesItsOwner) {
  // The bytes glibc leaves in a std::mutex held by 4242 with a waiter (lock word 2).
  MutexBytes m{2, 0, 4242, 1, 0, 0, 0, nullptr, nullptr};
  auto w = decode(m, 128 /* FUTEX_WAIT|PRIVATE */, 2);
  ASSERT_TRUE(w);
  EXPECT_EQ(w->owner, 4242);
  EXPECT_EQ(w->type, "pthread_mutex");
  EXPECT_EQ(w->address, addr_of(&m));
  EXPECT_FALSE(w->owner_died);
}

TEST(LockReader, RealGlibcMutexLayout) {
  // A mutex locked by this thread: glibc writes our TID into __owner.
  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  pthread_mutex_lock(&mu);
  MutexBytes m;
  std::memcpy(&m, &mu, sizeof m);
  m.lock = 2;  // as a waiter would have left it
  auto w = decode(m, 128, 2);
  pthread_mutex_unlock(&mu);
  ASSERT_TRUE(w);
  EXPECT_EQ(w->owner, static_cast<int>(::gettid()));
}

TEST(LockReader, CondvarShapedWordsAreNotLocks) {
  MutexBytes m{0, 0, 4242, 1, 0, 0, 0, nullptr, nullptr};  // word 0: not a contended mutex
  EXPECT_FALSE(decode(m, 128 | 9, 0));
  MutexBytes odd{2, 0, 4242, 1, 0x4000, 0, 0, nullptr, nullptr};  // unknown kind bits
  EXPECT_FALSE(decode(odd, 128, 2));
  MutexBytes no_owner{2, 0, 0, 1, 0, 0, 0, nullptr, nullptr};
  EXPECT_FALSE(decode(no_owner, 128, 2));
  MutexBytes wake{2, 0, 4242, 1, 0, 0, 0, nullptr, nullptr};
  EXPECT_FALSE(decode(wake, 1 /* FUTEX_WAKE */, 2));
}

TEST(LockReader, PiAndRobustWordsCarryTheOwner) {
  MutexBytes pi{static_cast<int>(0x80000000u | 777), 0, 777, 1, 32, 0, 0, nullptr, nullptr};
  auto w = decode(pi, 128 | 6 /* FUTEX_LOCK_PI */, 0);
  ASSERT_TRUE(w);
  EXPECT_EQ(w->owner, 777);
  EXPECT_EQ(w->type, "pthread_mutex_pi");
  MutexBytes robust{static_cast<int>(0xc0000000u | 778), 0, 778, 1, 16, 0, 0, nullptr, nullptr};
  auto r = decode(robust, 128, 0xc0000000u | 778);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->owner, 778);
  EXPECT_TRUE(r->owner_died);
}

TEST(LockReader, WriteLockedRwlockNamesItsWriter) {
  pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
  ASSERT_EQ(pthread_rwlock_wrlock(&rw), 0);
  uint8_t bytes[80] = {};
  std::memcpy(bytes + 16, &rw, sizeof rw);
  pthread_rwlock_unlock(&rw);
  const uint64_t base = 0x100000;
  uint64_t args[6] = {base + 16 + 8 /* __wrphase_futex */, 128, 3, 0, 0, 0};
  auto w = decode_futex_wait(args, base, bytes, sizeof bytes);
  ASSERT_TRUE(w);
  EXPECT_EQ(w->type, "pthread_rwlock");
  EXPECT_EQ(w->owner, static_cast<int>(::gettid()));
  EXPECT_EQ(w->address, base + 16);
}

TEST(LockReader, WordOutsideTheBytesIsNothing) {
  uint8_t bytes[8] = {2, 0, 0, 0};
  uint64_t args[6] = {0x1004, 128, 2, 0, 0, 0};
  EXPECT_FALSE(decode_futex_wait(args, 0x1000, bytes, sizeof bytes));
  args[0] = ~uint64_t{0} - 1;
  EXPECT_FALSE(decode_futex_wait(args, 0x1000, bytes, sizeof bytes));
}

uint64_t thrown_object(const std::exception_ptr& e) {
  uint64_t object;
  std::memcpy(&object, &e, sizeof object);  // libstdc++: one pointer to the thrown object
  return object;
}

struct custom_failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

TEST(ExceptionReader, RuntimeErrorTypeAndMessage) {
  std::exception_ptr e = std::make_exception_ptr(std::runtime_error("payment backend refused"));
  model::HeldException ex = read_held_exception(thrown_object(e), read_self);
  EXPECT_EQ(ex.type, "std::runtime_error");
  EXPECT_TRUE(ex.has_what);
  EXPECT_EQ(ex.what, "payment backend refused");
  EXPECT_TRUE(ex.error.empty()) << ex.error;
}

TEST(ExceptionReader, SubclassAndNonClassTypes) {
  std::exception_ptr sub = std::make_exception_ptr(custom_failure("card expired"));
  model::HeldException s = read_held_exception(thrown_object(sub), read_self);
  EXPECT_EQ(s.type, "asyncprobe::process::(anonymous namespace)::custom_failure");
  EXPECT_EQ(s.what, "card expired");
  std::exception_ptr logic = std::make_exception_ptr(std::out_of_range("index 9"));
  EXPECT_EQ(read_held_exception(thrown_object(logic), read_self).what, "index 9");
  std::exception_ptr i = std::make_exception_ptr(42);
  model::HeldException n = read_held_exception(thrown_object(i), read_self);
  EXPECT_EQ(n.type, "int");
  EXPECT_FALSE(n.has_what);
}

TEST(ExceptionReader, LongMessageIsTruncatedAndSaysSo) {
  std::exception_ptr e = std::make_exception_ptr(std::runtime_error(std::string(5000, 'x')));
  model::HeldException ex = read_held_exception(thrown_object(e), read_self);
  EXPECT_EQ(ex.what.size(), ExceptionReadLimits{}.max_message);
  EXPECT_TRUE(ex.what_truncated);
}

// A fake target: `bytes` at `base`; everything else unreadable.
struct FakeMemory {
  uint64_t base;
  std::vector<uint8_t> bytes;
  bool operator()(uint64_t addr, void* out, size_t len) const {
    if (addr < base || addr - base > bytes.size() || bytes.size() - (addr - base) < len)
      return false;
    std::memcpy(out, bytes.data() + (addr - base), len);
    return true;
  }
  void put(uint64_t addr, uint64_t v) { std::memcpy(bytes.data() + (addr - base), &v, 8); }
};

TEST(ExceptionReader, HostileHeadersFailCleanly) {
  FakeMemory mem{0x10000, std::vector<uint8_t>(4096, 0xee)};
  const uint64_t object = 0x10000 + 1024;
  // type_info pointer into garbage (0xee bytes: not a mangled name).
  mem.put(object - 112, 0x10000 + 64);
  mem.put(0x10000 + 64 + 8, 0x10000 + 200);
  model::HeldException ex = read_held_exception(object, mem);
  EXPECT_TRUE(ex.type.empty());
  EXPECT_FALSE(ex.error.empty());
  // type_info pointer out of the mapped bytes.
  mem.put(object - 112, 0xdead0000);
  EXPECT_FALSE(read_held_exception(object, mem).error.empty());
  EXPECT_FALSE(read_held_exception(8, mem).error.empty());
}

TEST(ExceptionReader, MessageLengthOfTwoToTheFortyIsRejected) {
  // A real runtime_error copied into a fake target whose string header claims 2^40 bytes.
  std::exception_ptr e = std::make_exception_ptr(std::runtime_error("short"));
  const uint64_t object = thrown_object(e);
  model::HeldException real = read_held_exception(object, read_self);
  ASSERT_EQ(real.what, "short");
  uint64_t chars = 0;
  ASSERT_TRUE(read_self(object + 8, &chars, 8));
  auto hostile = [&](uint64_t addr, void* out, size_t len) {
    if (!read_self(addr, out, len)) return false;
    if (addr <= chars - 24 && chars - 24 < addr + len) {
      uint64_t huge = uint64_t{1} << 40;
      const size_t at = static_cast<size_t>(chars - 24 - addr);
      if (len - at >= 8) std::memcpy(static_cast<uint8_t*>(out) + at, &huge, 8);
    }
    return true;
  };
  model::HeldException ex = read_held_exception(object, hostile);
  EXPECT_EQ(ex.type, "std::runtime_error");
  EXPECT_FALSE(ex.has_what);
  EXPECT_NE(ex.error.find("implausible"), std::string::npos) << ex.error;
}

}  // namespace
}  // namespace asyncprobe::process
