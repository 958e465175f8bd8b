// Blocking calls inside coroutines (`asyncprobe run --blocking`): the fixture preload_blocking
// sleeps, waits for a contended mutex and reads an empty pipe while a coroutine runs, and also
// blocks briefly (under the threshold) and outside any coroutine. Exactly the three long calls
// inside the coroutine are reported, each with its call site and the coroutine's async stack.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/integration/fixture_process.h"
#include "tests/integration/preload_support.h"
#include "tests/integration/source_markers.h"
#include "userspace/trace/preload_trace.h"

namespace asyncprobe::testing {
namespace {

using nlohmann::json;

const char* kSource = "tests/fixtures/preload_blocking.cpp";

struct Expected {
  std::string call;
  std::string marker;
  uint64_t min_ns;
};

const std::vector<Expected> kExpected = {{"usleep", "leaf_sleeps", 59'000'000},
                                         {"pthread_mutex_lock", "leaf_locks", 59'000'000},
                                         {"read", "leaf_reads", 59'000'000}};

void check_call(const std::string& call, uint64_t duration_ns, const std::string& call_site,
                const std::vector<std::tuple<std::string, std::string, int>>& stack,
                const Expected& want) {
  SCOPED_TRACE(want.call);
  EXPECT_EQ(call, want.call);
  EXPECT_GE(duration_ns, want.min_ns);
  EXPECT_LT(duration_ns, 10'000'000'000ull);
  EXPECT_EQ(
      call_site.rfind(
          "blocking_leaf() [coroutine] at " + marker_location(kSource, want.marker) + " (", 0),
      0u)
      << call_site;
  const std::string file = source_file(kSource);
  std::vector<std::tuple<std::string, std::string, int>> want_stack = {
      {"blocking_leaf()", file, marker_line(kSource, want.marker)},
      {"blocking_middle()", file, marker_line(kSource, "middle_calls_leaf")},
      {"blocking_root()", file, marker_line(kSource, "root_calls_middle")}};
  EXPECT_EQ(stack, want_stack);
}

class PreloadBlocking : public ::testing::TestWithParam<std::string> {};

TEST_P(PreloadBlocking, ReportsExactlyTheLongCallsMadeInsideCoroutinesAtExit) {
  const std::string dir = make_temp_dir("blocking");
  const std::string out = dir + "/blocking.json";
  Finished r = run_with_status(run_argv({"--blocking=20ms", "--blocking-out", out, "--json"},
                                        {fixture_path(GetParam(), "preload_blocking"), "--exit"}),
                               dir, 0);
  json report = json::parse(read_text_file(out), nullptr, false);
  remove_tree(dir);
  ASSERT_EQ(r.exit_code(), 0) << r.err;
  EXPECT_EQ(r.err, "");
  ASSERT_FALSE(report.is_discarded());
  EXPECT_EQ(report["schema"], "asyncprobe.preload-blocking/1");
  EXPECT_EQ(report["threshold_ns"], 20'000'000);
  EXPECT_EQ(report["dropped"], 0);
  ASSERT_EQ(report["calls"].size(), kExpected.size()) << report.dump(1);
  for (size_t i = 0; i < kExpected.size(); ++i) {
    const json& c = report["calls"][i];
    std::vector<std::tuple<std::string, std::string, int>> stack;
    for (const auto& f : c["stack"]) stack.emplace_back(f["function"], f["file"], f["line"]);
    check_call(c["call"], c["duration_ns"], c["call_site"], stack, kExpected[i]);
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, PreloadBlocking,
                         ::testing::ValuesIn(fixture_variants_with("preload_blocking")),
                         VariantTestName());

TEST(PreloadBlockingEarly, CallsMadeBeforeTheTablesArriveAreStillAttributed) {
  // A helper that starts a second late: every blocking call of the fixture happens before any
  // table exists. The library recognises the coroutine from its symbols; names and lines are
  // filled in from the tables when the report is written.
  const std::string dir = make_temp_dir("early");
  std::string bin = asyncprobe_binary();
  std::string build = bin.substr(0, bin.rfind('/'));
  for (const char* lib : {"libasyncprobe-preload.so", "libasyncprobe-preload-blocking.so"}) {
    ASSERT_EQ(symlink((build + "/" + lib).c_str(), (dir + "/" + lib).c_str()), 0);
  }
  {
    std::ofstream helper(dir + "/asyncprobe-preload-helper");
    helper << "#!/bin/sh\nsleep 1\nexec " << build << "/asyncprobe-preload-helper \"$@\"\n";
  }
  chmod((dir + "/asyncprobe-preload-helper").c_str(), 0755);
  setenv("ASYNCPROBE_PRELOAD_DIR", dir.c_str(), 1);
  const std::string out = dir + "/blocking.json";
  Finished r = run_with_status(run_argv({"--blocking=20ms", "--blocking-out", out, "--json"},
                                        {fixture_path("clang19-O2", "preload_blocking"), "--exit"}),
                               dir, 0);
  unsetenv("ASYNCPROBE_PRELOAD_DIR");
  json report = json::parse(read_text_file(out), nullptr, false);
  remove_tree(dir);
  ASSERT_EQ(r.exit_code(), 0) << r.err;
  ASSERT_FALSE(report.is_discarded());
  ASSERT_EQ(report["calls"].size(), kExpected.size()) << report.dump(1);
  for (size_t i = 0; i < kExpected.size(); ++i) {
    const json& c = report["calls"][i];
    std::vector<std::tuple<std::string, std::string, int>> stack;
    for (const auto& f : c["stack"]) stack.emplace_back(f["function"], f["file"], f["line"]);
    check_call(c["call"], c["duration_ns"], c["call_site"], stack, kExpected[i]);
  }
}

TEST(PreloadBlockingLive, TheSameRecordsAreServedOverTheSocket) {
  FixtureProcess p(run_argv({"--blocking=20ms"}, {fixture_path("gcc12-O2", "preload_blocking")}));
  model::PreloadBlockingReport report;
  std::string why;
  int code = 0;
  // The names and lines need the target's tables (the leaf's line table and the awaiters'
  // suspend points are ready at different moments): ask until every frame of every call has one.
  auto all_placed = [&report] {
    if (report.calls.size() < kExpected.size()) return false;
    for (const auto& c : report.calls) {
      if (c.stack.empty()) return false;
      for (const auto& f : c.stack) {
        if (f.line == 0) return false;
      }
    }
    return true;
  };
  for (int i = 0; i < 300; ++i) {
    ASSERT_TRUE(trace::preload_blocking_collect(p.pid(), &report, &why, &code)) << why;
    if (all_placed()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(report.threshold_ns, 20'000'000u);
  ASSERT_EQ(report.calls.size(), kExpected.size());
  for (size_t i = 0; i < kExpected.size(); ++i) {
    const auto& c = report.calls[i];
    std::vector<std::tuple<std::string, std::string, int>> stack;
    for (const auto& f : c.stack) stack.emplace_back(f.function, f.file, f.line);
    check_call(c.call, c.duration_ns, c.call_site, stack, kExpected[i]);
    EXPECT_EQ(c.tid, p.pid());
  }
  // Without --blocking the library never interposes anything.
  FixtureProcess q(run_argv({}, {fixture_path("gcc12-O2", "preload_blocking")}));
  EXPECT_FALSE(trace::preload_blocking_collect(q.pid(), &report, &why, &code));
  EXPECT_EQ(why, "pid " + std::to_string(q.pid()) +
                     " does not record blocking calls: start it with `asyncprobe run --blocking`");
  std::string maps = read_text_file("/proc/" + std::to_string(q.pid()) + "/maps");
  EXPECT_EQ(maps.find("libasyncprobe-preload-blocking.so"), std::string::npos);
  EXPECT_NE(maps.find("libasyncprobe-preload.so"), std::string::npos);
}

}  // namespace
}  // namespace asyncprobe::testing
