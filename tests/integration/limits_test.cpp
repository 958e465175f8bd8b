// Bounded memory and prompt exits on big targets (issue 12): a trace of one chain of 8,000
// awaiting coroutines completes and reports under an address-space limit; SIGTERM ends trace,
// profile and snapshot within a second while they read a 100,000-coroutine heap; output paths are
// checked before anything is attached; `-d 0` is the same usage error for trace and profile.
// Expected answers come from tests/fixtures/chain.cpp and many.cpp.
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/integration/fixture_process.h"
#include "tests/integration/source_markers.h"
#include "tests/integration/trace_support.h"

namespace asyncprobe::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;

int chain_marker(const std::string& name) {
  return marker_line(source_file("tests/fixtures/chain.cpp"), name);
}

// 1 GiB of address space: asyncprobe's libraries, BPF maps and ring buffer take about a third;
// the copies of every frame's whole async stack took 3.6 GiB for this target.
constexpr const char* kAddressSpaceLimit = "1073741824";

TEST(TraceLimits, DeepChainCompletesAndReportsUnderAnAddressSpaceLimit) {
  ScratchDir dir;
  FixtureProcess fx({fixture_path("gcc12-O2", "chain"), "--depth", "8000", "--count", "1"});
  const std::string report = dir.file("report.json");
  RunResult r =
      run_command({"prlimit", std::string("--as=") + kAddressSpaceLimit, asyncprobe_binary(),
                   "trace", "-p", std::to_string(fx.pid()), "-d", "1s", "--json", "-o", report},
                  seconds(120));
  ASSERT_EQ(r.exit.exit_code, 0) << r.err;
  const json doc = json::parse(read_file(report));
  const json& at_end = doc["suspended_at_end"];
  // 8,000 frames of the chain and idle_worker(); two stacks: the chain's and idle_worker's.
  EXPECT_EQ(at_end["coroutines"].get<int>(), 8001);
  EXPECT_EQ(at_end["stacks"].get<int>(), 2);
  ASSERT_EQ(at_end["groups"].size(), 2u) << at_end.dump(2).substr(0, 4000);
  const json* chain = nullptr;
  const json* idle = nullptr;
  for (const json& g : at_end["groups"]) {
    (g["function"] == "descend(int)" ? chain : idle) = &g;
  }
  ASSERT_NE(chain, nullptr);
  ASSERT_NE(idle, nullptr);
  EXPECT_EQ((*chain)["count"].get<int>(), 1);
  EXPECT_EQ((*chain)["age_kind"], "before-trace");
  EXPECT_EQ((*chain)["depth"].get<int>(), 8000);
  EXPECT_EQ((*chain)["line"].get<int>(), chain_marker("descend_park"));
  ASSERT_EQ((*chain)["async_stack"].size(), 64u);
  EXPECT_EQ((*chain)["async_stack"][1]["line"].get<int>(), chain_marker("descend_calls_descend"));
  EXPECT_EQ((*chain)["outermost"]["function"], "handle_request(int, int)");
  EXPECT_EQ((*chain)["outermost"]["line"].get<int>(),
            chain_marker("handle_request_calls_load_user"));
  EXPECT_EQ((*idle)["function"], "idle_worker()");
  EXPECT_EQ((*idle)["line"].get<int>(), chain_marker("idle_worker_park"));
  EXPECT_EQ((*idle)["age_kind"], "before-trace");
}

// Sends SIGTERM once `said` is on the command's stderr and returns how long it took to exit.
struct StopResult {
  ProcessExit exit;
  double seconds_after_signal = 1e9;
  std::string err, out;
};

StopResult stop_when(const std::vector<std::string>& command, const std::vector<std::string>& args,
                     const std::string& said, milliseconds extra_wait = milliseconds(0)) {
  ScratchDir dir;
  TracerProcess p(args, dir.path(), {}, command);
  StopResult res;
  EXPECT_TRUE(p.wait_attached(seconds(120), said)) << p.err();
  std::this_thread::sleep_for(extra_wait);
  const auto t0 = steady_clock::now();
  p.signal(SIGTERM);
  auto e = p.wait_exit(seconds(30));
  res.seconds_after_signal = std::chrono::duration<double>(steady_clock::now() - t0).count();
  EXPECT_TRUE(e.has_value());
  if (e) res.exit = *e;
  res.err = p.err();
  res.out = p.out();
  return res;
}

class BigTarget : public ::testing::Test {
 protected:
  // 100,000 suspended coroutines: one snapshot of them takes seconds.
  BigTarget() : fx_({fixture_path("gcc12-O2", "many"), "--count", "100000"}, seconds(60)) {}
  std::string pid() const { return std::to_string(fx_.pid()); }
  FixtureProcess fx_;
};

TEST_F(BigTarget, TraceHonoursSigtermWithinASecondWhileReadingTheHeap) {
  // "tracing pid" is printed once the probes are attached, as the first snapshot begins.
  StopResult r =
      stop_when({asyncprobe_binary(), "trace"}, {"-p", pid(), "--json"}, "asyncprobe: tracing pid");
  EXPECT_EQ(r.exit.exit_code, 0) << r.err;
  EXPECT_LT(r.seconds_after_signal, 1.0) << r.err;
  const json doc = json::parse(r.out.empty() ? "{}" : r.out);
  EXPECT_TRUE(doc.contains("functions")) << r.out.substr(0, 2000);
}

TEST_F(BigTarget, TraceHonoursSigtermWithinASecondAtTheEndSnapshot) {
  // Stopped while recording (the first snapshot done): the end snapshot is abandoned in time.
  StopResult r = stop_when({asyncprobe_binary(), "trace"}, {"-p", pid(), "--json"},
                           "asyncprobe: tracing pid", seconds(8));
  EXPECT_EQ(r.exit.exit_code, 0) << r.err;
  EXPECT_LT(r.seconds_after_signal, 1.0) << r.err;
  const json doc = json::parse(r.out.empty() ? "{}" : r.out);
  ASSERT_TRUE(doc.contains("warnings")) << r.out.substr(0, 2000);
}

TEST_F(BigTarget, AwaitProfileHonoursSigtermWithinASecond) {
  StopResult r = stop_when({asyncprobe_binary(), "profile"}, {"-p", pid(), "--await"},
                           "asyncprobe: await profile of pid", milliseconds(500));
  EXPECT_EQ(r.exit.exit_code, 0) << r.err;
  EXPECT_LT(r.seconds_after_signal, 1.0) << r.err;
}

TEST_F(BigTarget, CpuProfileHonoursSigtermWithinASecond) {
  StopResult r = stop_when({asyncprobe_binary(), "profile"}, {"-p", pid()},
                           "asyncprobe: profiling pid", milliseconds(500));
  EXPECT_EQ(r.exit.exit_code, 0) << r.err;
  EXPECT_LT(r.seconds_after_signal, 1.0) << r.err;
}

TEST_F(BigTarget, SnapshotDiesOfSigtermAtOnce) {
  // The snapshot attaches nothing: SIGTERM's default action ends it, mid-scan.
  ScratchDir dir;
  TracerProcess p({"-p", pid()}, dir.path(), {}, {asyncprobe_binary()});
  std::this_thread::sleep_for(milliseconds(500));
  const auto t0 = steady_clock::now();
  p.signal(SIGTERM);
  auto e = p.wait_exit(seconds(30));
  ASSERT_TRUE(e.has_value());
  EXPECT_LT(std::chrono::duration<double>(steady_clock::now() - t0).count(), 1.0);
  EXPECT_EQ(e->term_signal, SIGTERM) << "ended by itself before the signal: " << p.err();
}

// ---- Options checked before anything is attached ------------------------------------------

TEST(OutputChecks, UnwritableOutputsFailBeforeAttaching) {
  FixtureProcess fx({fixture_path("gcc12-O2", "chain")});
  const std::string pid = std::to_string(fx.pid());
  struct Case {
    std::vector<std::string> argv;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"trace", "-p", pid, "-d", "5s", "--timeline", "/nonexistent/x.json"},
       "asyncprobe: cannot write /nonexistent/x.json (--timeline): No such file or directory\n"},
      {{"trace", "-p", pid, "-d", "5s", "-o", "/nonexistent/r.txt"},
       "asyncprobe: cannot write /nonexistent/r.txt (-o): No such file or directory\n"},
      {{"trace", "-p", pid, "-d", "5s", "-o", "/tmp"},
       "asyncprobe: cannot write /tmp (-o): it is a directory\n"},
      {{"profile", "-p", pid, "-d", "5s", "-o", "/nonexistent/cpu.svg"},
       "asyncprobe: cannot write /nonexistent/cpu.svg (-o): No such file or directory\n"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv{asyncprobe_binary()};
    argv.insert(argv.end(), c.argv.begin(), c.argv.end());
    const auto t0 = steady_clock::now();
    RunResult r = run_command(argv, seconds(60));
    EXPECT_EQ(r.exit.exit_code, 2) << c.argv[0] << " " << c.argv.back();
    EXPECT_EQ(r.err, c.message);
    EXPECT_LT(std::chrono::duration<double>(steady_clock::now() - t0).count(), 3.0)
        << "it must not trace for -d first";
  }
}

TEST(DurationRule, ZeroIsAUsageErrorForTraceAndProfile) {
  for (const std::string sub : {"trace", "profile"}) {
    RunResult r = run_command({asyncprobe_binary(), sub, "-p", "1", "-d", "0"}, seconds(30));
    EXPECT_EQ(r.exit.exit_code, 2) << sub;
    EXPECT_EQ(r.err,
              "asyncprobe: invalid duration '0' for --duration: must be above 0 (see "
              "asyncprobe " +
                  sub + " --help)\n");
  }
}

}  // namespace
}  // namespace asyncprobe::testing
