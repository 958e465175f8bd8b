// Crash and std::terminate reports of `asyncprobe run`: the fixture preload_crash crashes three
// awaits deep; the report must name every frame of the async stack with the file:line of its
// co_await (from the fixture's `// @await` markers), show the crashing thread's stack, and the
// process must die exactly as it does without asyncprobe: same signal, core dump included.
// Every compiler x optimisation variant is checked.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/integration/fixture_process.h"
#include "tests/integration/preload_support.h"
#include "tests/integration/source_markers.h"

namespace asyncprobe::testing {
namespace {

const char* kSource = "tests/fixtures/preload_crash.cpp";

std::string at(const std::string& marker) { return marker_location(kSource, marker); }

// The async stack lines we expect after "asyncprobe: async stack of the running coroutine".
std::vector<std::string> expected_async_stack(const std::string& leaf_line) {
  return {"leaf(int) running at " + leaf_line, "query(int) awaiting at " + at("query_calls_leaf"),
          "handler(int) awaiting at " + at("handler_calls_query"),
          "request(int) awaiting at " + at("request_calls_handler")};
}

std::vector<std::string> async_stack_of(const std::string& report) {
  std::vector<std::string> out;
  for (const auto& l : section(report, "asyncprobe: async stack of the running coroutine")) {
    out.push_back(strip_frame_decoration(l));
  }
  return out;
}

class PreloadCrash : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir("crash");
    fixture_ = fixture_path(GetParam(), "preload_crash");
  }
  void TearDown() override { remove_tree(dir_); }

  // The fixture alone, then under `asyncprobe run`, in the same directory with cores enabled.
  void run_both(const std::vector<std::string>& args, Finished* plain, Finished* preloaded) {
    std::vector<std::string> cmd = {fixture_};
    cmd.insert(cmd.end(), args.begin(), args.end());
    *plain = run_with_status(cmd, dir_, RLIM_INFINITY);
    *preloaded = run_with_status(run_argv({"--crash-report", dir_ + "/crash.txt"}, cmd), dir_,
                                 RLIM_INFINITY);
  }

  std::string dir_;
  std::string fixture_;
};

TEST_P(PreloadCrash, SegfaultThreeAwaitsDeepPrintsTheAsyncStackAndDiesBySigsegv) {
  Finished plain, run;
  run_both({"segv"}, &plain, &run);
  ASSERT_TRUE(plain.signaled());
  EXPECT_EQ(plain.signal(), SIGSEGV);
  // Same death: the signal, and a core dump whenever the plain run dumped one.
  ASSERT_TRUE(run.signaled()) << run.err;
  EXPECT_EQ(run.signal(), SIGSEGV);
  EXPECT_EQ(run.core_dumped(), plain.core_dumped());
  // Same output from the program itself.
  EXPECT_EQ(run.out.substr(0, 6), "CHAIN ");
  EXPECT_EQ(plain.out.substr(0, 6), "CHAIN ");

  const std::string pid = run.out.substr(6, run.out.find('\n') - 6);
  EXPECT_NE(
      run.err.find("asyncprobe: SIGSEGV (address not mapped) at address 0x0 in thread " + pid),
      std::string::npos)
      << run.err;
  // The crashing thread's stack: the faulting function, then the coroutine's resume function.
  std::vector<std::string> stack = section(run.err, "asyncprobe: stack of thread " + pid);
  ASSERT_GE(stack.size(), 3u) << run.err;
  EXPECT_NE(stack[0].find("crash_here(int) at " + at("segv_here")), std::string::npos) << stack[0];
  EXPECT_NE(stack[1].find("leaf(int) [coroutine] at " + at("leaf_crashes")), std::string::npos)
      << stack[1];
  bool has_main = false;
  for (const auto& l : stack) has_main |= l.find(" main at ") != std::string::npos;
  EXPECT_TRUE(has_main) << run.err;

  EXPECT_EQ(async_stack_of(run.err), expected_async_stack(at("leaf_crashes"))) << run.err;
  EXPECT_NE(run.err.find("asyncprobe: end of report; the process now dies of SIGSEGV"),
            std::string::npos);
  // The same report went to --crash-report.
  std::string file = read_text_file(dir_ + "/crash.txt");
  EXPECT_EQ(async_stack_of(file), expected_async_stack(at("leaf_crashes"))) << file;
}

TEST_P(PreloadCrash, ExceptionEscapingACoroutineGoesThroughTerminateWithTheAsyncStack) {
  Finished plain, run;
  run_both({"terminate"}, &plain, &run);
  ASSERT_TRUE(plain.signaled());
  EXPECT_EQ(plain.signal(), SIGABRT);
  ASSERT_TRUE(run.signaled()) << run.err;
  EXPECT_EQ(run.signal(), SIGABRT);
  EXPECT_EQ(run.core_dumped(), plain.core_dumped());
  EXPECT_NE(run.err.find("asyncprobe: std::terminate called in thread"), std::string::npos)
      << run.err;
  std::vector<std::string> async = async_stack_of(run.err);
  ASSERT_EQ(async.size(), 4u) << run.err;
  // Where the running coroutine stands inside its exception path depends on the compiler; the
  // awaiting ones are exact.
  EXPECT_EQ(async[0].rfind("leaf(int) running", 0), 0u) << async[0];
  std::vector<std::string> want = expected_async_stack("");
  for (size_t i = 1; i < 4; ++i) EXPECT_EQ(async[i], want[i]);
  // The runtime's own message still follows ours, and the signal handler does not report twice.
  size_t ours = run.err.find("asyncprobe: end of report");
  size_t theirs =
      run.err.find("terminate called after throwing an instance of 'std::runtime_error'");
  ASSERT_NE(theirs, std::string::npos) << run.err;
  EXPECT_LT(ours, theirs);
  EXPECT_EQ(run.err.find("asyncprobe: SIGABRT"), std::string::npos) << run.err;
}

// An exception that leaves a noexcept function above the coroutine (the loop that resumed it):
// Clang unwinds the coroutine's activation to that function's terminate landing pad, GCC runs
// the coroutine's cleanup pad first. Either way the report shows the async stack as it was when
// the exception was thrown, the running coroutine at the line that threw; the process still
// dies as it does alone.
TEST_P(PreloadCrash, ExceptionThroughANoexceptResumerStillReportsTheAsyncStack) {
  Finished plain, run;
  run_both({"noexcept"}, &plain, &run);
  ASSERT_TRUE(plain.signaled());
  EXPECT_EQ(plain.signal(), SIGABRT);
  ASSERT_TRUE(run.signaled()) << run.err;
  EXPECT_EQ(run.signal(), SIGABRT);
  EXPECT_EQ(run.core_dumped(), plain.core_dumped());
  const std::string pid = run.out.substr(6, run.out.find('\n') - 6);
  EXPECT_NE(run.err.find("asyncprobe: std::terminate called in thread " + pid +
                         " \"preload_crash\" with an active exception\n"),
            std::string::npos)
      << run.err;
  // The sync stack holds the noexcept function (with Clang, it is where the stack ends).
  std::vector<std::string> stack = section(run.err, "asyncprobe: stack of thread " + pid);
  bool has_resumer = false;
  for (const auto& l : stack) has_resumer |= l.find("resume_noexcept(") != std::string::npos;
  EXPECT_TRUE(has_resumer) << run.err;
  EXPECT_EQ(async_stack_of(run.err), expected_async_stack(at("leaf_crashes"))) << run.err;
  EXPECT_EQ(run.err.find("no coroutine"), std::string::npos) << run.err;
  std::string file = read_text_file(dir_ + "/crash.txt");
  EXPECT_EQ(async_stack_of(file), expected_async_stack(at("leaf_crashes"))) << file;
}

TEST_P(PreloadCrash, CrashOnASecondThreadReportsThatThread) {
  Finished plain, run;
  run_both({"segv", "--thread"}, &plain, &run);
  ASSERT_TRUE(run.signaled()) << run.err;
  EXPECT_EQ(run.signal(), SIGSEGV);
  EXPECT_EQ(run.core_dumped(), plain.core_dumped());
  EXPECT_EQ(async_stack_of(run.err), expected_async_stack(at("leaf_crashes"))) << run.err;
  EXPECT_NE(run.err.find("start_thread"), std::string::npos) << run.err;
}

TEST_P(PreloadCrash, NoCrashMeansNoTrace) {
  Finished plain, run;
  run_both({"ok"}, &plain, &run);
  EXPECT_EQ(plain.exit_code(), 0);
  EXPECT_EQ(run.exit_code(), 0);
  EXPECT_EQ(run.err, "");
  EXPECT_EQ(run.out.substr(0, 6), "CHAIN ");
  EXPECT_FALSE(std::ifstream(dir_ + "/crash.txt").good());
}

INSTANTIATE_TEST_SUITE_P(Variants, PreloadCrash,
                         ::testing::ValuesIn(fixture_variants_with("preload_crash")),
                         VariantTestName());

// Other fatal signals, on one build per compiler family.
struct SignalCase {
  std::string variant;
  std::string mode;
  int sig;
};

class PreloadSignals : public ::testing::TestWithParam<SignalCase> {};

TEST_P(PreloadSignals, ReportsAndDiesTheSameWay) {
  const SignalCase& c = GetParam();
  std::string dir = make_temp_dir("signal");
  std::vector<std::string> cmd = {fixture_path(c.variant, "preload_crash"), c.mode};
  Finished plain = run_with_status(cmd, dir, RLIM_INFINITY);
  Finished run = run_with_status(run_argv({}, cmd), dir, RLIM_INFINITY);
  remove_tree(dir);
  ASSERT_TRUE(plain.signaled());
  EXPECT_EQ(plain.signal(), c.sig);
  ASSERT_TRUE(run.signaled()) << run.err;
  EXPECT_EQ(run.signal(), c.sig);
  EXPECT_EQ(run.core_dumped(), plain.core_dumped());
  EXPECT_EQ(async_stack_of(run.err), expected_async_stack(at("leaf_crashes"))) << run.err;
}

std::vector<SignalCase> signal_cases() {
  std::vector<SignalCase> out;
  for (const char* v : {"gcc12-O2", "clang19-O2"}) {
    out.push_back({v, "abort", SIGABRT});
    out.push_back({v, "fpe", SIGFPE});
    out.push_back({v, "ill", SIGILL});
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Signals, PreloadSignals, ::testing::ValuesIn(signal_cases()),
                         [](const auto& info) {
                           return test_name_of_variant(info.param.variant + "_" + info.param.mode);
                         });

}  // namespace
}  // namespace asyncprobe::testing
