#include "userspace/profile_text.h"
#include "tests/unit/profile_builders.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>

namespace asyncprobe {
namespace {

std::string text(const Profile& p, const ProfileTextOptions& opts = {}) {
  std::ostringstream out;
  write_profile_text(out, p, opts);
  return out.str();
}

TEST(ProfileText, SummarisesTopFunctionsAndStacksLeafFirstWithKinds) {
  EXPECT_EQ(text(testing::coroutine_cpu_profile()),
            "asyncprobe CPU profile of pid 4242 (burn) /srv/bin/burn\n"
            "duration 2.000 s at 99 Hz: 10 samples in 4 distinct stacks, 0 lost\n"
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
  ProfileTextOptions opts;
  opts.top_functions = 2;
  opts.top_stacks = 1;
  opts.max_frames = 3;
  EXPECT_EQ(text(testing::coroutine_await_profile(), opts),
            "asyncprobe await profile of pid 4242 (burn) /srv/bin/burn\n"
            "duration 2.000 s, a snapshot every 100.000 ms: 10 suspensions seen, 101.010 ms "
            "suspended in 4 distinct stacks\n"
            "\n"
            "Top functions (self, total):\n"
            "    60.0%   60.0%  mix(unsigned long)\n"
            "    30.0%   90.0%  compute(int)\n"
            "\n"
            "Top stacks (leaf first):\n"
            "#1  60.606 ms (60.0%)  thread 4243 worker  coroutine compute(int) @ 0x7f00000a0000\n"
            "    mix(unsigned long)  burn.cpp:9  [inlined]\n"
            "    compute(int)  burn.cpp:21  [coroutine]\n"
            "    render(int)  burn.cpp:30  [async]\n"
            "    ... 4 more frames\n");
}

TEST(ProfileText, SaysSoWhenNothingWasSampled) {
  Profile p;
  p.pid = 9;
  p.duration_ns = 500'000'000;
  p.frequency_hz = 99;
  p.lost_samples = 3;
  EXPECT_EQ(text(p),
            "asyncprobe CPU profile of pid 9\n"
            "duration 0.500 s at 99 Hz: 0 samples in 0 distinct stacks, 3 lost\n"
            "\n"
            "no samples\n");
}

}  // namespace
}  // namespace asyncprobe
