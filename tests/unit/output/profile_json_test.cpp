#include "userspace/output/profile_json.h"
#include "tests/unit/profile_builders.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <sstream>
#include <string>

namespace asyncprobe {
namespace {

using nlohmann::json;

TEST(ProfileJson, WritesTheModelWithSchemaHeaderFramesAndSamples) {
  std::ostringstream out;
  output::write_profile_json(out, testing::coroutine_cpu_profile());
  const json j = json::parse(out.str());
  EXPECT_EQ(j["schema"], "asyncprobe.profile/1");
  EXPECT_EQ(j["type"], "cpu");
  EXPECT_EQ(j["weight_unit"], "samples");
  EXPECT_EQ(j["pid"], 4242);
  EXPECT_EQ(j["command"], "burn");
  EXPECT_EQ(j["executable"], "/srv/bin/burn");
  EXPECT_EQ(j["start_unix_ns"], 1'700'000'000'000'000'000);
  EXPECT_EQ(j["duration_ns"], 2'000'000'000);
  EXPECT_EQ(j["period_ns"], 10'101'010);
  EXPECT_EQ(j["frequency_hz"], 99);
  EXPECT_EQ(j["lost_samples"], 0);
  EXPECT_EQ(j["warnings"], json::array({"1 stack joined by a best guess"}));
  ASSERT_EQ(j["frames"].size(), 10u);
  const json mix = json::parse(
      R"js({"id": 0, "kind": "native", "function": "mix(unsigned long)", "file": "burn.cpp",
          "line": 9, "object": "/srv/bin/burn", "address": "0x401230", "inlined": true})js");
  const json kernel = json::parse(
      R"js({"id": 9, "kind": "kernel", "function": "do_epoll_wait", "file": "", "line": 0,
          "object": "", "address": "0xffffffff81234560", "inlined": false})js");
  const json hot = json::parse(
      R"js({"frames": [0, 1, 2, 3, 4, 5, 6], "count": 6, "value_ns": 60606060, "tid": 4243,
          "thread_name": "worker", "coroutine": "0x7f00000a0000",
          "coroutine_function": "compute(int)", "async_uncertain": false})js");
  EXPECT_EQ(j["frames"][0], mix);
  EXPECT_EQ(j["frames"][1]["kind"], "coroutine");
  EXPECT_EQ(j["frames"][2]["kind"], "async");
  EXPECT_EQ(j["frames"][2]["address"], "0x7f00000a1000");
  EXPECT_EQ(j["frames"][9], kernel);
  ASSERT_EQ(j["samples"].size(), 4u);
  EXPECT_EQ(j["samples"][0], hot);
  EXPECT_EQ(j["samples"][2]["coroutine"], nullptr);
  EXPECT_EQ(j["samples"][3]["async_uncertain"], true);
  // Keys in schema order for human readers.
  EXPECT_EQ(out.str().rfind("{\n  \"schema\": \"asyncprobe.profile/1\",\n  \"type\": \"cpu\",", 0),
            0u);
}

TEST(ProfileJson, AwaitProfilesWeighInNanosecondsAndBadUtf8IsReplaced) {
  model::Profile p = testing::coroutine_await_profile();
  p.frames[0].function = "bad\xff name";
  std::ostringstream out;
  output::write_profile_json(out, p);
  const json j = json::parse(out.str());
  EXPECT_EQ(j["type"], "await");
  EXPECT_EQ(j["weight_unit"], "ns");
  EXPECT_EQ(j["frames"][0]["function"], "bad\xEF\xBF\xBD name");
}

}  // namespace
}  // namespace asyncprobe
