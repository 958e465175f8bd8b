#include "userspace/output/profile_folded.h"
#include "tests/unit/profile_builders.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>

namespace asyncprobe {
namespace {

std::string folded(const model::Profile& p) {
  std::ostringstream out;
  output::write_folded(out, p);
  return out.str();
}

constexpr const char* kServiceFolded =
    "main;event_loop::run();poll_once();do_epoll_wait_[k] 1\n"
    "main;event_loop::run();std::coroutine_handle<void>::resume() const;handle(request)_[async];"
    "render(int)_[async];compute(int)_[coro] 2\n"
    "main;event_loop::run();std::coroutine_handle<void>::resume() const;handle(request)_[async];"
    "render(int)_[async];compute(int)_[coro];mix(unsigned long)_[i] 6\n"
    "main;event_loop::run();std::coroutine_handle<void>::resume() const;maybe_parent(int)_[async?];"
    "compute(int)_[coro] 1\n";

TEST(ProfileFolded, WritesRootFirstStacksWithKindSuffixesSortedWithCounts) {
  EXPECT_EQ(folded(testing::coroutine_cpu_profile()), kServiceFolded);
}

TEST(ProfileFolded, AwaitProfilesWeighBySuspendedNanoseconds) {
  EXPECT_EQ(folded(testing::coroutine_await_profile()),
            "main;event_loop::run();poll_once();do_epoll_wait_[k] 10101010\n"
            "main;event_loop::run();std::coroutine_handle<void>::resume() const;"
            "handle(request)_[async];render(int)_[async];compute(int)_[coro] 20202020\n"
            "main;event_loop::run();std::coroutine_handle<void>::resume() const;"
            "handle(request)_[async];render(int)_[async];compute(int)_[coro];"
            "mix(unsigned long)_[i] 60606060\n"
            "main;event_loop::run();std::coroutine_handle<void>::resume() const;"
            "maybe_parent(int)_[async?];compute(int)_[coro] 10101010\n");
}

TEST(ProfileFolded, MergesIdenticalStacksOfDifferentThreadsAndSkipsEmptyOnes) {
  model::Profile p = testing::coroutine_cpu_profile();
  model::ProfileSample other_thread = p.samples[2];
  other_thread.tid = 7;
  other_thread.count = 4;
  model::ProfileSample zero = p.samples[0];
  zero.count = 0;
  model::ProfileSample no_frames;
  no_frames.count = 3;
  p.samples = {p.samples[2], other_thread, zero, no_frames};
  EXPECT_EQ(folded(p), "main;event_loop::run();poll_once();do_epoll_wait_[k] 5\n");
}

TEST(ProfileFolded, NamesNeverBreakTheFormat) {
  model::Profile p;
  p.frames = {testing::profile_frame(model::ProfileFrame::Kind::kNative, "a;b\nc\rd", "", 0, 1),
              testing::profile_frame(model::ProfileFrame::Kind::kNative, "", "", 0, 2)};
  model::ProfileSample s;
  s.frames = {0, 1};
  s.count = 1;
  p.samples = {s};
  EXPECT_EQ(folded(p), "[unknown];a:b c d 1\n");
}

TEST(ProfileFolded, RoundTripsThroughTheParser) {
  for (const model::Profile& original :
       {testing::coroutine_cpu_profile(), testing::coroutine_await_profile()}) {
    const std::string text = folded(original);
    std::istringstream in(text);
    model::Profile back;
    std::string error;
    ASSERT_TRUE(output::read_folded(in, original.type, &back, &error)) << error;
    EXPECT_EQ(folded(back), text);
    ASSERT_EQ(back.samples.size(), 4u);
    // Kinds, inlining and the uncertain join come back from the suffixes.
    const model::ProfileSample& hot = back.samples[2];
    ASSERT_EQ(hot.frames.size(), 7u);
    EXPECT_EQ(back.frames[hot.frames[0]].function, "mix(unsigned long)");
    EXPECT_TRUE(back.frames[hot.frames[0]].inlined);
    EXPECT_EQ(back.frames[hot.frames[1]].function, "compute(int)");
    EXPECT_EQ(back.frames[hot.frames[1]].kind, model::ProfileFrame::Kind::kCoroutine);
    EXPECT_EQ(back.frames[hot.frames[2]].kind, model::ProfileFrame::Kind::kAsync);
    EXPECT_EQ(back.frames[hot.frames[6]].function, "main");
    EXPECT_EQ(back.frames[hot.frames[6]].kind, model::ProfileFrame::Kind::kNative);
    EXPECT_FALSE(hot.async_uncertain);
    EXPECT_TRUE(back.samples[3].async_uncertain);
    EXPECT_EQ(back.frames[back.samples[0].frames[0]].kind, model::ProfileFrame::Kind::kKernel);
    if (original.type == model::Profile::Type::kCpu) {
      EXPECT_EQ(hot.count, 6);
      EXPECT_EQ(hot.value_ns, 0);
    } else {
      EXPECT_EQ(hot.value_ns, 60'606'060);
      EXPECT_EQ(hot.count, 0);
    }
  }
}

TEST(ProfileFolded, ParserAcceptsOtherToolsOutputAndSkipsBlankLines) {
  std::istringstream in("\nperl;main;run 12\r\n  \nperl;main 3\n");
  model::Profile p;
  std::string error;
  ASSERT_TRUE(output::read_folded(in, model::Profile::Type::kCpu, &p, &error)) << error;
  ASSERT_EQ(p.samples.size(), 2u);
  EXPECT_EQ(p.samples[0].count, 12);
  EXPECT_EQ(p.samples[1].count, 3);
  EXPECT_EQ(folded(p), "perl;main 3\nperl;main;run 12\n");
  ASSERT_EQ(p.frames.size(), 3u);  // interned: perl, main, run
}

TEST(ProfileFolded, ParserRejectsMalformedLinesNamingThem) {
  const std::pair<const char*, const char*> cases[] = {
      {"a;b 1\nab\n", "folded stacks line 2: no ' COUNT' after the stack"},
      {"a;b x1\n", "folded stacks line 1: count 'x1' is not a non-negative integer"},
      {"a;b -1\n", "folded stacks line 1: count '-1' is not a non-negative integer"},
      {"a;b \n", "folded stacks line 1: count '' is not a non-negative integer"},
      {"a;;b 1\n", "folded stacks line 1: empty frame name"},
      {"a; 1\n", "folded stacks line 1: empty frame name"},
      {" 5\n", "folded stacks line 1: no ' COUNT' after the stack"},
      {"a 99999999999999999999\n",
       "folded stacks line 1: count '99999999999999999999' is too large"},
  };
  for (const auto& [text, message] : cases) {
    std::istringstream in(text);
    model::Profile p;
    p.pid = 77;
    std::string error;
    EXPECT_FALSE(output::read_folded(in, model::Profile::Type::kCpu, &p, &error)) << text;
    EXPECT_EQ(error, message) << text;
    EXPECT_EQ(p.pid, 77) << "output untouched on error";
  }
}

}  // namespace
}  // namespace asyncprobe
