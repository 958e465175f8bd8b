// The stuck check's rules on hand-made looks: memory evidence between looks, and what a resume
// probe's counts decide (the probe itself runs against real processes in
// tests/integration/stuck_check_test.cpp).
#include "userspace/snapshot/stuck_check.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/unit/model_builders.h"

namespace asyncprobe {
namespace {

using model::StuckEvidence;

model::CoroFrame make_frame(uint64_t address, const std::string& function, int line, int64_t index,
                            uint64_t fingerprint = 0x1111) {
  model::CoroFrame f = testing::suspended_frame(address, function, "srv.cpp", line, 0, index, "");
  f.fingerprint = fingerprint;
  f.fingerprint_bytes = 64;
  return f;
}

model::Snapshot snapshot_of(std::vector<model::CoroFrame> frames) {
  model::Snapshot s;
  s.pid = 4242;
  s.frames = std::move(frames);
  return s;
}

TEST(StuckCheck, FirstLookDecidesNothing) {
  snapshot::StuckCheck check;
  model::Snapshot s = snapshot_of({make_frame(0x1000, "a", 10, 4)});
  check.observe(s, 100.0);
  EXPECT_EQ(s.frames[0].stuck_evidence, StuckEvidence::kNotChecked);
  EXPECT_FALSE(s.frames[0].stuck);
  EXPECT_FALSE(s.frames[0].unchanged);
  EXPECT_EQ(s.window_seconds, 0.0);
}

TEST(StuckCheck, MemoryEvidenceNeverSaysStuck) {
  snapshot::StuckCheck check;
  model::Snapshot before = snapshot_of({
      make_frame(0x1000, "a", 10, 4),          // looks the same
      make_frame(0x2000, "b", 20, 4),          // moves to index 6
      make_frame(0x3000, "c", 30, 4),          // freed, address reused by another coroutine
      make_frame(0x4000, "d", 40, 4),          // gone
      make_frame(0x6000, "f", 60, 4, 0xaaaa),  // same point, bytes changed
  });
  check.observe(before, 100.0);
  model::CoroFrame reused = make_frame(0x3000, "other", 30, 4);
  reused.destroy_fn = 0x409000;
  model::Snapshot after =
      snapshot_of({make_frame(0x1000, "a", 10, 4), make_frame(0x2000, "b", 22, 6), reused,
                   make_frame(0x5000, "e", 50, 4), make_frame(0x6000, "f", 60, 4, 0xbbbb)});
  check.observe(after, 101.5);
  EXPECT_DOUBLE_EQ(after.window_seconds, 1.5);
  const StuckEvidence want[] = {StuckEvidence::kUnchangedNoProbe,
                                StuckEvidence::kSuspendPointChanged, StuckEvidence::kRecreated,
                                StuckEvidence::kNew, StuckEvidence::kContentChanged};
  for (size_t i = 0; i < after.frames.size(); ++i) {
    EXPECT_FALSE(after.frames[i].stuck) << i;
    EXPECT_EQ(after.frames[i].stuck_evidence, want[i]) << i;
    EXPECT_EQ(after.frames[i].unchanged, i == 0) << i;
  }
  EXPECT_DOUBLE_EQ(after.frames[0].unchanged_for_s, 1.5);
}

TEST(StuckCheck, UnchangedForGrowsAcrossLooks) {
  snapshot::StuckCheck check;
  for (double t : {10.0, 11.0, 13.0}) {
    model::Snapshot s = snapshot_of({make_frame(0x1000, "a", 10, 4)});
    check.observe(s, t);
    if (t == 13.0) {
      EXPECT_DOUBLE_EQ(s.frames[0].unchanged_for_s, 3.0);
    }
  }
  model::Snapshot moved = snapshot_of({make_frame(0x1000, "a", 10, 4, 0x2222)});
  check.observe(moved, 14.0);
  EXPECT_FALSE(moved.frames[0].unchanged);
  model::Snapshot again = snapshot_of({make_frame(0x1000, "a", 10, 4, 0x2222)});
  check.observe(again, 15.0);
  EXPECT_DOUBLE_EQ(again.frames[0].unchanged_for_s, 1.0);
}

// A probe result for the frames of one function over [start, end].
snapshot::ResumeProbeResult probe_result(double start, double end, bool hot, double hot_at,
                                         std::vector<std::pair<uint64_t, uint64_t>> entries) {
  snapshot::ResumeProbeResult r;
  r.started_at_s = start;
  r.ended_at_s = end;
  snapshot::ResumeProbeFunctionResult f;
  f.attached = true;
  f.hot = hot;
  f.attached_at_s = start;
  f.covered_until_s = hot ? hot_at : end;
  r.functions.push_back(f);
  for (auto [a, n] : entries) {
    r.entries[a] = n;
    r.hits += n;
  }
  return r;
}

snapshot::ResumeProbeRequest request_for(std::vector<uint64_t> frames) {
  snapshot::ResumeProbeRequest req;
  req.pid = 4242;
  snapshot::ResumeProbeFunction f;
  f.frames = std::move(frames);
  req.functions.push_back(f);
  return req;
}

TEST(StuckCheck, ProbeDecidesUnchangedFrames) {
  snapshot::StuckCheck check;
  model::Snapshot first =
      snapshot_of({make_frame(0x1000, "idle", 10, 4), make_frame(0x2000, "busy", 20, 4),
                   make_frame(0x3000, "written", 30, 4, 0x1)});
  check.observe(first, 100.0);
  const snapshot::ResumeProbeRequest req = request_for({0x1000, 0x2000, 0x3000});
  model::Snapshot second =
      snapshot_of({make_frame(0x1000, "idle", 10, 4), make_frame(0x2000, "busy", 20, 4),
                   make_frame(0x3000, "written", 30, 4, 0x2)});
  check.observe(second, 101.1);
  check.apply_probe(
      req, probe_result(100.1, 101.2, false, 0, {{0x1000, 0}, {0x2000, 57}, {0x3000, 0}}), second);
  const model::CoroFrame& idle = second.frames[0];
  EXPECT_TRUE(idle.stuck);
  EXPECT_FALSE(idle.unchanged);
  EXPECT_EQ(idle.stuck_evidence, StuckEvidence::kResumeProbe);
  EXPECT_EQ(idle.resumes, 0);
  EXPECT_DOUBLE_EQ(idle.stuck_for_s, 101.1 - 100.1);
  const model::CoroFrame& busy = second.frames[1];
  EXPECT_FALSE(busy.stuck);
  EXPECT_FALSE(busy.unchanged);
  EXPECT_EQ(busy.stuck_evidence, StuckEvidence::kResumed);
  EXPECT_EQ(busy.resumes, 57);
  // Bytes changed at the same suspend point, and no entry over the whole window: not resumed,
  // so stuck (an object living in the frame was changed by others, or an operation completed
  // into it and its resume has not run for the rest of the window).
  const model::CoroFrame& written = second.frames[2];
  EXPECT_TRUE(written.stuck);
  EXPECT_EQ(written.stuck_evidence, StuckEvidence::kResumeProbe);
  EXPECT_EQ(written.resumes, 0);
  EXPECT_TRUE(second.stuck_probe.ran);
  EXPECT_EQ(second.stuck_probe.frames, 3u);
}

// Bytes changed and the probe was not there for the whole window (hot), or saw entries: the
// memory evidence stands, or the probe's.
TEST(StuckCheck, ChangedBytesNeedAWholeWindowWithoutEntries) {
  snapshot::StuckCheck check;
  model::Snapshot first =
      snapshot_of({make_frame(0x1000, "a", 10, 4, 0x1), make_frame(0x2000, "b", 20, 4, 0x1)});
  check.observe(first, 100.0);
  model::Snapshot second =
      snapshot_of({make_frame(0x1000, "a", 10, 4, 0x2), make_frame(0x2000, "b", 20, 4, 0x2)});
  check.observe(second, 101.1);
  check.apply_probe(request_for({0x1000, 0x2000}),
                    probe_result(100.1, 101.2, true, 100.3, {{0x1000, 0}, {0x2000, 3}}), second);
  EXPECT_FALSE(second.frames[0].stuck);
  EXPECT_FALSE(second.frames[0].unchanged);
  EXPECT_EQ(second.frames[0].stuck_evidence, StuckEvidence::kContentChanged);
  EXPECT_FALSE(second.frames[1].stuck);
  EXPECT_EQ(second.frames[1].stuck_evidence, StuckEvidence::kContentChanged);
  EXPECT_EQ(second.frames[1].resumes, 3);
}

TEST(StuckCheck, HotFunctionDetachedEarlyLeavesUnchanged) {
  snapshot::StuckCheck check;
  model::Snapshot first = snapshot_of({make_frame(0x1000, "a", 10, 4)});
  check.observe(first, 100.0);
  model::Snapshot second = snapshot_of({make_frame(0x1000, "a", 10, 4)});
  check.observe(second, 101.1);
  check.apply_probe(request_for({0x1000}), probe_result(100.1, 101.2, true, 100.3, {{0x1000, 0}}),
                    second);
  EXPECT_FALSE(second.frames[0].stuck);
  EXPECT_TRUE(second.frames[0].unchanged);
  EXPECT_EQ(second.frames[0].stuck_evidence, StuckEvidence::kUnchangedProbeHot);
  EXPECT_EQ(second.stuck_probe.functions_hot, 1u);
}

TEST(StuckCheck, FrameNewerThanTheProbeIsNotJudged) {
  snapshot::StuckCheck check;
  model::Snapshot first = snapshot_of({});
  check.observe(first, 100.0);
  model::Snapshot second = snapshot_of({make_frame(0x1000, "a", 10, 4)});
  check.observe(second, 101.0);
  // The frame is first seen at 101.0, after a probe that started at 100.1.
  check.apply_probe(request_for({0x1000}), probe_result(100.1, 101.2, false, 0, {{0x1000, 0}}),
                    second);
  EXPECT_FALSE(second.frames[0].stuck);
  EXPECT_EQ(second.frames[0].stuck_evidence, StuckEvidence::kNew);
}

// A daemon keeps one window open and reads the counts at every look: the stretch grows.
TEST(StuckCheck, OneOpenWindowReadAtEveryLookAccumulates) {
  snapshot::StuckCheck check;
  model::Snapshot s0 = snapshot_of({make_frame(0x1000, "a", 10, 4)});
  check.observe(s0, 100.0);
  const snapshot::ResumeProbeRequest req = request_for({0x1000});
  model::Snapshot s1 = snapshot_of({make_frame(0x1000, "a", 10, 4)});
  check.observe(s1, 102.0);
  check.apply_probe(req, probe_result(100.5, 102.0, false, 0, {{0x1000, 0}}), s1);
  EXPECT_DOUBLE_EQ(s1.frames[0].stuck_for_s, 1.5);
  model::Snapshot s2 = snapshot_of({make_frame(0x1000, "a", 10, 4)});
  check.observe(s2, 104.0);
  EXPECT_TRUE(s2.frames[0].stuck);  // still known for the covered stretch before the read
  check.apply_probe(req, probe_result(100.5, 104.0, false, 0, {{0x1000, 0}}), s2);
  EXPECT_DOUBLE_EQ(s2.frames[0].stuck_for_s, 3.5);
  // A resume seen later ends it.
  model::Snapshot s3 = snapshot_of({make_frame(0x1000, "a", 10, 4)});
  check.observe(s3, 106.0);
  check.apply_probe(req, probe_result(100.5, 106.0, false, 0, {{0x1000, 1}}), s3);
  EXPECT_FALSE(s3.frames[0].stuck);
  EXPECT_EQ(s3.frames[0].stuck_evidence, StuckEvidence::kResumed);
}

}  // namespace
}  // namespace asyncprobe
