// MemoryReader against real forked children whose memory we fill with known bytes.
#include "userspace/process/memory_reader.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "tests/unit/forked_child.h"
#include "userspace/process/process_maps.h"
#include "userspace/process/target_process.h"

namespace asyncprobe {
namespace {

using testing::Child;
using testing::read_all;
using testing::write_all;

const size_t kPage = static_cast<size_t>(sysconf(_SC_PAGESIZE));

unsigned char pattern(size_t i) { return static_cast<unsigned char>(i * 131 + 7 + (i >> 12)); }

// Child: maps `pages` pages filled with pattern(), reports the address, then obeys commands:
// 1 = unmap the second page, 2 = exit.
void pattern_child(size_t pages, int cmd, int reply) {
  size_t len = pages * kPage;
  auto* p = static_cast<unsigned char*>(
      ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (p == MAP_FAILED) ::_exit(3);
  for (size_t i = 0; i < len; ++i) p[i] = pattern(i);
  uint64_t addr = reinterpret_cast<uint64_t>(p);
  write_all(reply, &addr, sizeof addr);
  for (;;) {
    uint64_t c;
    if (!read_all(cmd, &c, sizeof c) || c == 2) ::_exit(0);
    if (c == 1) {
      uint64_t ok = ::munmap(p + kPage, kPage) == 0 ? 1 : 0;
      write_all(reply, &ok, sizeof ok);
    }
  }
}

std::vector<unsigned char> expected(size_t from, size_t n) {
  std::vector<unsigned char> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = pattern(from + i);
  return v;
}

class MemoryReaderBackends : public ::testing::TestWithParam<process::MemoryReader::Backend> {};

TEST_P(MemoryReaderBackends, ReadsKnownContentsExactly) {
  Child child([](int c, int r) { pattern_child(3, c, r); });
  const uint64_t base = child.receive();
  ASSERT_NE(base, 0u);
  process::MemoryReader reader(child.pid(), GetParam());
  EXPECT_EQ(reader.backend(), GetParam() == process::MemoryReader::Backend::kProcMem
                                  ? process::MemoryReader::Backend::kProcMem
                                  : process::MemoryReader::Backend::kProcessVmReadv);

  std::vector<unsigned char> buf(3 * kPage, 0);
  ASSERT_TRUE(reader.read(base, buf.data(), buf.size()));
  EXPECT_EQ(buf, expected(0, 3 * kPage));

  uint64_t word;
  std::memcpy(&word, expected(8, 8).data(), 8);
  EXPECT_EQ(reader.read_u64(base + 8), std::optional<uint64_t>(word));
  EXPECT_EQ(reader.read_value<uint8_t>(base + kPage + 5),
            std::optional<uint8_t>(pattern(kPage + 5)));

  // More requests than IOV_MAX: batched, every value exact.
  constexpr size_t kN = 3000;
  std::vector<uint64_t> out(kN, 0);
  std::vector<process::ReadRequest> reqs(kN);
  for (size_t i = 0; i < kN; ++i) {
    reqs[i].addr = base + (i * 8) % (3 * kPage);
    reqs[i].out = &out[i];
    reqs[i].len = 8;
  }
  const uint64_t calls_before = reader.stats().syscalls;
  EXPECT_EQ(reader.read_batch(reqs), kN);
  for (size_t i = 0; i < kN; ++i) {
    uint64_t want;
    std::memcpy(&want, expected((i * 8) % (3 * kPage), 8).data(), 8);
    ASSERT_TRUE(reqs[i].ok) << i;
    ASSERT_EQ(out[i], want) << i;
  }
  const uint64_t calls = reader.stats().syscalls - calls_before;
  if (reader.backend() == process::MemoryReader::Backend::kProcessVmReadv) {
    EXPECT_EQ(calls, 3u);  // ceil(3000 / 1024) process_vm_readv calls
  } else {
    EXPECT_EQ(calls, kN);  // one pread each
  }
  EXPECT_EQ(reader.stats().failed_reads, 0u);
  EXPECT_EQ(reader.stats().bytes_read, 3 * kPage + 8 + 1 + kN * 8);
}

TEST_P(MemoryReaderBackends, UnmappedPageIsAFailureNotZeros) {
  Child child([](int c, int r) { pattern_child(3, c, r); });
  const uint64_t base = child.receive();
  child.send(1);
  ASSERT_EQ(child.receive(), 1u);
  process::MemoryReader reader(child.pid(), GetParam());

  std::vector<unsigned char> buf(3 * kPage, 0xAA);
  EXPECT_FALSE(reader.read(base, buf.data(), buf.size()));
  EXPECT_EQ(reader.read_prefix(base, buf.data(), buf.size()), kPage);
  EXPECT_TRUE(
      std::equal(buf.begin(), buf.begin() + static_cast<long>(kPage), expected(0, kPage).begin()));
  EXPECT_EQ(reader.read_u64(base + kPage), std::nullopt);
  EXPECT_EQ(reader.read_u64(base + kPage - 4), std::nullopt);  // straddles into the hole
  std::vector<unsigned char> last(kPage);
  ASSERT_TRUE(reader.read(base + 2 * kPage, last.data(), kPage));
  EXPECT_EQ(last, expected(2 * kPage, kPage));

  // A batch across IOV_MAX with holes at known places: exactly those fail.
  constexpr size_t kN = 2500;
  std::vector<uint64_t> out(kN, 0);
  std::vector<process::ReadRequest> reqs(kN);
  size_t holes = 0;
  for (size_t i = 0; i < kN; ++i) {
    bool hole = i % 97 == 3;
    holes += hole ? 1 : 0;
    size_t off = hole ? kPage + (i % 64) * 8 : (i % 2 == 0 ? 0 : 2 * kPage) + (i % 500) * 8;
    reqs[i] = {base + off, &out[i], 8, false};
  }
  EXPECT_EQ(reader.read_batch(reqs), kN - holes);
  for (size_t i = 0; i < kN; ++i) {
    bool hole = i % 97 == 3;
    ASSERT_EQ(reqs[i].ok, !hole) << i;
    if (!hole) {
      uint64_t want;
      std::memcpy(&want, expected(reqs[i].addr - base, 8).data(), 8);
      ASSERT_EQ(out[i], want) << i;
    }
  }

  // Chunked walk: two readable pages delivered, the hole skipped and counted.
  std::vector<std::pair<uint64_t, std::vector<unsigned char>>> pieces;
  process::ChunkScanStats st = reader.for_each_chunk(
      base, base + 3 * kPage, 1 << 20, [&](uint64_t a, std::span<const unsigned char> b) {
        pieces.emplace_back(a, std::vector<unsigned char>(b.begin(), b.end()));
        return true;
      });
  ASSERT_EQ(pieces.size(), 2u);
  EXPECT_EQ(pieces[0].first, base);
  EXPECT_EQ(pieces[0].second, expected(0, kPage));
  EXPECT_EQ(pieces[1].first, base + 2 * kPage);
  EXPECT_EQ(pieces[1].second, expected(2 * kPage, kPage));
  EXPECT_EQ(st.bytes_delivered, 2 * kPage);
  EXPECT_EQ(st.bytes_unreadable, kPage);
  EXPECT_EQ(st.callbacks, 2u);
  EXPECT_FALSE(st.stopped);
}

TEST_P(MemoryReaderBackends, ChunksALargeRegionWithBoundedPieces) {
  constexpr size_t kPages = (32u << 20) / 4096;
  Child child([](int c, int r) { pattern_child(kPages, c, r); });
  const uint64_t base = child.receive();
  process::MemoryReader reader(child.pid(), GetParam());
  const size_t len = kPages * kPage;
  uint64_t next = base;
  size_t mismatches = 0;
  process::ChunkScanStats st = reader.for_each_chunk(
      base, base + len, 1 << 20, [&](uint64_t a, std::span<const unsigned char> b) {
        EXPECT_EQ(a, next);
        EXPECT_LE(b.size(), 1u << 20);
        for (size_t i = 0; i < b.size(); ++i) mismatches += b[i] != pattern(a - base + i);
        next = a + b.size();
        return true;
      });
  EXPECT_EQ(mismatches, 0u);
  EXPECT_EQ(next, base + len);
  EXPECT_EQ(st.bytes_delivered, len);
  EXPECT_EQ(st.bytes_unreadable, 0u);
  EXPECT_EQ(st.callbacks, len / (1 << 20));

  // The callback can stop the walk.
  size_t calls = 0;
  st =
      reader.for_each_chunk(base, base + len, 1 << 20, [&](uint64_t, auto) { return ++calls < 3; });
  EXPECT_EQ(calls, 3u);
  EXPECT_TRUE(st.stopped);
}

TEST_P(MemoryReaderBackends, TargetExitingMidScanIsATypedError) {
  for (bool reap : {true, false}) {
    SCOPED_TRACE(reap ? "reaped" : "zombie");
    Child child([](int c, int r) { pattern_child((8u << 20) / 4096, c, r); });
    const uint64_t base = child.receive();
    process::MemoryReader reader(child.pid(), GetParam());
    size_t calls = 0;
    try {
      reader.for_each_chunk(
          base, base + (8u << 20), 1 << 20, [&](uint64_t, std::span<const unsigned char>) {
            if (++calls == 1) {
              ::kill(child.pid(), SIGKILL);
              if (reap) {
                child.kill_and_reap();
              } else {
                siginfo_t si;
                ::waitid(P_PID, static_cast<id_t>(child.pid()), &si, WEXITED | WNOWAIT);
              }
            }
            return true;
          });
      ADD_FAILURE() << "no error after the target died";
    } catch (const process::TargetError& e) {
      EXPECT_EQ(e.code(), util::kExitTargetExited);
      EXPECT_EQ(std::string(e.what()), "process " + std::to_string(child.pid()) +
                                           " exited while asyncprobe was reading it");
    }
    EXPECT_EQ(calls, 1u);
    EXPECT_FALSE(reader.target_alive());
    EXPECT_THROW(reader.read_u64(base), process::TargetError);
  }
}

INSTANTIATE_TEST_SUITE_P(All, MemoryReaderBackends,
                         ::testing::Values(process::MemoryReader::Backend::kAuto,
                                           process::MemoryReader::Backend::kProcessVmReadv,
                                           process::MemoryReader::Backend::kProcMem),
                         [](const auto& info) {
                           switch (info.param) {
                             case process::MemoryReader::Backend::kAuto:
                               return std::string("Auto");
                             case process::MemoryReader::Backend::kProcessVmReadv:
                               return std::string("VmReadv");
                             case process::MemoryReader::Backend::kProcMem:
                               return std::string("ProcMem");
                           }
                           return std::string("?");
                         });

// Makes process_vm_readv fail with `err` in the calling process, as container seccomp profiles
// do (Docker's default answers EPERM without CAP_SYS_PTRACE).
bool deny_process_vm_readv(int err) {
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_process_vm_readv, 0, 1),
      BPF_STMT(BPF_RET | BPF_K,
               SECCOMP_RET_ERRNO | (static_cast<unsigned>(err) & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

TEST(MemoryReader, FallsBackToProcMemWhenProcessVmReadvIsDenied) {
  Child target([](int c, int r) { pattern_child(2, c, r); });
  const uint64_t base = target.receive();
  const int target_pid = target.pid();
  for (int err : {EPERM, ENOSYS}) {
    SCOPED_TRACE(err);
    // The reader runs in its own child so the seccomp filter stays there.
    Child reader([=](int, int reply) {
      uint64_t result = 0;
      if (!deny_process_vm_readv(err)) {
        result = 100;
      } else {
        const std::vector<unsigned char> want = expected(0, 2 * kPage);
        std::vector<unsigned char> buf(2 * kPage);
        try {
          // Plain pid, kAuto: the first read hits the denial and switches backend.
          process::MemoryReader by_pid(target_pid);
          bool ok = by_pid.read(base, buf.data(), buf.size()) && buf == want &&
                    by_pid.backend() == process::MemoryReader::Backend::kProcMem;
          if (ok) result |= 1;
          // Through TargetProcess: its probe already knows, so the reader starts on /proc/PID/mem.
          process::TargetProcess t = process::TargetProcess::open(target_pid);
          process::MemoryReader by_target(t);
          std::fill(buf.begin(), buf.end(), 0);
          ok = !t.vm_readv_works() &&
               by_target.backend() == process::MemoryReader::Backend::kProcMem &&
               by_target.read(base, buf.data(), buf.size()) && buf == want &&
               by_target.stats().syscalls == 1;
          if (ok) result |= 2;
          // Forcing process_vm_readv gets failures, never zeros.
          process::MemoryReader forced(target_pid, process::MemoryReader::Backend::kProcessVmReadv);
          if (!forced.read(base, buf.data(), 8) && forced.stats().failed_reads == 1) result |= 4;
        } catch (const process::TargetError& e) {
          result = 200 + static_cast<uint64_t>(e.code());
        }
      }
      write_all(reply, &result, sizeof result);
    });
    EXPECT_EQ(reader.receive(), 7u);
  }
}

TEST(MemoryReader, HostileAddressesFailCleanly) {
  Child child([](int c, int r) { pattern_child(1, c, r); });
  const uint64_t base = child.receive();
  process::MemoryReader reader(child.pid());
  unsigned char buf[16];
  EXPECT_FALSE(reader.read(0, buf, 8));
  EXPECT_FALSE(reader.read(UINT64_MAX - 3, buf, 8));         // wraps around
  EXPECT_FALSE(reader.read(0xffff888000000000ull, buf, 8));  // kernel half
  EXPECT_FALSE(reader.read(base, nullptr, 8));
  EXPECT_TRUE(reader.read(base, buf, 0));
  EXPECT_EQ(reader.stats().failed_reads, 4u);
  EXPECT_EQ(reader.stats().bytes_read, 0u);
  process::ChunkScanStats st = reader.for_each_chunk(base + 10, base, 4096, [](uint64_t, auto) {
    ADD_FAILURE() << "empty range delivered bytes";
    return true;
  });
  EXPECT_EQ(st.callbacks, 0u);
  process::ReadRequest bad[3] = {
      {0, buf, 8, true}, {UINT64_MAX, buf, 2, true}, {base, buf, 0, false}};
  EXPECT_EQ(reader.read_batch(bad), 1u);
  EXPECT_FALSE(bad[0].ok);
  EXPECT_FALSE(bad[1].ok);
  EXPECT_TRUE(bad[2].ok);
}

TEST(MemoryReader, OpensFromTargetProcess) {
  Child child([](int c, int r) { pattern_child(1, c, r); });
  const uint64_t base = child.receive();
  process::TargetProcess target = process::TargetProcess::open(child.pid());
  process::MemoryReader reader(target);
  EXPECT_EQ(reader.pid(), child.pid());
  EXPECT_EQ(reader.backend(), process::MemoryReader::Backend::kProcessVmReadv);
  std::vector<unsigned char> buf(kPage);
  ASSERT_TRUE(reader.read(base, buf.data(), kPage));
  EXPECT_EQ(buf, expected(0, kPage));
  EXPECT_EQ(reader.stats().syscalls, 1u);
  EXPECT_TRUE(reader.target_alive());

  // A reader on a target that is already gone cannot be made.
  child.kill_and_reap();
  EXPECT_THROW(process::MemoryReader{target}, process::TargetError);
}

}  // namespace
}  // namespace asyncprobe
