#include "userspace/snapshot/async_stacks.h"
#include "tests/unit/model_builders.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

namespace asyncprobe {
namespace {

model::CoroFrame make_frame(uint64_t address, const std::string& function, int line,
                            uint64_t awaiter = 0) {
  return testing::suspended_frame(address, function, "demo.cpp", line, awaiter);
}

// A compact picture of the coalesced forest: "count*function" per node, children in braces.
std::string shape(const snapshot::AsyncForest& forest, size_t node) {
  const snapshot::StackNode& n = forest.nodes[node];
  std::string s = std::to_string(n.count()) + "*" + n.function;
  if (!n.children.empty()) {
    s += "{";
    for (size_t i = 0; i < n.children.size(); ++i) {
      if (i) s += ",";
      s += shape(forest, n.children[i]);
    }
    s += "}";
  }
  return s;
}

std::string shape(const snapshot::AsyncForest& forest) {
  std::string s;
  for (size_t t : forest.top_nodes) s += shape(forest, t) + ";";
  return s;
}

// Invariants that hold for any input: every frame in exactly one node, node members hang under
// members of the parent node, printed trees no deeper than the bound.
void check_invariants(const model::Snapshot& snap, const snapshot::AsyncForest& forest) {
  const size_t n = snap.frames.size();
  ASSERT_EQ(forest.links.size(), n);
  std::vector<int> seen(n, 0);
  std::vector<size_t> node_parent(forest.nodes.size(), snapshot::kNoFrame);
  for (size_t i = 0; i < forest.nodes.size(); ++i) {
    for (size_t c : forest.nodes[i].children) node_parent[c] = i;
  }
  for (size_t i = 0; i < forest.nodes.size(); ++i) {
    const snapshot::StackNode& node = forest.nodes[i];
    EXPECT_LT(node.depth, forest.max_depth);
    EXPECT_TRUE(std::is_sorted(node.frames.begin(), node.frames.end()));
    for (size_t f : node.frames) {
      ++seen[f];
      if (node_parent[i] == snapshot::kNoFrame) {
        EXPECT_EQ(forest.links[f].parent, snapshot::kNoFrame);
      } else {
        const auto& pf = forest.nodes[node_parent[i]].frames;
        EXPECT_TRUE(std::binary_search(pf.begin(), pf.end(), forest.links[f].parent));
      }
    }
  }
  for (size_t i = 0; i < n; ++i) EXPECT_EQ(seen[i], 1) << "frame " << i;
  size_t roots = 0;
  for (size_t i = 0; i < n; ++i) roots += forest.links[i].parent == snapshot::kNoFrame;
  EXPECT_EQ(roots, forest.roots.size());
}

TEST(AsyncStacks, EmptySnapshot) {
  model::Snapshot snap;
  const snapshot::AsyncForest forest = snapshot::build_async_forest(snap);
  EXPECT_TRUE(forest.roots.empty());
  EXPECT_TRUE(forest.nodes.empty());
  EXPECT_EQ(forest.stack_count(), 0u);
  EXPECT_EQ(forest.distinct_stack_count(), 0u);
  EXPECT_FALSE(forest.uncertain());
}

TEST(AsyncStacks, ChainLinksDepthsAndRoot) {
  model::Snapshot snap;
  // Listed leaf first to show placement does not depend on order.
  snap.frames.push_back(make_frame(0x3000, "leaf", 30, 0x2000));
  snap.frames.push_back(make_frame(0x2000, "middle", 20, 0x1000));
  snap.frames.push_back(make_frame(0x1000, "top", 10));
  const snapshot::AsyncForest forest = snapshot::build_async_forest(snap);
  check_invariants(snap, forest);
  EXPECT_EQ(forest.roots, std::vector<size_t>{2});
  EXPECT_EQ(forest.links[2].link, snapshot::LinkKind::kRoot);
  EXPECT_EQ(forest.links[1].link, snapshot::LinkKind::kLinked);
  EXPECT_EQ(forest.links[0].parent, 1u);
  EXPECT_EQ(forest.links[0].awaiter, 1u);
  EXPECT_EQ(forest.links[1].parent, 2u);
  EXPECT_EQ(forest.links[0].depth, 2u);
  EXPECT_EQ(forest.links[0].root, 2u);
  EXPECT_EQ(forest.links[2].depth, 0u);
  EXPECT_EQ(shape(forest), "1*top{1*middle{1*leaf}};");
  EXPECT_FALSE(forest.uncertain());
}

TEST(AsyncStacks, ThousandIdenticalChainsCoalesce) {
  model::Snapshot snap;
  for (uint64_t i = 0; i < 1000; ++i) {
    const uint64_t base = 0x100000 + i * 0x1000;
    snap.frames.push_back(make_frame(base, "handle_connection(int)", 40));
    snap.frames.push_back(make_frame(base + 0x100, "read_request(int)", 22, base));
    snap.frames.push_back(make_frame(base + 0x200, "read_line(int)", 10, base + 0x100));
  }
  snap.frames.push_back(make_frame(0x10, "idle_loop()", 80));
  const snapshot::AsyncForest forest = snapshot::build_async_forest(snap);
  check_invariants(snap, forest);
  EXPECT_EQ(forest.stack_count(), 1001u);
  EXPECT_EQ(forest.distinct_stack_count(), 2u);
  EXPECT_EQ(forest.nodes.size(), 4u);
  EXPECT_EQ(shape(forest),
            "1000*handle_connection(int){1000*read_request(int){1000*read_line(int)}};"
            "1*idle_loop();");
}

TEST(AsyncStacks, DivergingChainsOrderByCountThenName) {
  model::Snapshot snap;
  uint64_t a = 0x1000;
  auto add_chain = [&](const std::string& child) {
    const uint64_t root = a;
    snap.frames.push_back(make_frame(root, "serve", 5));
    snap.frames.push_back(make_frame(root + 8, child, 7, root));
    a += 0x100;
  };
  for (int i = 0; i < 4; ++i) add_chain("write_response");
  for (int i = 0; i < 6; ++i) add_chain("read_request");
  for (int i = 0; i < 4; ++i) add_chain("accept_more");
  snap.frames.push_back(make_frame(0x90000, "zeta", 1));
  snap.frames.push_back(make_frame(0x90100, "alpha", 1));
  const snapshot::AsyncForest forest = snapshot::build_async_forest(snap);
  check_invariants(snap, forest);
  EXPECT_EQ(shape(forest),
            "14*serve{6*read_request,4*accept_more,4*write_response};1*alpha;1*zeta;");
}

TEST(AsyncStacks, OrderIsIndependentOfInputOrder) {
  model::Snapshot snap;
  for (uint64_t i = 0; i < 50; ++i) {
    const uint64_t base = 0x100000 + i * 0x1000;
    snap.frames.push_back(make_frame(base, i % 3 ? "a" : "b", 1));
    snap.frames.push_back(make_frame(base + 0x10, i % 2 ? "c" : "d", 2, base));
    snap.frames.push_back(make_frame(base + 0x20, "e", static_cast<int>(i % 4), base + 0x10));
  }
  const std::string expected = shape(snapshot::build_async_forest(snap));
  std::mt19937 rng(7);
  for (int round = 0; round < 5; ++round) {
    std::shuffle(snap.frames.begin(), snap.frames.end(), rng);
    const snapshot::AsyncForest forest = snapshot::build_async_forest(snap);
    check_invariants(snap, forest);
    EXPECT_EQ(shape(forest), expected);
  }
}

TEST(AsyncStacks, WhenAllChildrenCountAsFrames) {
  model::Snapshot snap;
  snap.frames.push_back(make_frame(0x1000, "gather", 3));
  for (uint64_t i = 1; i <= 3; ++i)
    snap.frames.push_back(make_frame(0x1000 + i * 0x100, "fetch", 9, 0x1000));
  snap.frames.push_back(make_frame(0x2000, "timeout", 9, 0x1000));
  const snapshot::AsyncForest forest = snapshot::build_async_forest(snap);
  check_invariants(snap, forest);
  EXPECT_EQ(shape(forest), "1*gather{3*fetch,1*timeout};");
  EXPECT_EQ(forest.stack_count(), 1u);
}

TEST(AsyncStacks, TwoCycleIsCutAtLowestIndex) {
  model::Snapshot snap;
  snap.frames.push_back(make_frame(0x2000, "b", 2, 0x1000));  // a awaits b
  snap.frames.push_back(make_frame(0x1000, "a", 1, 0x2000));  // b awaits a
  const snapshot::AsyncForest forest = snapshot::build_async_forest(snap);
  check_invariants(snap, forest);
  ASSERT_EQ(forest.cycles.size(), 1u);
  // Frame 0 (b) is cut; b awaits a (a.awaiter == b), so the cycle reads b, a.
  EXPECT_EQ(forest.cycles[0].frames, (std::vector<size_t>{0, 1}));
  EXPECT_EQ(forest.links[0].link, snapshot::LinkKind::kCycle);
  EXPECT_EQ(forest.links[0].parent, snapshot::kNoFrame);
  EXPECT_EQ(forest.links[0].awaiter, 1u);  // still reported
  EXPECT_EQ(forest.links[1].parent, 0u);
  EXPECT_EQ(shape(forest), "1*b{1*a};");
  EXPECT_TRUE(forest.uncertain());
  EXPECT_TRUE(forest.nodes[forest.top_nodes[0]].uncertain());
}

TEST(AsyncStacks, SelfLoop) {
  model::Snapshot snap;
  snap.frames.push_back(make_frame(0x1000, "self", 1, 0x1000));
  snap.frames.push_back(make_frame(0x1100, "child", 2, 0x1000));
  const snapshot::AsyncForest forest = snapshot::build_async_forest(snap);
  check_invariants(snap, forest);
  ASSERT_EQ(forest.cycles.size(), 1u);
  EXPECT_EQ(forest.cycles[0].frames, std::vector<size_t>{0});
  EXPECT_EQ(forest.links[0].link, snapshot::LinkKind::kCycle);
  EXPECT_EQ(shape(forest), "1*self{1*child};");
}

TEST(AsyncStacks, LongCycleWithTail) {
  model::Snapshot snap;
  const uint64_t n = 1000;
  // c[i] awaits c[i+1] (c[i+1].awaiter == c[i]), closing at the end.
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t prev = 0x10000 + ((i + n - 1) % n) * 0x10;
    snap.frames.push_back(make_frame(0x10000 + i * 0x10, "ring", static_cast<int>(i + 1), prev));
  }
  snap.frames.push_back(make_frame(0x90000, "tail", 7, 0x10000 + 500 * 0x10));
  const snapshot::AsyncForest forest = snapshot::build_async_forest(snap);
  check_invariants(snap, forest);
  ASSERT_EQ(forest.cycles.size(), 1u);
  const auto& c = forest.cycles[0].frames;
  ASSERT_EQ(c.size(), n);
  for (size_t i = 0; i < n; ++i) EXPECT_EQ(c[i], i);
  EXPECT_EQ(forest.roots, std::vector<size_t>{0});
  EXPECT_EQ(forest.links[999].depth, 999u);
  EXPECT_EQ(forest.links[1000].depth, 501u);
  EXPECT_EQ(forest.links[1000].root, 0u);
}

TEST(AsyncStacks, SeveralCyclesFoundOnce) {
  model::Snapshot snap;
  snap.frames.push_back(make_frame(0x10, "x", 1, 0x20));
  snap.frames.push_back(make_frame(0x20, "y", 1, 0x10));
  snap.frames.push_back(make_frame(0x30, "z", 1, 0x30));
  snap.frames.push_back(make_frame(0x40, "w", 1, 0x20));
  const snapshot::AsyncForest forest = snapshot::build_async_forest(snap);
  check_invariants(snap, forest);
  ASSERT_EQ(forest.cycles.size(), 2u);
  EXPECT_EQ(forest.cycles[0].frames, (std::vector<size_t>{0, 1}));
  EXPECT_EQ(forest.cycles[1].frames, std::vector<size_t>{2});
}

TEST(AsyncStacks, DepthBoundAt5000) {
  model::Snapshot snap;
  const size_t n = 5000;
  for (size_t i = 0; i < n; ++i) {
    snap.frames.push_back(
        make_frame(0x100000 + i * 0x40, "recurse", 12, i == 0 ? 0 : 0x100000 + (i - 1) * 0x40));
  }
  const snapshot::AsyncForest forest = snapshot::build_async_forest(snap);
  check_invariants(snap, forest);
  EXPECT_EQ(forest.max_depth, 4096u);
  ASSERT_EQ(forest.depth_cuts.size(), 1u);
  EXPECT_EQ(forest.depth_cuts[0].frame, 4096u);
  EXPECT_EQ(forest.depth_cuts[0].parent, 4095u);
  EXPECT_EQ(forest.depth_cuts[0].root, 0u);
  EXPECT_EQ(forest.depth_cuts[0].depth, 4096u);
  EXPECT_EQ(forest.roots, (std::vector<size_t>{0, 4096}));
  EXPECT_EQ(forest.links[4096].link, snapshot::LinkKind::kDepthCut);
  EXPECT_EQ(forest.links[4096].awaiter, 4095u);
  EXPECT_EQ(forest.links[4999].depth, 4999u);  // depth counts through the cut
  EXPECT_EQ(forest.links[4999].root, 0u);
  EXPECT_EQ(forest.stack_count(), 1u);
  EXPECT_EQ(forest.distinct_stack_count(), 1u);
  ASSERT_EQ(forest.top_nodes.size(), 2u);
  EXPECT_EQ(forest.nodes[forest.top_nodes[0]].link, snapshot::LinkKind::kRoot);
  EXPECT_EQ(forest.nodes[forest.top_nodes[1]].link, snapshot::LinkKind::kDepthCut);
  EXPECT_EQ(forest.nodes.size(), 5000u);
  EXPECT_EQ(forest.nodes[forest.top_nodes[1]].depth, 0u);
  size_t cut_parents = 0;
  for (const snapshot::StackNode& node : forest.nodes) {
    if (node.cut_children == 0) continue;
    ++cut_parents;
    EXPECT_EQ(node.frames, std::vector<size_t>{4095});
    EXPECT_EQ(node.depth, 4095u);
  }
  EXPECT_EQ(cut_parents, 1u);
  EXPECT_TRUE(forest.depth_cut());
  EXPECT_FALSE(forest.uncertain());  // split for size, not placed by a guess
}

TEST(AsyncStacks, SmallDepthBoundSplitsRepeatedly) {
  model::Snapshot snap;
  for (size_t i = 0; i < 25; ++i) {
    snap.frames.push_back(
        make_frame(0x1000 + i * 0x10, "f", 1, i == 0 ? 0 : 0x1000 + (i - 1) * 0x10));
  }
  snapshot::AsyncStackOptions opts;
  opts.max_depth = 10;
  const snapshot::AsyncForest forest = snapshot::build_async_forest(snap, opts);
  check_invariants(snap, forest);
  EXPECT_EQ(forest.roots, (std::vector<size_t>{0, 10, 20}));
  ASSERT_EQ(forest.depth_cuts.size(), 2u);
  EXPECT_EQ(forest.depth_cuts[1].depth, 20u);
  EXPECT_EQ(forest.depth_cuts[1].root, 0u);
  opts.max_depth = 0;  // treated as 1: every frame its own tree
  const snapshot::AsyncForest flat = snapshot::build_async_forest(snap, opts);
  check_invariants(snap, flat);
  EXPECT_EQ(flat.roots.size(), 25u);
}

TEST(AsyncStacks, DanglingAwaiterBecomesUncertainRoot) {
  model::Snapshot snap;
  snap.frames.push_back(make_frame(0x1000, "orphan", 3, 0xdead0000));
  snap.frames.push_back(make_frame(0x1100, "child", 4, 0x1000));
  snap.frames.push_back(make_frame(0x2000, "orphan", 3));
  const snapshot::AsyncForest forest = snapshot::build_async_forest(snap);
  check_invariants(snap, forest);
  ASSERT_EQ(forest.dangling.size(), 1u);
  EXPECT_EQ(forest.dangling[0].frame, 0u);
  EXPECT_EQ(forest.dangling[0].awaiter, 0xdead0000u);
  EXPECT_EQ(forest.links[0].link, snapshot::LinkKind::kDangling);
  EXPECT_EQ(forest.links[0].awaiter, snapshot::kNoFrame);
  // A certain root and an uncertain one never merge, even with the same signature.
  // Equal counts and names: the certain root orders first.
  EXPECT_EQ(shape(forest), "1*orphan;1*orphan{1*child};");
  EXPECT_EQ(forest.nodes[forest.top_nodes[0]].link, snapshot::LinkKind::kRoot);
  EXPECT_EQ(forest.nodes[forest.top_nodes[1]].link, snapshot::LinkKind::kDangling);
}

TEST(AsyncStacks, DuplicateAddressesResolveToFirst) {
  model::Snapshot snap;
  snap.frames.push_back(make_frame(0x1000, "a", 1));
  snap.frames.push_back(make_frame(0x1000, "a_torn", 1));
  snap.frames.push_back(make_frame(0x2000, "b", 2, 0x1000));
  snap.frames.push_back(make_frame(0x1000, "a_again", 1, 0x1000));
  const snapshot::AsyncForest forest = snapshot::build_async_forest(snap);
  check_invariants(snap, forest);
  ASSERT_EQ(forest.duplicates.size(), 1u);
  EXPECT_EQ(forest.duplicates[0].address, 0x1000u);
  EXPECT_EQ(forest.duplicates[0].frames, (std::vector<size_t>{0, 1, 3}));
  EXPECT_FALSE(forest.links[0].duplicate);
  EXPECT_TRUE(forest.links[1].duplicate);
  EXPECT_EQ(forest.links[2].parent, 0u);
  EXPECT_EQ(forest.links[3].parent, 0u);  // the second copy awaited by the first: not a cycle
  EXPECT_TRUE(forest.cycles.empty());
  EXPECT_EQ(shape(forest), "1*a{1*a_again,1*b};1*a_torn;");
  EXPECT_TRUE(forest.uncertain());
}

TEST(AsyncStacks, SignatureDetails) {
  model::Snapshot snap;
  // Same function and line 0 at different indices: different unplaced points, kept apart.
  model::CoroFrame u1 = make_frame(0x10, "unplaced", 0);
  u1.suspend.index = 6;
  model::CoroFrame u2 = make_frame(0x20, "unplaced", 0);
  u2.suspend.index = 8;
  // Same line, different index: the user sees one point, merged.
  model::CoroFrame p1 = make_frame(0x30, "placed", 5);
  p1.suspend.index = 6;
  model::CoroFrame p2 = make_frame(0x40, "placed", 5);
  p2.suspend.index = 8;
  // Different state or kind split.
  model::CoroFrame d1 = make_frame(0x50, "placed", 5);
  d1.state = model::FrameState::kDone;
  model::CoroFrame k1 = make_frame(0x60, "placed", 5);
  k1.suspend.kind = model::SuspendPoint::Kind::kInitial;
  snap.frames = {u1, u2, p1, p2, d1, k1};
  const snapshot::AsyncForest forest = snapshot::build_async_forest(snap);
  check_invariants(snap, forest);
  EXPECT_EQ(shape(forest), "2*placed;1*placed;1*placed;1*unplaced;1*unplaced;");
  EXPECT_EQ(forest.nodes[forest.top_nodes[3]].index, 6);
  EXPECT_EQ(forest.nodes[forest.top_nodes[4]].index, 8);
}

TEST(AsyncStacks, GenericAndLibraryEdgesStayApart) {
  model::Snapshot snap;
  snap.frames.push_back(make_frame(0x1000, "top", 1));
  snap.frames.push_back(make_frame(0x1100, "child", 2, 0x1000));
  model::CoroFrame g = make_frame(0x1200, "child", 2, 0x1000);
  g.awaiter_rule = coro::AwaiterRule::kMutualPointer;
  snap.frames.push_back(g);
  snap.frames.push_back(make_frame(0x1300, "child", 2, 0x1000));
  const snapshot::AsyncForest forest = snapshot::build_async_forest(snap);
  check_invariants(snap, forest);
  EXPECT_EQ(shape(forest), "1*top{2*child,1*child};");
  const snapshot::StackNode& top = forest.nodes[forest.top_nodes[0]];
  EXPECT_EQ(forest.nodes[top.children[0]].rule, coro::AwaiterRule::kContinuationInPromise);
  EXPECT_EQ(forest.nodes[top.children[1]].rule, coro::AwaiterRule::kMutualPointer);
}

TEST(AsyncStacks, StuckStatsPerNode) {
  model::Snapshot snap;
  for (int i = 0; i < 4; ++i) {
    model::CoroFrame f = make_frame(0x1000 + i * 0x10, "wait", 3);
    if (i > 0) {
      f.stuck = true;
      f.stuck_for_s = 1.0 + i;
    }
    snap.frames.push_back(f);
  }
  const snapshot::AsyncForest forest = snapshot::build_async_forest(snap);
  ASSERT_EQ(forest.top_nodes.size(), 1u);
  const snapshot::StackNode& n = forest.nodes[forest.top_nodes[0]];
  EXPECT_EQ(n.count(), 4u);
  EXPECT_EQ(n.stuck, 3u);
  EXPECT_DOUBLE_EQ(n.stuck_for_s, 2.0);
}

TEST(AsyncStacks, RandomHostileGraphsNeverBreak) {
  std::mt19937_64 rng(12345);
  for (int round = 0; round < 200; ++round) {
    model::Snapshot snap;
    const size_t n = 1 + rng() % 300;
    const uint64_t space = 1 + rng() % (n + 5);  // small address space forces duplicates
    for (size_t i = 0; i < n; ++i) {
      const uint64_t addr = (rng() % space) * 0x10;
      const uint64_t aw = rng() % 4 == 0 ? 0 : (rng() % (space + 3)) * 0x10;
      model::CoroFrame f =
          make_frame(addr, "f" + std::to_string(rng() % 3), static_cast<int>(rng() % 3), aw);
      f.state = static_cast<model::FrameState>(rng() % 3);
      snap.frames.push_back(f);
    }
    snapshot::AsyncStackOptions opts;
    opts.max_depth = 1 + rng() % 20;
    const snapshot::AsyncForest forest = snapshot::build_async_forest(snap, opts);
    check_invariants(snap, forest);
    for (const snapshot::AwaitCycle& c : forest.cycles) {
      ASSERT_FALSE(c.frames.empty());
      // Walking awaiter links from the cut frame visits the members in reverse order.
      size_t v = c.frames.front();
      for (size_t k = c.frames.size(); k-- > 1;) {
        v = forest.links[v].awaiter;
        EXPECT_EQ(v, c.frames[k]);
      }
      EXPECT_EQ(forest.links[v].awaiter, c.frames.front());
    }
    if (::testing::Test::HasFailure()) break;
  }
}

}  // namespace
}  // namespace asyncprobe
