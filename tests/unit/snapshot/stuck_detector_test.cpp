#include "userspace/snapshot/stuck_detector.h"
#include "tests/unit/model_builders.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace asyncprobe {
namespace {

model::CoroFrame make_frame(uint64_t address, const std::string& function, int line, int64_t index) {
  return testing::suspended_frame(address, function, "srv.cpp", line, 0, index, "");
}

model::Snapshot snapshot_of(std::vector<model::CoroFrame> frames) {
  model::Snapshot s;
  s.pid = 4242;
  s.frames = std::move(frames);
  return s;
}

TEST(StuckDetector, MarksOnlyUnmovedFrames) {
  const model::Snapshot before = snapshot_of({
      make_frame(0x1000, "a", 10, 4),  // unchanged
      make_frame(0x2000, "b", 20, 4),  // moves to index 6
      make_frame(0x3000, "c", 30, 4),  // freed and the address reused by another coroutine
      make_frame(0x4000, "d", 40, 4),  // gone
  });
  model::CoroFrame reused = make_frame(0x3000, "other", 30, 4);
  reused.resume_fn = 0x409000;
  model::Snapshot after = snapshot_of({
      make_frame(0x1000, "a", 10, 4), make_frame(0x2000, "b", 22, 6), reused,
      make_frame(0x5000, "e", 50, 4),  // new
  });
  EXPECT_EQ(snapshot::mark_stuck(before, after, 1.5), 1u);
  EXPECT_TRUE(after.frames[0].stuck);
  EXPECT_DOUBLE_EQ(after.frames[0].stuck_for_s, 1.5);
  for (size_t i = 1; i < 4; ++i) {
    EXPECT_FALSE(after.frames[i].stuck) << i;
    EXPECT_EQ(after.frames[i].stuck_for_s, 0.0) << i;
  }
  EXPECT_DOUBLE_EQ(after.window_seconds, 1.5);
}

TEST(StuckDetector, StateAndDestroyFnMustMatch) {
  const model::Snapshot before =
      snapshot_of({make_frame(0x1000, "a", 10, 4), make_frame(0x2000, "b", 1, 4)});
  model::Snapshot after = before;
  after.frames[0].state = model::FrameState::kUnknown;
  after.frames[1].destroy_fn = 0x403000;
  EXPECT_EQ(snapshot::mark_stuck(before, after, 1.0), 0u);
}

TEST(StuckDetector, WindowZeroOrInvalidMarksNothing) {
  const model::Snapshot before = snapshot_of({make_frame(0x1000, "a", 10, 4)});
  for (double w : {0.0, -1.0, std::numeric_limits<double>::quiet_NaN(),
                   std::numeric_limits<double>::infinity()}) {
    model::Snapshot after = before;
    after.frames[0].stuck = true;  // stale mark from an earlier pass is cleared
    after.frames[0].stuck_for_s = 9.0;
    EXPECT_EQ(snapshot::mark_stuck(before, after, w), 0u);
    EXPECT_FALSE(after.frames[0].stuck);
    EXPECT_EQ(after.frames[0].stuck_for_s, 0.0);
    EXPECT_EQ(after.window_seconds, 0.0);
  }
}

TEST(StuckDetector, DifferentPidMarksNothing) {
  const model::Snapshot before = snapshot_of({make_frame(0x1000, "a", 10, 4)});
  model::Snapshot after = before;
  after.pid = 4243;
  EXPECT_EQ(snapshot::mark_stuck(before, after, 1.0), 0u);
}

TEST(StuckDetector, UnknownIndexIsNotEvidenceButDoneFramesAre) {
  model::CoroFrame unread = make_frame(0x1000, "a", 0, -1);
  model::CoroFrame done = make_frame(0x2000, "b", 0, -1);
  done.state = model::FrameState::kDone;
  done.resume_fn = 0;
  done.suspend.kind = model::SuspendPoint::Kind::kFinal;
  const model::Snapshot before = snapshot_of({unread, done});
  model::Snapshot after = before;
  EXPECT_EQ(snapshot::mark_stuck(before, after, 2.0), 1u);
  EXPECT_FALSE(after.frames[0].stuck);
  EXPECT_TRUE(after.frames[1].stuck);
}

TEST(StuckDetector, RepeatedSnapshotsAccumulate) {
  const model::Snapshot s0 = snapshot_of({make_frame(0x1000, "a", 10, 4)});
  model::Snapshot s1 = s0;
  snapshot::mark_stuck(s0, s1, 1.0);
  model::Snapshot s2 = s1;
  snapshot::mark_stuck(s1, s2, 2.0);
  EXPECT_DOUBLE_EQ(s2.frames[0].stuck_for_s, 3.0);
  model::Snapshot s3 = s2;
  s3.frames[0].suspend.index = 6;  // moved: history ends
  snapshot::mark_stuck(s2, s3, 1.0);
  EXPECT_FALSE(s3.frames[0].stuck);
}

TEST(StuckDetector, DuplicateAddressesInBefore) {
  model::CoroFrame torn = make_frame(0x1000, "a", 10, 4);
  torn.resume_fn = 0xbad;
  const model::Snapshot before = snapshot_of({torn, make_frame(0x1000, "a", 10, 4)});
  model::Snapshot after = snapshot_of({make_frame(0x1000, "a", 10, 4), make_frame(0x1000, "a", 10, 4)});
  EXPECT_EQ(snapshot::mark_stuck(before, after, 1.0), 2u);
}

TEST(StuckDetector, GroupsBySuspendPointLargestFirst) {
  model::Snapshot snap = snapshot_of({});
  auto add = [&](const std::string& fn, int line, int64_t index, double s) {
    model::CoroFrame f = make_frame(0x1000 + snap.frames.size() * 0x10, fn, line, index);
    f.stuck = s > 0;
    f.stuck_for_s = s;
    snap.frames.push_back(f);
  };
  add("read", 10, 4, 1.0);
  add("write", 20, 4, 1.0);
  add("read", 10, 6, 3.0);  // same line, other index: same point for the user
  add("idle", 5, 4, 0.0);   // not stuck
  add("write", 20, 4, 1.0);
  add("read", 10, 4, 2.0);
  add("alpha", 1, 4, 1.0);
  add("beta", 1, 4, 1.0);
  add("lost", 0, 8, 1.0);
  add("lost", 0, 10, 1.0);  // unplaced points stay apart
  const std::vector<snapshot::StuckGroup> g = snapshot::group_stuck(snap);
  ASSERT_EQ(g.size(), 6u);
  EXPECT_EQ(g[0].function, "read");
  EXPECT_EQ(g[0].frames, (std::vector<size_t>{0, 2, 5}));
  EXPECT_DOUBLE_EQ(g[0].stuck_for_s, 1.0);
  EXPECT_DOUBLE_EQ(g[0].max_stuck_for_s, 3.0);
  EXPECT_EQ(g[1].function, "write");
  EXPECT_EQ(g[1].count(), 2u);
  EXPECT_EQ(g[2].function, "alpha");
  EXPECT_EQ(g[3].function, "beta");
  EXPECT_EQ(g[4].function, "lost");
  EXPECT_EQ(g[4].index, 8);
  EXPECT_EQ(g[5].index, 10);
}

TEST(StuckDetector, LeavesAreFramesAwaitingNothing) {
  model::Snapshot snap = snapshot_of({});
  model::CoroFrame outer = make_frame(0x1000, "outer", 5, 4);
  model::CoroFrame inner = make_frame(0x2000, "inner", 9, 4);
  inner.awaiter = 0x1000;  // outer awaits inner
  model::CoroFrame lone = make_frame(0x3000, "outer", 5, 4);
  model::CoroFrame self = make_frame(0x4000, "outer", 5, 4);
  self.awaiter = 0x4000;  // a self-loop awaits nothing else: still a leaf
  for (model::CoroFrame* f : {&outer, &inner, &lone, &self}) {
    f->stuck = true;
    f->stuck_for_s = 1.0;
  }
  snap.frames = {outer, inner, lone, self};
  const std::vector<snapshot::StuckGroup> g = snapshot::group_stuck(snap);
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g[0].function, "outer");
  EXPECT_EQ(g[0].count(), 3u);
  EXPECT_EQ(g[0].leaf_frames, (std::vector<size_t>{2, 3}));
  EXPECT_EQ(g[1].function, "inner");
  EXPECT_EQ(g[1].leaf_frames, std::vector<size_t>{1});
}

TEST(StuckDetector, NothingStuckNoGroups) {
  const model::Snapshot snap = snapshot_of({make_frame(0x1000, "a", 10, 4)});
  EXPECT_TRUE(snapshot::group_stuck(snap).empty());
}

}  // namespace
}  // namespace asyncprobe
