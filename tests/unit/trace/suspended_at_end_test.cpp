// The trace's list of coroutines still suspended at the end (trace/suspended_at_end.h), on a
// hand-made end snapshot and hand-made trace events: identical async stacks merge into one counted
// group, only the innermost suspended coroutine of a chain starts a stack, a coroutine that ran
// during the trace is never "before the trace", and a deep chain keeps a bounded stack.
#include <gtest/gtest.h>

#include <string>
#include <unordered_map>
#include <vector>

#include "userspace/snapshot/async_stacks.h"
#include "userspace/trace/suspended_at_end.h"
#include "userspace/trace/trace_model.h"

namespace asyncprobe {
namespace {

model::CoroFrame frame(uint64_t address, const std::string& fn, int line, uint64_t awaiter) {
  model::CoroFrame f;
  f.address = address;
  f.resume_fn = 0x1000;
  f.destroy_fn = 0x2000;
  f.function = fn;
  f.state = model::FrameState::kSuspended;
  f.suspend.file = "/src/app.cpp";
  f.suspend.line = line;
  f.suspend.index = line;
  f.awaiter = awaiter;
  f.awaiter_rule =
      awaiter != 0 ? coro::AwaiterRule::kContinuationInPromise : coro::AwaiterRule::kNone;
  return f;
}

trace::ResumeEvent resume(uint32_t tid, uint64_t ts, uint32_t fn, uint64_t frame_address,
                          int64_t index) {
  trace::ResumeEvent e;
  e.tid = tid;
  e.ts = ts;
  e.fn = fn;
  e.frame = frame_address;
  e.index = index;
  return e;
}

trace::RunEndEvent run_end(uint32_t tid, uint64_t ts) {
  trace::RunEndEvent e;
  e.tid = tid;
  e.ts = ts;
  e.popped = 1;
  return e;
}

struct Fixture {
  model::Snapshot snap;
  std::unordered_map<uint64_t, uint64_t> at_start;
  trace::TraceModel model;

  Fixture() : model(functions(), trace::TraceModelOptions{}, nullptr) {}
  static std::vector<trace::TraceFunction> functions() {
    std::vector<trace::TraceFunction> f(3);
    f[0].name = "leaf()";
    f[1].name = "mid()";
    f[2].name = "root()";
    return f;
  }
  void started(uint64_t address, const std::string& fn) {
    at_start.emplace(address, trace::function_hash(fn));
  }
  trace::SuspendedAtEnd group() {
    const snapshot::AsyncForest forest = snapshot::build_async_forest(snap);
    trace::SuspendedAtEndInput in;
    in.last = &snap;
    in.forest = &forest;
    in.model = &model;
    in.at_start = &at_start;
    return trace::group_suspended_at_end(in);
  }
};

TEST(TraceSuspendedAtEnd, IdenticalChainsMergeAndOnlyTheInnermostStartsAStack) {
  Fixture fx;
  // Two chains leaf <- mid <- root, all there at the start, none resumed.
  for (uint64_t base : {0x10000u, 0x20000u}) {
    fx.snap.frames.push_back(frame(base + 0x100, "root()", 30, 0));
    fx.snap.frames.push_back(frame(base + 0x200, "mid()", 20, base + 0x100));
    fx.snap.frames.push_back(frame(base + 0x300, "leaf()", 10, base + 0x200));
    fx.started(base + 0x100, "root()");
    fx.started(base + 0x200, "mid()");
    fx.started(base + 0x300, "leaf()");
  }
  const trace::SuspendedAtEnd s = fx.group();
  EXPECT_EQ(s.coroutines, 6u);
  EXPECT_EQ(s.stacks, 2u);
  ASSERT_EQ(s.groups.size(), 1u);
  const trace::SuspendedGroup& g = s.groups[0];
  EXPECT_EQ(g.count, 2u);
  EXPECT_EQ(g.age, trace::SuspendedAge::kBeforeTrace);
  EXPECT_EQ(g.depth, 3u);
  ASSERT_EQ(g.async_stack.size(), 3u);
  EXPECT_EQ(g.async_stack[0].function, "leaf()");
  EXPECT_EQ(g.async_stack[0].line, 10);
  EXPECT_EQ(g.async_stack[1].function, "mid()");
  EXPECT_EQ(g.async_stack[2].function, "root()");
  EXPECT_EQ(g.async_stack[2].line, 30);
  EXPECT_FALSE(g.outermost.has_value());
  EXPECT_EQ(g.frames, (std::vector<uint64_t>{0x10300, 0x20300}));
}

TEST(TraceSuspendedAtEnd, ACoroutineThatRanIsNeverSuspendedBeforeTheTrace) {
  Fixture fx;
  // Three leaf() coroutines there at the start. 0xa ran from 100 to 150 and again from 300 to
  // 400 on thread 7; 0xb was resumed on thread 8 at 350 and is still running at the end; 0xc
  // never ran. 0xd appeared during the trace and never ran.
  fx.model.handle(resume(7, 100, 0, 0xa, 4));
  fx.model.handle(run_end(7, 150));
  fx.model.handle(resume(7, 300, 0, 0xa, 4));
  fx.model.handle(run_end(7, 400));
  fx.model.handle(resume(8, 350, 0, 0xb, 4));
  fx.model.finish(500);
  for (uint64_t a : {0xau, 0xbu, 0xcu}) {
    fx.snap.frames.push_back(frame(a, "leaf()", 10, 0));
    fx.started(a, "leaf()");
  }
  fx.snap.frames.push_back(frame(0xd, "leaf()", 10, 0));
  const trace::SuspendedAtEnd s = fx.group();
  EXPECT_EQ(s.coroutines, 3u) << "0xb runs for the trace (resumed while the snapshot was read)";
  ASSERT_EQ(s.groups.size(), 3u);
  EXPECT_EQ(s.groups[0].age, trace::SuspendedAge::kBeforeTrace);
  EXPECT_EQ(s.groups[0].frames, (std::vector<uint64_t>{0xc}));
  EXPECT_EQ(s.groups[1].age, trace::SuspendedAge::kExact);
  EXPECT_EQ(s.groups[1].frames, (std::vector<uint64_t>{0xa}));
  EXPECT_EQ(s.groups[1].since_min_ts, 400u);
  EXPECT_EQ(s.groups[1].since_max_ts, 400u);
  EXPECT_EQ(s.groups[2].age, trace::SuspendedAge::kNotStarted);
  EXPECT_EQ(s.groups[2].frames, (std::vector<uint64_t>{0xd}));
}

TEST(TraceSuspendedAtEnd, NotStartedAndDifferentPointsStayApart) {
  Fixture fx;
  fx.snap.frames.push_back(frame(0x1, "leaf()", 10, 0));
  fx.snap.frames.push_back(frame(0x2, "leaf()", 11, 0));
  fx.snap.frames.push_back(frame(0x3, "leaf()", 10, 0));
  fx.started(0x1, "leaf()");
  fx.started(0x2, "leaf()");
  fx.started(0x3, "mid()");  // the address held another coroutine at the start
  const trace::SuspendedAtEnd s = fx.group();
  ASSERT_EQ(s.groups.size(), 3u);
  EXPECT_EQ(s.groups[0].age, trace::SuspendedAge::kBeforeTrace);
  EXPECT_EQ(s.groups[1].age, trace::SuspendedAge::kBeforeTrace);
  EXPECT_EQ(s.groups[0].async_stack[0].line + s.groups[1].async_stack[0].line, 21);
  EXPECT_EQ(s.groups[2].age, trace::SuspendedAge::kNotStarted);
  EXPECT_EQ(s.groups[2].frames, (std::vector<uint64_t>{0x3}));
}

TEST(TraceSuspendedAtEnd, ADeepChainKeepsABoundedStackAndItsOutermostFrame) {
  Fixture fx;
  constexpr uint64_t kDepth = 5000;
  // root at 0x1000 (depth 0) ... leaf at the bottom; every frame awaits the one before.
  for (uint64_t i = 0; i < kDepth; ++i) {
    const std::string fn = i == 0 ? "root()" : i + 1 == kDepth ? "leaf()" : "mid()";
    fx.snap.frames.push_back(frame(0x1000 + i * 0x100, fn,
                                   i == 0            ? 30
                                   : i + 1 == kDepth ? 10
                                                     : 20,
                                   i == 0 ? 0 : 0x1000 + (i - 1) * 0x100));
  }
  const trace::SuspendedAtEnd s = fx.group();
  EXPECT_EQ(s.coroutines, kDepth);
  EXPECT_EQ(s.stacks, 1u);
  ASSERT_EQ(s.groups.size(), 1u);
  const trace::SuspendedGroup& g = s.groups[0];
  EXPECT_EQ(g.count, 1u);
  EXPECT_EQ(g.depth, kDepth);
  EXPECT_EQ(g.async_stack.size(), trace::SuspendedAtEnd::kShownDepth);
  EXPECT_EQ(g.async_stack.front().function, "leaf()");
  EXPECT_EQ(g.async_stack.back().function, "mid()");
  ASSERT_TRUE(g.outermost.has_value());
  EXPECT_EQ(g.outermost->function, "root()");
  EXPECT_EQ(g.outermost->line, 30);
}

TEST(TraceSuspendedAtEnd, AStopRequestEndsTheGroupingAndSaysSo) {
  Fixture fx;
  for (uint64_t i = 0; i < 10000; ++i)
    fx.snap.frames.push_back(frame(0x100 * (i + 1), "leaf()", 10, 0));
  const snapshot::AsyncForest forest = snapshot::build_async_forest(fx.snap);
  trace::SuspendedAtEndInput in;
  in.last = &fx.snap;
  in.forest = &forest;
  in.model = &fx.model;
  in.at_start = &fx.at_start;
  in.should_stop = [] { return true; };
  const trace::SuspendedAtEnd s = trace::group_suspended_at_end(in);
  EXPECT_TRUE(s.interrupted);
  EXPECT_TRUE(s.groups.empty());
}

}  // namespace
}  // namespace asyncprobe
