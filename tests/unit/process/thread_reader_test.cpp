// ThreadReader against a real child whose threads block in known syscalls.
#include "userspace/process/thread_reader.h"
#include "tests/unit/forked_child.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace asyncprobe {
namespace {

using testing::Child;
using testing::read_all;
using testing::write_all;

void name_thread(const char* name) { ::prctl(PR_SET_NAME, name); }

// The child: each thread parks in one syscall; the main thread blocks in read().
void blocking_threads_child(int cmd, int reply) {
  name_thread("ap-threads");
  static std::mutex m;
  static std::condition_variable cv;
  static volatile unsigned long spins = 0;
  std::thread([] {
    name_thread("ap-cv");
    std::unique_lock<std::mutex> lock(m);
    cv.wait(lock, [] { return false; });
  }).detach();
  std::thread([] {
    name_thread("ap-nanosleep");
    struct timespec ts = {100000, 0};
    ::syscall(SYS_nanosleep, &ts, nullptr);  // the raw call: glibc's nanosleep uses clock_nanosleep
  }).detach();
  std::thread([] {
    name_thread("ap-sleepfor");
    std::this_thread::sleep_for(std::chrono::hours(24));
  }).detach();
  std::thread([] {
    name_thread("ap-epoll");
    int ep = ::epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev;
    ::syscall(SYS_epoll_wait, ep, &ev, 1, -1);
  }).detach();
  std::thread([] {
    name_thread("ap-spin");
    for (;;) spins = spins + 1;  // volatile: a loop without side effects may be deleted
  }).detach();
  char c = 1;
  write_all(reply, &c, 1);
  (void)::read(cmd, &c, 1);
  ::_exit(0);
}

const std::map<std::string, std::string> kExpected = {
    {"ap-threads", "read"},        {"ap-cv", "futex"},
    {"ap-nanosleep", "nanosleep"}, {"ap-sleepfor", "clock_nanosleep"},
    {"ap-epoll", "epoll_wait"},    {"ap-spin", "running"},
};

bool all_settled(const process::ThreadReadResult& r) {
  if (r.threads.size() != kExpected.size()) return false;
  for (const auto& t : r.threads) {
    auto it = kExpected.find(t.name);
    if (it == kExpected.end() || it->second != t.syscall) return false;
  }
  return true;
}

TEST(ThreadReader, NamesTheSyscallEachThreadIsBlockedIn) {
  Child child(blocking_threads_child);
  ASSERT_TRUE(child.wait_ready());
  process::TargetProcess target = process::TargetProcess::open(child.pid());
  process::ThreadReadResult r;
  std::vector<process::Mapping> maps;
  for (int i = 0; i < 500; ++i) {
    maps = target.read_maps().mappings;
    r = process::read_threads(target, maps);
    if (all_settled(r)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::string seen = "threads:";
  for (const auto& t : r.threads) seen += " " + t.name + ":" + t.syscall + ":" + t.state;
  ASSERT_TRUE(all_settled(r)) << seen;
  EXPECT_EQ(r.vanished, 0u);
  EXPECT_EQ(r.syscall_unreadable, 0u);
  EXPECT_EQ(r.malformed, 0u);
  EXPECT_FALSE(r.truncated);

  const std::map<std::string, int64_t> numbers = {
      {"read", SYS_read},
      {"futex", SYS_futex},
      {"nanosleep", SYS_nanosleep},
      {"clock_nanosleep", SYS_clock_nanosleep},
      {"epoll_wait", SYS_epoll_wait},
      {"running", -1},
  };
  int prev_tid = 0;
  std::vector<uint64_t> stacks;
  for (const auto& t : r.threads) {
    SCOPED_TRACE(t.name);
    EXPECT_GT(t.tid, prev_tid);  // ascending
    prev_tid = t.tid;
    EXPECT_EQ(t.syscall_nr, numbers.at(t.syscall));
    if (t.syscall == "running") {
      EXPECT_EQ(t.state, 'R');
      EXPECT_EQ(t.sp, 0u);
      EXPECT_EQ(t.pc, 0u);
      EXPECT_EQ(t.stack_lo, 0u);
      continue;
    }
    EXPECT_EQ(t.state, 'S');
    ASSERT_NE(t.sp, 0u);
    EXPECT_LE(t.stack_lo, t.sp);
    EXPECT_LT(t.sp, t.stack_hi);
    const process::Mapping* stack = process::find_mapping(maps, t.sp);
    ASSERT_NE(stack, nullptr);
    EXPECT_EQ(stack->start, t.stack_lo);
    EXPECT_EQ(stack->end, t.stack_hi);
    const process::Mapping* code = process::find_mapping(maps, t.pc);
    ASSERT_NE(code, nullptr);
    EXPECT_TRUE(code->perms.exec);
    if (t.tid == child.pid()) {
      EXPECT_EQ(t.name, "ap-threads");
      EXPECT_EQ(stack, process::main_stack(maps));
    } else {
      EXPECT_EQ(process::classify(*stack), process::RegionKind::kAnonymous);
    }
    stacks.push_back(t.stack_lo);
  }
  std::sort(stacks.begin(), stacks.end());
  EXPECT_EQ(std::unique(stacks.begin(), stacks.end()), stacks.end());  // one stack per thread
  EXPECT_EQ(stacks.size(), 5u);
}

TEST(ThreadReader, ThreadsThatComeAndGoAreSkippedNotErrors) {
  Child child([](int cmd, int reply) {
    name_thread("ap-churn");
    char c = 1;
    write_all(reply, &c, 1);
    (void)cmd;
    for (;;) {
      std::thread([] { name_thread("ap-short"); }).join();
      // Paced: a tight loop would burn through the shared machine's PID space.
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  ASSERT_TRUE(child.wait_ready());
  process::TargetProcess target = process::TargetProcess::open(child.pid());
  auto maps = target.read_maps().mappings;
  for (int i = 0; i < 200; ++i) {
    process::ThreadReadResult r = process::read_threads(target, maps);
    ASSERT_FALSE(r.threads.empty());
    size_t mains = 0;
    for (const auto& t : r.threads) {
      if (t.tid == child.pid()) {
        ++mains;
        EXPECT_EQ(t.name, "ap-churn");
      }
      EXPECT_GT(t.tid, 0);
      EXPECT_NE(t.state, '?');
      EXPECT_TRUE(t.name == "ap-churn" || t.name == "ap-short") << t.name;
    }
    EXPECT_EQ(mains, 1u);
    EXPECT_EQ(r.malformed, 0u);
  }
}

TEST(ThreadReader, WholeProcessGoneIsATypedError) {
  Child child([](int cmd, int reply) {
    char c = 1;
    write_all(reply, &c, 1);
    (void)::read(cmd, &c, 1);
  });
  ASSERT_TRUE(child.wait_ready());
  process::TargetProcess target = process::TargetProcess::open(child.pid());
  auto maps = target.read_maps().mappings;
  EXPECT_EQ(process::read_threads(target, maps).threads.size(), 1u);
  child.kill_and_reap();
  try {
    process::read_threads(target, maps);
    ADD_FAILURE() << "no error for a reaped process";
  } catch (const process::TargetError& e) {
    EXPECT_EQ(e.code(), util::kExitTargetExited);
  }
}

TEST(ThreadReader, MaxThreadsTruncates) {
  process::TargetProcess self = process::TargetProcess::open(::getpid());
  std::thread sleeper([] { std::this_thread::sleep_for(std::chrono::milliseconds(300)); });
  process::ThreadReadOptions opt;
  opt.max_threads = 1;
  process::ThreadReadResult r = process::read_threads(self, self.read_maps().mappings, opt);
  EXPECT_EQ(r.threads.size(), 1u);
  EXPECT_TRUE(r.truncated);
  sleeper.join();
}

// The same threads through read_thread_files (how a preloaded target's socket serves them): the
// task list as text, each file through a reader.
TEST(ThreadReader, TaskFilesFromAnotherSourceGiveTheSameThreads) {
  Child child(blocking_threads_child);
  ASSERT_TRUE(child.wait_ready());
  process::TargetProcess target = process::TargetProcess::open(child.pid());
  process::TaskFileReader from_proc = [&target](const std::string& leaf, size_t max,
                                                std::string* out) {
    return target.read_proc_file(leaf.c_str(), max, out);
  };
  process::ThreadReadResult direct, served;
  for (int i = 0; i < 500; ++i) {
    std::vector<process::Mapping> maps = target.read_maps().mappings;
    direct = process::read_threads(target, maps);
    std::string list;
    for (auto it = direct.threads.rbegin(); it != direct.threads.rend(); ++it)
      list += std::to_string(it->tid) + "\n";  // any order: the result is sorted
    bool truncated = true;
    served = process::read_thread_files(
        target.pid(), process::parse_task_list(list, {}, &truncated), from_proc, maps);
    EXPECT_FALSE(truncated);
    if (all_settled(direct) && all_settled(served)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(served.threads.size(), direct.threads.size());
  for (size_t i = 0; i < direct.threads.size(); ++i) {
    const model::ThreadInfo &a = direct.threads[i], &b = served.threads[i];
    EXPECT_EQ(b.tid, a.tid);
    EXPECT_EQ(b.name, a.name);
    EXPECT_EQ(b.syscall, a.syscall);
    EXPECT_EQ(b.stack_lo, a.stack_lo);
    EXPECT_EQ(b.stack_hi, a.stack_hi);
  }

  // A syscall file the source refuses keeps the thread, without a syscall or sp; a stat it does
  // not serve means the thread is gone.
  std::vector<process::Mapping> maps = target.read_maps().mappings;
  process::TaskFileReader refusing = [&](const std::string& leaf, size_t max, std::string* out) {
    if (leaf.find("/syscall") != std::string::npos) return EACCES;
    return from_proc(leaf, max, out);
  };
  process::ThreadReadResult refused =
      process::read_thread_files(target.pid(), {target.pid(), 999999999}, refusing, maps);
  ASSERT_EQ(refused.threads.size(), 1u);
  EXPECT_EQ(refused.threads[0].tid, target.pid());
  EXPECT_EQ(refused.threads[0].syscall, "");
  EXPECT_EQ(refused.threads[0].sp, 0u);
  EXPECT_EQ(refused.syscall_unreadable, 1u);
  EXPECT_EQ(refused.vanished, 1u);
}

TEST(ParseTaskList, KeepsOnlyThreadIdsAndBoundsTheCount) {
  bool truncated = true;
  EXPECT_EQ(process::parse_task_list("12\n7\n", {}, &truncated), (std::vector<int>{12, 7}));
  EXPECT_FALSE(truncated);
  EXPECT_EQ(process::parse_task_list("1\n-4\n0\nabc\n\n99999999999\n 5\n6", {}, &truncated),
            (std::vector<int>{1, 6}));
  EXPECT_FALSE(truncated);
  process::ThreadReadOptions two;
  two.max_threads = 2;
  EXPECT_EQ(process::parse_task_list("1\n2\n3\n", two, &truncated), (std::vector<int>{1, 2}));
  EXPECT_TRUE(truncated);
}

TEST(SyscallTable, MatchesTheKernelNumbers) {
  const std::vector<std::pair<long, const char*>> required = {
      {SYS_read, "read"},
      {SYS_write, "write"},
      {SYS_poll, "poll"},
      {SYS_select, "select"},
      {SYS_nanosleep, "nanosleep"},
      {SYS_clock_nanosleep, "clock_nanosleep"},
      {SYS_futex, "futex"},
      {SYS_epoll_wait, "epoll_wait"},
      {SYS_epoll_pwait, "epoll_pwait"},
      {SYS_epoll_pwait2, "epoll_pwait2"},
      {SYS_accept, "accept"},
      {SYS_accept4, "accept4"},
      {SYS_recvfrom, "recvfrom"},
      {SYS_recvmsg, "recvmsg"},
      {SYS_sendto, "sendto"},
      {SYS_connect, "connect"},
      {SYS_wait4, "wait4"},
      {SYS_pause, "pause"},
      {SYS_ppoll, "ppoll"},
      {SYS_pselect6, "pselect6"},
      {SYS_io_uring_enter, "io_uring_enter"},
      {SYS_rt_sigsuspend, "rt_sigsuspend"},
      {SYS_rt_sigtimedwait, "rt_sigtimedwait"},
      {SYS_futex_waitv, "futex_waitv"},
      {SYS_waitid, "waitid"},
      {SYS_sendmsg, "sendmsg"},
      {SYS_recvmmsg, "recvmmsg"},
      {SYS_sendmmsg, "sendmmsg"},
      {SYS_io_getevents, "io_getevents"},
      {SYS_io_pgetevents, "io_pgetevents"},
      {SYS_semtimedop, "semtimedop"},
      {SYS_msgrcv, "msgrcv"},
      {SYS_flock, "flock"},
      {SYS_mq_timedreceive, "mq_timedreceive"},
      {SYS_clone3, "clone3"},
      {SYS_openat, "openat"},
      {SYS_getrandom, "getrandom"},
  };
  for (const auto& [nr, name] : required) {
    ASSERT_NE(process::syscall_name_x86_64(nr), nullptr) << name;
    EXPECT_STREQ(process::syscall_name_x86_64(nr), name);
  }
  EXPECT_EQ(process::syscall_name_x86_64(-1), nullptr);
  EXPECT_EQ(process::syscall_name_x86_64(100000), nullptr);
  EXPECT_EQ(process::syscall_name_x86_64(SYS_set_mempolicy_home_node), nullptr);
}

TEST(ParseSyscallFile, KernelFormats) {
  auto s = process::parse_syscall_file("running\n");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->kind, process::SyscallState::Kind::kRunning);
  EXPECT_EQ(s->nr, -1);

  s = process::parse_syscall_file(
      "202 0x7f12a4c0 0x80 0x0 0x0 0x0 0xffffffffffffffff 0x7ffd1a2b3c40 0x7f12a4a8e4d6\n");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->kind, process::SyscallState::Kind::kInSyscall);
  EXPECT_EQ(s->nr, 202);
  EXPECT_EQ(s->args[0], 0x7f12a4c0u);
  EXPECT_EQ(s->args[1], 0x80u);
  EXPECT_EQ(s->args[5], UINT64_MAX);
  EXPECT_EQ(s->sp, 0x7ffd1a2b3c40u);
  EXPECT_EQ(s->pc, 0x7f12a4a8e4d6u);

  s = process::parse_syscall_file("-1 0x7ffd1a2b3c40 0x401000\n");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->kind, process::SyscallState::Kind::kNotInSyscall);
  EXPECT_EQ(s->sp, 0x7ffd1a2b3c40u);
  EXPECT_EQ(s->pc, 0x401000u);
}

TEST(ParseSyscallFile, RejectsHostileText) {
  const std::vector<std::string> bad = {
      "",
      "\n",
      "runnin",
      "running now",
      "202",
      "202 0x1 0x2",
      "abc 0x0 0x0 0x0 0x0 0x0 0x0 0x0 0x0",
      "-2 0x1 0x2",
      "-1 0x1",
      "-1 0x1 0x2 0x3",
      "202 0x0 0x0 0x0 0x0 0x0 0x0 0x0 0x0 0x0",              // ten fields
      "202 1 2 3 4 5 6 7 8",                                  // no 0x
      "202 0x 0x0 0x0 0x0 0x0 0x0 0x0 0x0",                   // empty hex
      "202 0x11112222333344445 0x0 0x0 0x0 0x0 0x0 0x0 0x0",  // 17 hex digits
      "202 0xABC 0x0 0x0 0x0 0x0 0x0 0x0 0x0",                // the kernel prints lowercase
      "202  0x0 0x0 0x0 0x0 0x0 0x0 0x0 0x0",                 // double space
      "202 0x0 0x0 0x0 0x0 0x0 0x0 0x0 0x0 ",                 // trailing space
      "99999999999 0x0 0x0 0x0 0x0 0x0 0x0 0x0 0x0",
      "-",
      std::string(600, '1'),
  };
  for (const auto& b : bad) EXPECT_FALSE(process::parse_syscall_file(b)) << b;
}

}  // namespace
}  // namespace asyncprobe
