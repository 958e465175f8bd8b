// The diagnoses over hand-built models: the wait-for graph (cycles, dead owners, the two looks),
// await cycles that must hold in both looks, failed-coroutine grouping, orphan grouping. The
// expected answers are written from the models, not from the code's output.
#include "userspace/diagnose/diagnose.h"

#include <gtest/gtest.h>

#include "tests/unit/model_builders.h"

namespace asyncprobe::diagnose {
namespace {

using testing::suspended_frame;

model::ThreadInfo waiting(int tid, uint64_t lock, int owner,
                          const std::string& type = "pthread_mutex") {
  model::ThreadInfo t;
  t.tid = tid;
  t.syscall = "futex";
  t.syscall_nr = 202;
  t.lock_wait = model::LockWait{lock, type, owner, false};
  return t;
}

model::ThreadInfo idle(int tid) {
  model::ThreadInfo t;
  t.tid = tid;
  t.syscall = "futex";
  t.syscall_nr = 202;
  return t;
}

TEST(ThreadDeadlocks, ThreeThreadCycleFromItsLowestTid) {
  model::Snapshot s;
  s.threads = {waiting(30, 0x1000, 10), waiting(10, 0x2000, 20), waiting(20, 0x3000, 30), idle(40)};
  auto d = thread_deadlocks(s, nullptr);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].kind, model::Diagnosis::Kind::kThreadDeadlock);
  EXPECT_EQ(d[0].threads, (std::vector<int>{10, 20, 30}));
  ASSERT_EQ(d[0].locks.size(), 3u);
  EXPECT_EQ(d[0].locks[0].address, 0x2000u);  // 10 waits for 0x2000 held by 20
  EXPECT_EQ(d[0].locks[0].owner, 20);
  EXPECT_EQ(d[0].locks[0].waiters, (std::vector<int>{10}));
}

TEST(ThreadDeadlocks, ChainIntoALiveIdleOwnerIsNoDeadlock) {
  model::Snapshot s;
  s.threads = {waiting(1, 0x1000, 2), waiting(2, 0x2000, 3), idle(3)};
  EXPECT_TRUE(thread_deadlocks(s, nullptr).empty());
}

TEST(ThreadDeadlocks, WaitersOnAGoneOwnerAreOneDiagnosisPerLock) {
  model::Snapshot s;
  s.threads = {waiting(5, 0x1000, 99), waiting(6, 0x1000, 99), idle(7)};
  auto d = thread_deadlocks(s, nullptr);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].kind, model::Diagnosis::Kind::kLockOwnerGone);
  EXPECT_EQ(d[0].threads, (std::vector<int>{5, 6}));
  EXPECT_FALSE(d[0].locks[0].owner_alive);
  EXPECT_EQ(d[0].locks[0].owner, 99);
}

TEST(ThreadDeadlocks, BothLooksMustAgree) {
  model::Snapshot before, after;
  before.threads = {waiting(1, 0x1000, 2), idle(2)};
  after.threads = {waiting(1, 0x1000, 2), waiting(2, 0x2000, 1)};
  EXPECT_TRUE(thread_deadlocks(after, &before).empty());  // 2 was not waiting in the first look
  before.threads = after.threads;
  EXPECT_EQ(thread_deadlocks(after, &before).size(), 1u);
  before.threads[1].lock_wait->owner = 3;  // another owner then: not the same wait
  EXPECT_TRUE(thread_deadlocks(after, &before).empty());
}

TEST(ThreadDeadlocks, PiOwnerParkedOnItsOwnStack) {
  model::Snapshot s;
  model::ThreadInfo parked = idle(11);
  parked.sp = 0x7000;
  parked.stack_hi = 0x9000;
  parked.syscall_args[0] = 0x7100;  // a zero word on its own stack, no timeout
  s.threads = {parked, waiting(12, 0x5000, 11, "pthread_mutex_pi")};
  auto d = thread_deadlocks(s, nullptr);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].threads, (std::vector<int>{11, 12}));
  EXPECT_EQ(d[0].locks[0].address, 0x5000u);
  // The same shape on a plain mutex is a live owner doing something else: nothing.
  s.threads[1].lock_wait->type = "pthread_mutex";
  EXPECT_TRUE(thread_deadlocks(s, nullptr).empty());
}

model::Snapshot cycle_snapshot() {
  model::Snapshot s;
  s.frames = {suspended_frame(0x100, "a()", "x.cpp", 1, 0x200),
              suspended_frame(0x200, "b()", "x.cpp", 2, 0x100),
              suspended_frame(0x300, "c()", "x.cpp", 3)};
  return s;
}

TEST(AwaitCycles, HeldInBothLooksIsADiagnosis) {
  model::Snapshot s = cycle_snapshot();
  auto d = await_cycles(s, &s);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].frame_ids, (std::vector<size_t>{0, 1}));
  model::Snapshot before = cycle_snapshot();
  before.frames[1].suspend.index = 6;  // moved in between: torn or transient, not a deadlock
  EXPECT_TRUE(await_cycles(s, &before).empty());
}

TEST(FailedCoroutines, GroupedByTypeAndMessage) {
  model::Snapshot s = cycle_snapshot();
  s.frames[0].exception = model::HeldException{0x1, "std::runtime_error", "down", true, false, ""};
  s.frames[2].exception = s.frames[0].exception;
  s.frames[1].exception = model::HeldException{0x2, "int", "", false, false, ""};
  auto d = failed_coroutines(s);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0].frame_ids, (std::vector<size_t>{0, 2}));
  EXPECT_EQ(d[0].summary, "2 coroutines failed with std::runtime_error: \"down\" in a(), c()");
  EXPECT_EQ(d[1].frame_ids, (std::vector<size_t>{1}));
  EXPECT_EQ(d[1].exception->type, "int");
}

TEST(OrphanedCoroutines, IdenticalStacksAreOneEntry) {
  model::Snapshot s;
  for (uint64_t k = 0; k < 3; ++k) {
    s.frames.push_back(suspended_frame(0x1000 + k * 0x100, "root()", "y.cpp", 10));
    s.frames.push_back(
        suspended_frame(0x5000 + k * 0x100, "leaf()", "y.cpp", 20, 0x1000 + k * 0x100));
  }
  s.frames.push_back(suspended_frame(0x9000, "held()", "y.cpp", 30));
  for (size_t i = 0; i < 6; ++i) s.frames[i].orphaned = true;
  auto d = orphaned_coroutines(s, nullptr);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].frame_ids, (std::vector<size_t>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(d[0].summary.rfind("3x stack root() > leaf() can never resume", 0), 0u) << d[0].summary;
  model::Snapshot before = s;
  before.frames[0].orphaned = false;  // reachable in the first look: that stack is not counted
  auto d2 = orphaned_coroutines(s, &before);
  ASSERT_EQ(d2.size(), 2u);  // the root-less leaf is its own stack now
}

}  // namespace
}  // namespace asyncprobe::diagnose
