// The trace's accounting rules (docs/TRACE.md) on hand-made events (trace_events.h): runs ended
// by transfers, nesting and boundaries; exact suspended intervals per suspend point; frames
// reused or resumed on another thread; percentiles; event ordering; unknown ids; the stall cap.
// Malformed ring-buffer records are the kernel session's (tests/unit/kernel/).
#include <gtest/gtest.h>

#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "userspace/trace/trace_model.h"

namespace asyncprobe {
namespace {

constexpr bool kPush = false, kReplace = true;

trace::ResumeEvent resume(uint32_t tid, uint64_t ts, uint32_t fn, uint64_t frame, int64_t index,
                          bool replaces_top, uint32_t popped = 0, uint64_t continuation = 0) {
  trace::ResumeEvent e;
  e.tid = tid;
  e.ts = ts;
  e.fn = fn;
  e.frame = frame;
  e.index = index;
  e.replaces_top = replaces_top;
  e.popped = popped;
  e.promise[0] = continuation;
  return e;
}

trace::RunEndEvent run_end(uint32_t tid, uint64_t ts, uint32_t popped) {
  trace::RunEndEvent e;
  e.tid = tid;
  e.ts = ts;
  e.popped = popped;
  return e;
}

trace::DestroyEvent destroy(uint32_t tid, uint64_t ts, uint32_t fn, uint64_t frame) {
  trace::DestroyEvent e;
  e.tid = tid;
  e.ts = ts;
  e.fn = fn;
  e.frame = frame;
  return e;
}

trace::StallEvent stall(uint32_t tid, uint64_t start_ts, uint64_t end_ts) {
  trace::StallEvent e;
  e.tid = tid;
  e.ts = end_ts;
  e.start_ts = start_ts;
  e.nr = 232;  // epoll_wait
  return e;
}

void feed(trace::TraceModel& m, const trace::TraceEvent& e) { m.handle(e); }

std::vector<trace::TraceFunction> two_functions() {
  std::vector<trace::TraceFunction> f(2);
  f[0].name = "a()";
  f[1].name = "b()";
  return f;
}

TEST(TraceDurationStats, NearestRankPercentilesOverEverySample) {
  trace::DurationStats d;
  EXPECT_EQ(d.percentile(50), 0u);
  for (uint64_t v = 100; v >= 1; --v) d.add(v);  // unsorted on purpose
  EXPECT_EQ(d.count(), 100u);
  EXPECT_EQ(d.total_ns(), 5050u);
  EXPECT_EQ(d.max_ns(), 100u);
  EXPECT_EQ(d.percentile(50), 50u);
  EXPECT_EQ(d.percentile(99), 99u);
  EXPECT_EQ(d.percentile(100), 100u);
  EXPECT_EQ(d.percentile(0.5), 1u);
  trace::DurationStats one;
  one.add(7);
  EXPECT_EQ(one.percentile(50), 7u);
  EXPECT_EQ(one.percentile(99), 7u);
}

TEST(TraceModelRules, TransferEndsARunAndTheNextResumeClosesTheSuspendedInterval) {
  trace::TraceModel m(two_functions(), {}, nullptr);
  feed(m, resume(1, 100, 0, 0xa000, 4, kPush));
  feed(m, resume(1, 150, 1, 0xb000, 2, kReplace));  // a() transferred into b()
  feed(m, run_end(1, 170, 1));                      // b() returned to the loop
  feed(m, resume(1, 400, 0, 0xa000, 6, kPush));
  feed(m, run_end(1, 420, 1));
  m.finish(1000);
  const trace::FunctionStats& a = m.stats()[0];
  EXPECT_EQ(a.resumes, 2u);
  EXPECT_EQ(a.running_ns, 50u + 20u);
  EXPECT_EQ(a.suspended.count(), 1u);
  EXPECT_EQ(a.suspended.total_ns(), 250u);   // 150 -> 400
  EXPECT_EQ(a.suspended_unknown_start, 1u);  // its first resume: suspended before we saw it
  ASSERT_EQ(a.points.count(6), 1u);
  EXPECT_EQ(a.points.at(6).suspended.total_ns(), 250u);
  EXPECT_EQ(a.points.at(6).resumes, 1u);
  EXPECT_EQ(a.points.at(4).resumes, 1u);
  EXPECT_EQ(m.stats()[1].running_ns, 20u);
  EXPECT_EQ(m.stack_desyncs(), 0u);
  EXPECT_EQ(m.running_at_end(), 0u);
}

TEST(TraceModelRules, NestedRunsCountSelfTimeOnly) {
  trace::TraceModel m(two_functions(), {}, nullptr);
  feed(m, resume(1, 0, 0, 0xa000, 2, kPush));
  feed(m, resume(1, 10, 1, 0xb000, 2, kPush));  // b() resumed inside a()
  feed(m, run_end(1, 20, 1));                   // b() is over, a() goes on
  feed(m, run_end(1, 50, 1));
  m.finish(100);
  EXPECT_EQ(m.stats()[0].running_ns, 10u + 30u);
  EXPECT_EQ(m.stats()[1].running_ns, 10u);
}

TEST(TraceModelRules, AResumeOnAnotherThreadEndsTheRunStillOpenOnTheFirst) {
  trace::TraceModel m(two_functions(), {}, nullptr);
  feed(m, resume(1, 0, 0, 0xa000, 2, kPush));
  feed(m, resume(2, 30, 0, 0xa000, 4, kPush));  // thread 1 never showed its end
  feed(m, run_end(1, 80, 1));                   // ... until now: already closed
  feed(m, run_end(2, 90, 1));
  m.finish(100);
  const trace::FunctionStats& a = m.stats()[0];
  EXPECT_EQ(a.resumes, 2u);
  EXPECT_EQ(a.running_ns, 30u + 60u);
  EXPECT_EQ(a.suspended.count(), 0u);  // no interval between the two runs
  EXPECT_EQ(a.suspended_unknown_start, 2u);
  EXPECT_EQ(m.stack_desyncs(), 0u);
}

TEST(TraceModelRules, DestroyedFramesAndReusedAddressesStartOver) {
  trace::TraceModel m(two_functions(), {}, nullptr);
  feed(m, resume(1, 0, 0, 0xa000, 2, kPush));
  feed(m, run_end(1, 10, 1));
  feed(m, destroy(1, 20, 0, 0xa000));
  feed(m, resume(1, 50, 1, 0xa000, 2, kPush));  // same address, another coroutine
  feed(m, run_end(1, 60, 1));
  feed(m, resume(1, 70, 1, 0xa000, 4, kPush));
  m.finish(100);
  EXPECT_EQ(m.stats()[0].destroys, 1u);
  EXPECT_EQ(m.stats()[1].resumes, 2u);
  EXPECT_EQ(m.stats()[1].suspended_unknown_start, 1u);
  EXPECT_EQ(m.stats()[1].suspended.total_ns(), 10u);
  EXPECT_EQ(m.running_at_end(), 1u);
  auto fe = m.frame_at_end(0xa000);
  ASSERT_TRUE(fe.has_value());
  EXPECT_EQ(fe->fn, 1u);
  EXPECT_TRUE(fe->running);
}

TEST(TraceModelRules, TimelineFlowsGoFromAwaiterToAwaited) {
  trace::TraceModelOptions opts;
  opts.keep_slices = true;
  trace::TraceModel m(two_functions(), opts, nullptr);
  feed(m, resume(1, 0, 0, 0xa000, 2, kPush));
  // b() starts with a() as its continuation (promise word 0), by symmetric transfer.
  feed(m, resume(1, 10, 1, 0xb000, 2, kReplace, 0, 0xa000));
  feed(m, run_end(1, 20, 1));
  feed(m, resume(1, 30, 1, 0xb000, 4, kPush, 0, 0xa000));  // no new flow
  feed(m, run_end(1, 40, 1));
  m.finish(100);
  ASSERT_EQ(m.slices().size(), 3u);
  ASSERT_EQ(m.flows().size(), 1u);
  EXPECT_EQ(m.slices()[m.flows()[0].from_slice].fn, 0u);
  EXPECT_EQ(m.slices()[m.flows()[0].to_slice].fn, 1u);
  EXPECT_EQ(m.slices()[0].end, 10u);
}

TEST(TraceModelRules, UnknownFunctionsAndUnseenRunsAreCountedNotTrusted) {
  trace::TraceModel m(two_functions(), {}, nullptr);
  feed(m, resume(1, 0, 77, 0xa000, 2, kPush));  // no function 77
  feed(m, destroy(1, 5, 99, 0xa000));
  feed(m, run_end(5, 10, 3));  // pops runs that were never pushed
  m.finish(100);
  EXPECT_EQ(m.unknown_functions(), 2u);
  EXPECT_EQ(m.stack_desyncs(), 1u);
  EXPECT_EQ(m.stats()[0].resumes + m.stats()[1].resumes, 0u);
}

// Stalls past max_stalls are counted, not kept: one recorded, two dropped (one from an event,
// one still in progress at the end).
TEST(TraceModelRules, StallsPastTheCapAreCountedAsDropped) {
  trace::TraceModelOptions opts;
  opts.max_stalls = 1;
  trace::TraceModel m(two_functions(), opts, nullptr);
  feed(m, stall(1, 100, 20'000'000));
  feed(m, stall(1, 30'000'000, 50'000'000));
  trace::ThreadStateAtEnd st;
  st.tid = 1;
  st.ran_since_wait = true;
  st.wait_exit_ts = 60'000'000;
  m.finish(90'000'000);
  m.add_in_progress(st, 90'000'000, 10'000'000, 10'000'000);
  ASSERT_EQ(m.stalls().size(), 1u);
  EXPECT_EQ(m.stalls()[0].start_ts, 100u);
  EXPECT_EQ(m.stalls()[0].end_ts, 20'000'000u);
  EXPECT_EQ(m.stalls_dropped(), 2u);
}

TEST(TraceReorderRules, ReleasesInTimestampOrderKeepingEqualTimesInArrivalOrder) {
  trace::TraceReorder r(100);
  auto push = [&](uint64_t ts, uint32_t tid) {
    trace::ThreadExitEvent e;
    e.tid = tid;
    e.ts = ts;
    r.push(e);
  };
  push(1000, 1);
  push(990, 2);
  push(1000, 3);
  push(1200, 4);
  std::vector<uint32_t> out;
  auto sink = [&](const trace::TraceEvent& e) { out.push_back(trace::header_of(e).tid); };
  r.release(sink, false);  // newest is 1200: everything up to 1100 goes
  EXPECT_EQ(out, (std::vector<uint32_t>{2, 1, 3}));
  r.release(sink, true);
  EXPECT_EQ(out, (std::vector<uint32_t>{2, 1, 3, 4}));
  EXPECT_EQ(r.pending(), 0u);
}

// Leaf waits (profile --await --trace, docs/PROFILE.md): P (fn 0) awaits C (fn 1), C waits 1000
// times at index 4; P resumes at index 6 when C is done.
constexpr uint64_t kP = 0x1000, kC = 0x2000;

trace::TraceModel leaf_wait_model() {
  trace::TraceModelOptions o;
  o.leaf_waits = true;
  return trace::TraceModel(two_functions(), o, nullptr);
}

// C's 1000 waits (the first from 120 to 1000, then 90 ns each), ending at t = 100'000.
void feed_child_waits(trace::TraceModel& m) {
  feed(m, resume(1, 100, 0, kP, 2, kPush));
  feed(m, resume(1, 110, 1, kC, 0, kReplace, 0, kP));  // P awaits C from here
  feed(m, run_end(1, 120, 1));
  for (uint64_t k = 0; k < 1000; ++k) {
    feed(m, resume(1, 1000 + k * 100, 1, kC, 4, kPush, 0, kP));
    feed(m, run_end(1, 1010 + k * 100, 1));
  }
}

// C waiting at 4 under P at 6, leaf first.
const std::vector<std::pair<uint32_t, int64_t>> kCUnderP = {{1, 4}, {0, 6}};

// Ends the trace at `end_ns` with an end snapshot that shows P suspended at 6 and C at 4.
std::vector<trace::LeafWaitStack> end_with_both_suspended(trace::TraceModel& m, uint64_t end_ns) {
  m.finish(end_ns);
  const std::unordered_map<uint64_t, int64_t> at_end = {{kP, 6}, {kC, 4}};
  m.close_open_waits(end_ns, at_end);
  m.resolve_pending(at_end);
  return m.take_leaf_waits();
}

TEST(TraceLeafWaits, CountOnlyTheInnermostWaitAndSumPerChainUntilTheParentResumes) {
  trace::TraceModel m = leaf_wait_model();
  feed_child_waits(m);
  feed(m, resume(1, 200'000, 0, kP, 6, kPush));  // C done: P resumes at index 6
  const std::vector<trace::LeafWaitStack> waits = m.take_leaf_waits();
  ASSERT_EQ(waits.size(), 1u);
  const std::vector<std::pair<uint32_t, int64_t>> want = {{1, 4}, {0, 6}};
  EXPECT_EQ(waits[0].stack, want);
  EXPECT_EQ(waits[0].count, 1000u);
  EXPECT_EQ(waits[0].total_ns, 880u + 999u * 90u);
  EXPECT_EQ(waits[0].coroutine, kC);
  EXPECT_FALSE(waits[0].uncertain);
  const trace::LeafWaitCounters& c = m.leaf_wait_counters();
  EXPECT_EQ(c.waits, 1000u);
  EXPECT_EQ(c.awaited, 1u);        // P's interval: C's waits, not P's
  EXPECT_EQ(c.unknown_start, 2u);  // P's and C's first resumes
  EXPECT_EQ(c.in_flight_max, 1u);  // 1000 waits, one chain in flight
  EXPECT_EQ(c.unresolved_points, 0u);
}

TEST(TraceLeafWaits, AParentThatNeverResumesHasAnUnknownPointUnlessASnapshotGivesIt) {
  trace::TraceModel m = leaf_wait_model();
  feed_child_waits(m);
  const std::vector<trace::LeafWaitStack> unknown = m.take_leaf_waits();
  ASSERT_EQ(unknown.size(), 1u);
  const std::vector<std::pair<uint32_t, int64_t>> want_unknown = {{1, 4}, {0, -1}};
  EXPECT_EQ(unknown[0].stack, want_unknown);
  EXPECT_EQ(m.leaf_wait_counters().unresolved_points, 1000u);

  trace::TraceModel end = leaf_wait_model();
  feed_child_waits(end);
  // C's open wait counts to the end; P's point comes from the end snapshot.
  const std::vector<trace::LeafWaitStack> known = end_with_both_suspended(end, 300'000);
  ASSERT_EQ(known.size(), 1u);
  EXPECT_EQ(known[0].stack, kCUnderP);
  EXPECT_EQ(known[0].count, 1001u);
  EXPECT_EQ(known[0].total_ns, 880u + 999u * 90u + (300'000u - 100'910u));
  EXPECT_EQ(end.leaf_wait_counters().open_at_end, 1u);
  EXPECT_EQ(end.leaf_wait_counters().unresolved_points, 0u);
}

TEST(TraceLeafWaits, CoroutinesSuspendedAtTheStartWaitFromTheStart) {
  trace::TraceModel m = leaf_wait_model();
  m.seed_suspended(kP, 0, 50, 6, 0, false, true);
  m.seed_suspended(kC, 1, 50, 4, kP, false, false);
  feed(m, resume(1, 150, 1, kC, 4, kPush, 0, kP));
  feed(m, run_end(1, 160, 1));
  m.finish(1000);
  m.close_open_waits(1000, {});  // no end snapshot: C's open wait is not counted
  const std::vector<trace::LeafWaitStack> waits = m.take_leaf_waits();
  ASSERT_EQ(waits.size(), 1u);
  const std::vector<std::pair<uint32_t, int64_t>> want = {{1, 4}, {0, 6}};  // P's seeded point
  EXPECT_EQ(waits[0].stack, want);
  EXPECT_EQ(waits[0].count, 1u);
  EXPECT_EQ(waits[0].total_ns, 100u);
  EXPECT_EQ(m.leaf_wait_counters().clipped_at_start, 1u);
  EXPECT_EQ(m.leaf_wait_counters().open_unconfirmed, 1u);
}

// A child resumed inside its parent's run (GCC -O0 symmetric transfer is a call): the parent is
// awaiting it from then on, so at the end only the child's open wait counts.
TEST(TraceLeafWaits, AChildResumedInsideItsParentsRunMakesTheParentAwaited) {
  trace::TraceModel m = leaf_wait_model();
  feed(m, resume(1, 100, 0, kP, 2, kPush));
  feed(m, resume(1, 110, 1, kC, 0, kPush, 0, kP));  // nested in P's run
  feed(m, run_end(1, 130, 2));                      // both runs end
  const std::vector<trace::LeafWaitStack> waits = end_with_both_suspended(m, 1000);
  ASSERT_EQ(waits.size(), 1u);
  EXPECT_EQ(waits[0].stack, kCUnderP);
  EXPECT_EQ(waits[0].total_ns, 870u);
  EXPECT_EQ(m.leaf_wait_counters().open_at_end, 1u);
}

}  // namespace
}  // namespace asyncprobe
