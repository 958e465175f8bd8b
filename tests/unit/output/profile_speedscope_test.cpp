#include "userspace/output/profile_speedscope.h"
#include "tests/unit/profile_builders.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <sstream>
#include <string>

namespace asyncprobe {
namespace {

using nlohmann::json;

json speedscope(const model::Profile& p) {
  std::ostringstream out;
  output::write_speedscope(out, p);
  return json::parse(out.str());
}

TEST(ProfileSpeedscope, OneSampledProfilePerThreadRootFirstWithKindsInNames) {
  const json expected = json::parse(R"js({
    "$schema": "https://www.speedscope.app/file-format-schema.json",
    "shared": {"frames": [
      {"name": "main", "file": "burn.cpp", "line": 90},
      {"name": "event_loop::run()", "file": "loop.cpp", "line": 77},
      {"name": "std::coroutine_handle<void>::resume() const", "file": "coroutine", "line": 244},
      {"name": "handle(request) [async]", "file": "burn.cpp", "line": 41},
      {"name": "render(int) [async]", "file": "burn.cpp", "line": 30},
      {"name": "compute(int) [coroutine]", "file": "burn.cpp", "line": 21},
      {"name": "mix(unsigned long) [inlined]", "file": "burn.cpp", "line": 9},
      {"name": "poll_once()", "file": "loop.cpp", "line": 60},
      {"name": "do_epoll_wait [kernel]"},
      {"name": "maybe_parent(int) [async?]", "file": "burn.cpp", "line": 50}
    ]
}
,
    "profiles": [
      {"type": "sampled", "name": "thread 4242 (burn)", "unit": "nanoseconds",
       "startValue": 0, "endValue": 10101010,
       "samples": [[0, 1, 7, 8]], "weights": [10101010]},
      {"type": "sampled", "name": "thread 4243 (worker)", "unit": "nanoseconds",
       "startValue": 0, "endValue": 90909090,
       "samples": [[0, 1, 2, 3, 4, 5, 6], [0, 1, 2, 3, 4, 5], [0, 1, 2, 9, 5]],
       "weights": [60606060, 20202020, 10101010]}
    ],
    "name": "asyncprobe cpu profile of pid 4242 (burn)",
    "activeProfileIndex": 0,
    "exporter": "asyncprobe"})js");
  EXPECT_EQ(speedscope(testing::coroutine_cpu_profile()), expected);
}

TEST(ProfileSpeedscope, MergedThreadsAndCountsWhenCpuTimeIsMissing) {
  model::Profile p = testing::coroutine_cpu_profile();
  for (model::ProfileSample& s : p.samples) {
    s.tid = 0;
    s.thread_name.clear();
  }
  p.samples[1].value_ns = 0;  // not measured for one stack: fall back to counts for all
  const json j = speedscope(p);
  ASSERT_EQ(j["profiles"].size(), 1u);
  EXPECT_EQ(j["profiles"][0]["name"], "all threads");
  EXPECT_EQ(j["profiles"][0]["unit"], "none");
  EXPECT_EQ(j["profiles"][0]["weights"], json::array({6, 2, 1, 1}));
  EXPECT_EQ(j["profiles"][0]["endValue"], 10);
}

TEST(ProfileSpeedscope, AwaitProfilesWeighSuspendedNanoseconds) {
  const json j = speedscope(testing::coroutine_await_profile());
  EXPECT_EQ(j["name"], "asyncprobe await profile of pid 4242 (burn)");
  EXPECT_EQ(j["profiles"][1]["unit"], "nanoseconds");
  EXPECT_EQ(j["profiles"][1]["weights"], json::array({60606060, 20202020, 10101010}));
}

}  // namespace
}  // namespace asyncprobe
