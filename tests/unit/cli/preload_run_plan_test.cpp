// `asyncprobe run` option parsing: what it puts in the environment of the command it execs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "userspace/cli/run_command.h"
#include "userspace/util/format.h"

namespace asyncprobe {
namespace {

// The build directory: where the library, its helper and asyncprobe are built.
std::string build_dir() {
  std::string fixtures = ASYNCPROBE_FIXTURE_DIR;
  return fixtures.substr(0, fixtures.rfind('/'));
}

struct Plan {
  bool ok = false;
  bool help = false;
  std::string error;
  cli::RunPlan plan;
  std::map<std::string, std::string> env;
};

// `asyncprobe run ARGS`: parsed, then planned.
Plan plan(std::vector<std::string> args) {
  Plan p;
  args.insert(args.begin(), "run");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  cli::RunOptions o;
  cli::ParseResult r = cli::parse_run_args(static_cast<int>(argv.size()), argv.data(), &o);
  p.help = r.help;
  p.error = r.error;
  p.ok = r.ok && (r.help || cli::plan_run(o, &p.plan, &p.error));
  for (const auto& [k, v] : p.plan.env) p.env[k] = v;
  return p;
}

class RunPlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The library next to this build's asyncprobe binary.
    setenv("ASYNCPROBE_PRELOAD_DIR", build_dir().c_str(), 1);
    unsetenv("LD_PRELOAD");
  }
  std::string lib(const std::string& name) {
    char real[4096];
    std::string p = build_dir() + "/" + name;
    return realpath(p.c_str(), real) != nullptr ? real : p;
  }
};

TEST_F(RunPlanTest, DefaultsPreloadTheLibraryWithCrashReportsAndTheSocket) {
  Plan p = plan({"--", "/bin/true", "a", "b"});
  ASSERT_TRUE(p.ok) << p.error;
  EXPECT_EQ(p.plan.argv, (std::vector<std::string>{"/bin/true", "a", "b"}));
  EXPECT_EQ(p.env["LD_PRELOAD"], lib("libasyncprobe-preload.so"));
  EXPECT_EQ(p.env["ASYNCPROBE_PRELOAD_OPTIONS"], "crash,socket,crash-wait=30000");
  EXPECT_EQ(p.env["ASYNCPROBE_ORIG_LD_PRELOAD"], "");
  EXPECT_EQ(p.env["ASYNCPROBE_PRELOAD_HELPER"], lib("asyncprobe-preload-helper"));
  for (const char* v :
       {"ASYNCPROBE_CRASH_REPORT", "ASYNCPROBE_TRACE_OUT", "ASYNCPROBE_BLOCKING_OUT",
        "ASYNCPROBE_DEBUG_DIRS", "ASYNCPROBE_SOCKET_DIR"}) {
    EXPECT_NE(std::find(p.plan.unset.begin(), p.plan.unset.end(), v), p.plan.unset.end()) << v;
  }
}

TEST_F(RunPlanTest, EveryOptionReachesTheLibrary) {
  Plan p = plan({"--crash-report", "/tmp/c.txt", "--trace-out=/tmp/t.json", "--blocking=2.5ms",
                 "--blocking-out", "/tmp/b.txt", "--json", "--follow-children", "--no-socket",
                 "--crash-wait", "5s", "--debug-dir", "/d1", "--debug-dir=/d2", "--socket-dir",
                 "/tmp/s", "--", "prog"});
  ASSERT_TRUE(p.ok) << p.error;
  EXPECT_EQ(p.env["LD_PRELOAD"],
            lib("libasyncprobe-preload.so") + ":" + lib("libasyncprobe-preload-blocking.so"));
  EXPECT_EQ(
      p.env["ASYNCPROBE_PRELOAD_OPTIONS"],
      "crash,no-socket,trace-from-start,blocking=2500000,follow-children,json,crash-wait=5000");
  EXPECT_EQ(p.env["ASYNCPROBE_CRASH_REPORT"], "/tmp/c.txt");
  EXPECT_EQ(p.env["ASYNCPROBE_TRACE_OUT"], "/tmp/t.json");
  EXPECT_EQ(p.env["ASYNCPROBE_BLOCKING_OUT"], "/tmp/b.txt");
  EXPECT_EQ(p.env["ASYNCPROBE_DEBUG_DIRS"], "/d1:/d2");
  EXPECT_EQ(p.env["ASYNCPROBE_SOCKET_DIR"], "/tmp/s");
}

TEST_F(RunPlanTest, KeepsTheUsersOwnPreloadAfterOurs) {
  setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libm.so.6", 1);
  Plan p = plan({"--trace", "--", "prog"});
  ASSERT_TRUE(p.ok) << p.error;
  EXPECT_EQ(p.env["LD_PRELOAD"],
            lib("libasyncprobe-preload.so") + ":/usr/lib/x86_64-linux-gnu/libm.so.6");
  EXPECT_EQ(p.env["ASYNCPROBE_ORIG_LD_PRELOAD"], "/usr/lib/x86_64-linux-gnu/libm.so.6");
  EXPECT_EQ(p.env["ASYNCPROBE_PRELOAD_OPTIONS"], "crash,socket,trace,crash-wait=30000");
}

TEST_F(RunPlanTest, RelativePathsBecomeAbsolute) {
  Plan p = plan({"--crash-report", "crash.txt", "--", "prog"});
  ASSERT_TRUE(p.ok);
  char cwd[4096];
  ASSERT_NE(getcwd(cwd, sizeof cwd), nullptr);
  EXPECT_EQ(p.env["ASYNCPROBE_CRASH_REPORT"], std::string(cwd) + "/crash.txt");
}

TEST_F(RunPlanTest, TheCommandMayFollowTheOptionsWithoutDashes) {
  Plan p = plan({"--trace", "prog", "--not-ours", "--trace"});
  ASSERT_TRUE(p.ok) << p.error;
  EXPECT_EQ(p.plan.argv, (std::vector<std::string>{"prog", "--not-ours", "--trace"}));
  // A bare --blocking never takes the command as its value.
  Plan b = plan({"--blocking", "prog", "1s"});
  ASSERT_TRUE(b.ok) << b.error;
  EXPECT_EQ(b.plan.argv, (std::vector<std::string>{"prog", "1s"}));
  EXPECT_EQ(b.env["ASYNCPROBE_PRELOAD_OPTIONS"], "crash,socket,blocking=10000000,crash-wait=30000");
  // After "--", options are the command's.
  Plan d = plan({"--", "--trace"});
  ASSERT_TRUE(d.ok) << d.error;
  EXPECT_EQ(d.plan.argv, std::vector<std::string>{"--trace"});
}

TEST_F(RunPlanTest, ErrorsAreOneLine) {
  EXPECT_EQ(plan({}).error, "no command: asyncprobe run [options] -- CMD [ARGS...]");
  EXPECT_EQ(plan({"--trace"}).error, "no command: asyncprobe run [options] -- CMD [ARGS...]");
  EXPECT_EQ(plan({"--bogus", "--", "x"}).error, "unknown option '--bogus'");
  EXPECT_EQ(plan({"--bogus", "x"}).error, "unknown option '--bogus'");
  EXPECT_EQ(plan({"--blocking=soon", "--", "x"}).error,
            "invalid duration 'soon' for --blocking: use e.g. 500us, 10ms or 1s");
  EXPECT_EQ(plan({"--crash-report"}).error, "option --crash-report needs a value");
  EXPECT_EQ(plan({"--crash-report", "--json", "x"}).error, "option --crash-report needs a value");
  EXPECT_EQ(plan({"--crash-wait", "2h", "--", "x"}).error,
            "invalid duration '2h' for --crash-wait: at most " + util::format_duration(3600));
  EXPECT_EQ(plan({"--trace", "--trace", "x"}).error, "option --trace given more than once");
  EXPECT_EQ(plan({"--debug-dir", "/a", "--socket-dir", "/s", "--socket-dir", "/t", "x"}).error,
            "option --socket-dir given more than once");
  Plan h = plan({"--help"});
  EXPECT_TRUE(h.ok);
  EXPECT_TRUE(h.help);
}

TEST_F(RunPlanTest, AMissingLibraryIsReported) {
  setenv("ASYNCPROBE_PRELOAD_DIR", "/nonexistent", 1);
  // The search falls back to the directories next to this test binary, where it is not.
  Plan p = plan({"--", "prog"});
  if (p.ok) GTEST_SKIP() << "an installed copy of the library was found: " << p.env["LD_PRELOAD"];
  EXPECT_EQ(
      p.error,
      "cannot find libasyncprobe-preload.so (set ASYNCPROBE_PRELOAD_DIR or reinstall asyncprobe)");
}

}  // namespace
}  // namespace asyncprobe
