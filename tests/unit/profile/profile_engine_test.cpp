// The profile engine's pure parts: frame interning and stack merging (ProfileBuilder), the await
// profile's leaves and weights (AwaitProfiler), kernel symbol lookup (KernelSymbols).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "tests/unit/model_builders.h"
#include "userspace/process/kernel_symbols.h"
#include "userspace/profile/await_profiler.h"
#include "userspace/profile/profile_builder.h"

namespace asyncprobe::testing {
namespace {

model::ProfileFrame native(const std::string& fn, uint64_t pc, int line = 10) {
  model::ProfileFrame f;
  f.function = fn;
  f.file = "/src/a.cpp";
  f.line = line;
  f.object = "/bin/a";
  f.address = pc;
  return f;
}

TEST(ProfileBuilder, InternsIdenticalFramesAndMergesStacksPerThread) {
  model::Profile p;
  profile::ProfileBuilder b(&p);
  const uint32_t leaf = b.intern(native("leaf", 0x10));
  EXPECT_EQ(b.intern(native("leaf", 0x10)), leaf);
  const uint32_t other_pc = b.intern(native("leaf", 0x14));
  EXPECT_NE(other_pc, leaf);
  model::ProfileFrame inl = native("leaf", 0x10);
  inl.inlined = true;
  EXPECT_NE(b.intern(inl), leaf);
  model::ProfileFrame async = native("leaf", 0x10);
  async.kind = model::ProfileFrame::Kind::kAsync;
  EXPECT_NE(b.intern(async), leaf);
  const uint32_t root = b.intern(native("main", 0x20));
  EXPECT_EQ(p.frames.size(), 5u);

  b.add({leaf, root}, 7, "t7", 0xa000, "c()", false, 1, 100);
  b.add({leaf, root}, 7, "t7", 0xa000, "c()", false, 1, 100);
  b.add({leaf, root}, 8, "t8", 0xa000, "c()", false, 1, 100);  // another thread: apart
  b.add({leaf, root}, 7, "t7", 0xa000, "c()", true, 1, 100);   // uncertain: apart
  ASSERT_EQ(p.samples.size(), 3u);
  EXPECT_EQ(p.samples[0].count, 2);
  EXPECT_EQ(p.samples[0].value_ns, 200);
  EXPECT_EQ(p.samples[0].coroutine, 0xa000u);
  EXPECT_EQ(p.samples[0].thread_name, "t7");
  EXPECT_TRUE(p.samples[2].async_uncertain);

  // A second coroutine on the same stack: the sample no longer names one.
  b.add({leaf, root}, 7, "t7", 0xb000, "c()", false, 1, 100);
  EXPECT_EQ(p.samples[0].coroutine, 0u);
  EXPECT_EQ(p.samples[0].coroutine_function, "c()");
  b.add({leaf, root}, 7, "t7", 0xc000, "d()", false, 1, 100);
  EXPECT_EQ(p.samples[0].coroutine_function, "");
  EXPECT_EQ(p.samples[0].count, 4);
}

TEST(AwaitProfiler, WeightsEachWaitingLeafWithItsStackOnce) {
  model::Snapshot s;
  s.frames.push_back(suspended_frame(0x100, "root()", "/src/s.cpp", 30));
  s.frames.push_back(suspended_frame(0x200, "mid()", "/src/s.cpp", 20, 0x100));
  s.frames.push_back(suspended_frame(0x300, "leaf()", "/src/s.cpp", 10, 0x200));
  s.frames.push_back(suspended_frame(0x400, "alone()", "/src/s.cpp", 40));
  model::CoroFrame done = suspended_frame(0x500, "done()", "/src/s.cpp", 50);
  done.state = model::FrameState::kDone;
  s.frames.push_back(done);
  model::CoroFrame guessed = suspended_frame(0x600, "guessed()", "/src/s.cpp", 60, 0x400);
  guessed.awaiter_rule = coro::AwaiterRule::kMutualPointer;
  s.frames.push_back(guessed);

  model::Profile p;
  p.type = model::Profile::Type::kAwait;
  profile::AwaitProfiler a(&p);
  a.add(s, 100'000'000);
  a.add(s, 120'000'000);
  EXPECT_EQ(a.stats().snapshots, 2u);
  EXPECT_EQ(a.stats().leaves, 4u);  // leaf() and guessed() twice; parents never on their own
  EXPECT_EQ(a.stats().uncertain, 2u);
  ASSERT_EQ(p.samples.size(), 2u);
  auto names = [&](const model::ProfileSample& x) {
    std::string out;
    for (uint32_t i : x.frames) {
      const model::ProfileFrame& f = p.frames[i];
      EXPECT_EQ(f.kind, model::ProfileFrame::Kind::kAsync);
      out += f.function + "@" + std::to_string(f.line) + " ";
    }
    return out;
  };
  EXPECT_EQ(names(p.samples[0]), "leaf()@10 mid()@20 root()@30 ");
  EXPECT_EQ(p.samples[0].value_ns, 220'000'000);
  EXPECT_EQ(p.samples[0].count, 2);
  EXPECT_EQ(p.samples[0].coroutine, 0x300u);
  EXPECT_FALSE(p.samples[0].async_uncertain);
  EXPECT_EQ(names(p.samples[1]), "guessed()@60 alone()@40 ");
  EXPECT_TRUE(p.samples[1].async_uncertain);
}

TEST(KernelSymbols, FindsTheContainingTextSymbol) {
  char path[] = "/tmp/kallsyms-test-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  {
    std::ofstream out(path);
    out << "ffffffff81000000 T _stext\n"
        << "ffffffff81000100 t do_thing\n"
        << "ffffffff81000200 D some_data\n"
        << "ffffffff81000300 T mod_fn\t[mymod]\n";
  }
  process::KernelSymbols k;
  ASSERT_TRUE(k.load(path));
  EXPECT_EQ(k.size(), 3u);
  EXPECT_EQ(k.name_at(0xffffffff81000150), "do_thing");
  EXPECT_EQ(k.name_at(0xffffffff81000250), "do_thing");  // data symbols are not functions
  EXPECT_EQ(k.name_at(0xffffffff81000301), "mod_fn [mymod]");
  EXPECT_EQ(k.name_at(0x1000), "");
  {
    std::ofstream out(path);
    out << "0000000000000000 T _stext\n0000000000000000 t do_thing\n";  // kptr_restrict
  }
  EXPECT_FALSE(k.load(path));
  EXPECT_EQ(k.name_at(0xffffffff81000150), "");
  std::remove(path);
}

}  // namespace
}  // namespace asyncprobe::testing
