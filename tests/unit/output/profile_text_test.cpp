#include "userspace/output/profile_text.h"
#include "tests/unit/profile_builders.h"
#include "userspace/output/function_name_shortener.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>

namespace asyncprobe {
namespace {

std::string text(const model::Profile& p, const output::ProfileTextOptions& opts = {}) {
  std::ostringstream out;
  output::write_profile_text(out, p, opts);
  return out.str();
}

TEST(ProfileText, SummarisesTopFunctionsAndStacksLeafFirstWithKinds) {
  EXPECT_EQ(text(testing::coroutine_cpu_profile()),
            "asyncprobe CPU profile of pid 4242 (burn) /srv/bin/burn\n"
            "duration 2.00 s at 99 Hz: 10 samples in 4 distinct stacks, 0 lost\n"
            "warning: 1 stack joined by a best guess\n"
            "\n"
            "Top functions (self, total):\n"
            "    60.0%   60.0%  mix(unsigned long)\n"
            "    30.0%   90.0%  compute(int)\n"
            "    10.0%   10.0%  do_epoll_wait\n"
            "     0.0%  100.0%  event_loop::run()\n"
            "     0.0%  100.0%  main\n"
            "     0.0%   90.0%  std::coroutine_handle<void>::resume() const\n"
            "     0.0%   80.0%  handle(request)\n"
            "     0.0%   80.0%  render(int)\n"
            "     0.0%   10.0%  maybe_parent(int)\n"
            "     0.0%   10.0%  poll_once()\n"
            "\n"
            "Top stacks (leaf first):\n"
            "#1  6 samples (60.0%)  thread 4243 worker  coroutine compute(int) @ 0x7f00000a0000\n"
            "    mix(unsigned long)  burn.cpp:9  [inlined]\n"
            "    compute(int)  burn.cpp:21  [coroutine]\n"
            "    render(int)  burn.cpp:30  [async]\n"
            "    handle(request)  burn.cpp:41  [async]\n"
            "    std::coroutine_handle<void>::resume() const  coroutine:244\n"
            "    event_loop::run()  loop.cpp:77\n"
            "    main  burn.cpp:90\n"
            "#2  2 samples (20.0%)  thread 4243 worker  coroutine compute(int) @ 0x7f00000a0000\n"
            "    compute(int)  burn.cpp:21  [coroutine]\n"
            "    render(int)  burn.cpp:30  [async]\n"
            "    handle(request)  burn.cpp:41  [async]\n"
            "    std::coroutine_handle<void>::resume() const  coroutine:244\n"
            "    event_loop::run()  loop.cpp:77\n"
            "    main  burn.cpp:90\n"
            "#3  1 sample (10.0%)  thread 4242 burn\n"
            "    do_epoll_wait  [kernel]\n"
            "    poll_once()  loop.cpp:60\n"
            "    event_loop::run()  loop.cpp:77\n"
            "    main  burn.cpp:90\n"
            "#4  1 sample (10.0%)  thread 4243 worker  coroutine compute(int) @ 0x7f00000a8000"
            "  (async stack uncertain)\n"
            "    compute(int)  burn.cpp:21  [coroutine]\n"
            "    maybe_parent(int)  burn.cpp:50  [async, uncertain]\n"
            "    std::coroutine_handle<void>::resume() const  coroutine:244\n"
            "    event_loop::run()  loop.cpp:77\n"
            "    main  burn.cpp:90\n");
}

TEST(ProfileText, AwaitProfilesShowSuspendedTime) {
  output::ProfileTextOptions opts;
  opts.top_functions = 2;
  opts.top_stacks = 1;
  opts.max_frames = 3;
  EXPECT_EQ(text(testing::coroutine_await_profile(), opts),
            "asyncprobe await profile of pid 4242 (burn) /srv/bin/burn\n"
            "duration 2.00 s, a snapshot every 100 ms: 10 suspensions seen, 101 ms "
            "suspended in 4 distinct stacks\n"
            "\n"
            "Top functions (self, total):\n"
            "    60.0%   60.0%  mix(unsigned long)\n"
            "    30.0%   90.0%  compute(int)\n"
            "\n"
            "Top stacks (leaf first):\n"
            "#1  60.6 ms (60.0%)  thread 4243 worker  coroutine compute(int) @ 0x7f00000a0000\n"
            "    mix(unsigned long)  burn.cpp:9  [inlined]\n"
            "    compute(int)  burn.cpp:21  [coroutine]\n"
            "    render(int)  burn.cpp:30  [async]\n"
            "    ... 4 more frames\n");
}

// 22 requests waiting at the same line are one answer: the same frames from several coroutines
// (and threads) are one entry of "Top stacks", weights summed, owners counted.
TEST(ProfileText, SameFramesOfSeveralCoroutinesAreOneStackEntry) {
  model::Profile p = testing::coroutine_await_profile();
  // The hot stack of another coroutine, on another thread: its awaiting parents are other
  // frames (interned per frame address) printed the same.
  model::ProfileSample other = p.samples[0];  // mix, compute, render, handle, ...
  ASSERT_EQ(other.frames[2], testing::kRender);
  ASSERT_EQ(other.frames[3], testing::kHandle);
  for (const size_t at : {2, 3}) {
    model::ProfileFrame f = p.frames[other.frames[at]];
    f.address += 0x10000;
    p.frames.push_back(f);
    other.frames[at] = static_cast<uint32_t>(p.frames.size() - 1);
  }
  other.coroutine = 0x7f00000b0000;
  other.tid = 4244;
  other.count = 5;
  other.value_ns = 50'000'000;
  p.samples.push_back(other);
  output::ProfileTextOptions opts;
  opts.top_functions = 0;
  opts.top_stacks = 2;
  opts.max_frames = 2;
  EXPECT_EQ(text(p, opts),
            "asyncprobe await profile of pid 4242 (burn) /srv/bin/burn\n"
            "duration 2.00 s, a snapshot every 100 ms: 15 suspensions seen, 151 ms "
            "suspended in 5 distinct stacks\n"
            "\n"
            "Top functions (self, total):\n"
            "\n"
            "Top stacks (leaf first):\n"
            "#1  111 ms (73.2%)  2 threads  2 coroutines compute(int)\n"
            "    mix(unsigned long)  burn.cpp:9  [inlined]\n"
            "    compute(int)  burn.cpp:21  [coroutine]\n"
            "    ... 5 more frames\n"
            "#2  20.2 ms (13.4%)  thread 4243 worker  coroutine compute(int) @ 0x7f00000a0000\n"
            "    compute(int)  burn.cpp:21  [coroutine]\n"
            "    render(int)  burn.cpp:30  [async]\n"
            "    ... 4 more frames\n");
}

TEST(ProfileText, LongNamesAreShortenedUnlessAskedWhole) {
  model::Profile p = testing::coroutine_cpu_profile();
  const std::string long_name =
      "boost::asio::awaitable<unsigned long, boost::asio::any_io_executor> "
      "boost::asio::async_result<boost::asio::use_awaitable_t<boost::asio::any_io_executor>, "
      "void (boost::system::error_code, unsigned long)>::initiate<int>(int)";
  p.frames[testing::kMix].function = long_name;
  output::ProfileTextOptions opts;
  opts.top_functions = 1;
  opts.top_stacks = 1;
  opts.max_frames = 1;
  const std::string shortened = text(p, opts);
  EXPECT_EQ(shortened.find(long_name), std::string::npos) << shortened;
  const std::string short_name = output::shorten_function_name(long_name, 100);
  ASSERT_LE(short_name.size(), 100u);
  EXPECT_NE(shortened.find("    60.0%   60.0%  " + short_name + "\n"), std::string::npos)
      << shortened;
  EXPECT_NE(shortened.find("    " + short_name + "  burn.cpp:9  [inlined]\n"), std::string::npos)
      << shortened;
  opts.max_name_chars = 0;
  const std::string whole = text(p, opts);
  EXPECT_NE(whole.find("    60.0%   60.0%  " + long_name + "\n"), std::string::npos) << whole;
  EXPECT_NE(whole.find("    " + long_name + "  burn.cpp:9  [inlined]\n"), std::string::npos)
      << whole;
}

TEST(ProfileText, SaysSoWhenNothingWasSampled) {
  model::Profile p;
  p.pid = 9;
  p.duration_ns = 500'000'000;
  p.frequency_hz = 99;
  p.lost_samples = 3;
  EXPECT_EQ(text(p),
            "asyncprobe CPU profile of pid 9\n"
            "duration 500 ms at 99 Hz: 0 samples in 0 distinct stacks, 3 lost\n"
            "\n"
            "no samples\n");
}

}  // namespace
}  // namespace asyncprobe
