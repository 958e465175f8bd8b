#include "userspace/snapshot/stuck_detector.h"
#include "tests/unit/model_builders.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace asyncprobe {
namespace {

model::CoroFrame make_frame(uint64_t address, const std::string& function, int line,
                            int64_t index) {
  return testing::suspended_frame(address, function, "srv.cpp", line, 0, index, "");
}

model::Snapshot snapshot_of(std::vector<model::CoroFrame> frames) {
  model::Snapshot s;
  s.pid = 4242;
  s.frames = std::move(frames);
  return s;
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
