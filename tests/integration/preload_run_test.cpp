// `asyncprobe run` leaves no trace: the command keeps its output and exit status, signals it
// dies of are its own, programs it starts do not inherit the library (unless asked), a
// preloading the user had is kept, features that were not asked for map nothing, and the helper
// the library starts is no child of the program's.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/fixture_process.h"
#include "tests/integration/preload_support.h"
#include "userspace/preload/protocol.h"
#include "userspace/process/preload_client.h"

namespace asyncprobe::testing {
namespace {

Finished sh(const std::vector<std::string>& options, const std::string& script) {
  return run_with_status(run_argv(options, {"/bin/sh", "-c", script}), "/", 0);
}

std::string library_path() {
  std::string bin = asyncprobe_binary();
  char real[4096];
  std::string p = bin.substr(0, bin.rfind('/')) + "/libasyncprobe-preload.so";
  return realpath(p.c_str(), real) != nullptr ? real : p;
}

TEST(PreloadRun, OutputAndExitStatusAreTheCommandsOwn) {
  Finished f = sh({}, "echo out; echo err >&2; exit 7");
  EXPECT_EQ(f.exit_code(), 7);
  EXPECT_EQ(f.out, "out\n");
  EXPECT_EQ(f.err, "err\n");
}

TEST(PreloadRun, SignalsItDiesOfAreItsOwn) {
  Finished term = sh({}, "kill -TERM $$");
  EXPECT_EQ(term.signal(), SIGTERM);
  EXPECT_EQ(term.err, "");
  // A fatal signal sent by kill is reported too, then delivered again.
  Finished segv = sh({}, "kill -SEGV $$");
  EXPECT_EQ(segv.signal(), SIGSEGV);
  EXPECT_NE(segv.err.find("asyncprobe: SIGSEGV (sent by kill) in thread"), std::string::npos)
      << segv.err;
  EXPECT_NE(segv.err.find("asyncprobe: no coroutine is running on this thread"), std::string::npos)
      << segv.err;
}

TEST(PreloadRun, ProgramsTheCommandStartsDoNotInheritTheLibrary) {
  Finished f = sh({},
                  "echo \"[$LD_PRELOAD]\"; env | grep -c '^ASYNCPROBE_' ; grep -c libasyncprobe "
                  "/proc/self/maps");
  EXPECT_EQ(f.out, "[]\n0\n0\n");
  EXPECT_EQ(f.exit_code(), 1);  // the last grep found nothing
}

TEST(PreloadRun, FollowChildrenPassesItOn) {
  Finished f =
      sh({"--follow-children"},
         "echo \"[$LD_PRELOAD]\"; grep -q libasyncprobe-preload.so /proc/self/maps && echo mapped");
  EXPECT_EQ(f.out, "[" + library_path() + "]\nmapped\n");
}

TEST(PreloadRun, TheUsersOwnPreloadIsKept) {
  setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libm.so.6", 1);
  Finished f = sh({}, "echo \"[$LD_PRELOAD]\"; grep -q libm.so.6 /proc/self/maps && echo mapped");
  unsetenv("LD_PRELOAD");
  EXPECT_EQ(f.out, "[/usr/lib/x86_64-linux-gnu/libm.so.6]\nmapped\n");
}

TEST(PreloadRun, ACommandThatCannotRunGetsTheShellsStatus) {
  Finished f = run_with_status(run_argv({}, {"/nonexistent/prog"}), "/", 0);
  EXPECT_EQ(f.exit_code(), 127);
  EXPECT_EQ(f.err, "asyncprobe: cannot run '/nonexistent/prog': No such file or directory\n");
  Finished u = run_with_status(run_argv({"--bogus"}, {"/bin/true"}), "/", 0);
  EXPECT_EQ(u.exit_code(), 2);
  EXPECT_EQ(u.err, "asyncprobe: unknown option '--bogus' (see asyncprobe run --help)\n");
}

TEST(PreloadRun, ProgramsTheLoaderWouldNotPreloadAreRefused) {
  // A static program: no dynamic loader, so no library.
  std::string dir = make_temp_dir("static");
  std::string src = dir + "/s.c", bin = dir + "/s";
  { std::ofstream(src) << "int main(void) { return 0; }\n"; }
  RunResult cc = run_command({"gcc", "-static", "-o", bin, src});
  ASSERT_EQ(cc.exit.exit_code, 0) << cc.err;
  Finished f = run_with_status(run_argv({}, {bin}), "/", 0);
  remove_tree(dir);
  EXPECT_EQ(f.exit_code(), 6);
  EXPECT_EQ(f.err, "asyncprobe: '" + bin +
                       "' is statically linked: no dynamic loader to preload the library\n");
  // A script runs: its interpreter is what gets the library.
  EXPECT_EQ(sh({}, "exit 0").exit_code(), 0);
}

TEST(PreloadRun, FeaturesNotAskedForMapNothing) {
  const std::string service = fixture_path("gcc12-O2", "preload_service");
  FixtureProcess plain(run_argv({}, {service}));
  std::string maps = read_text_file("/proc/" + std::to_string(plain.pid()) + "/maps");
  EXPECT_NE(maps.find("libasyncprobe-preload.so"), std::string::npos);
  EXPECT_EQ(maps.find("libcapstone"), std::string::npos);  // tracing loads it
  EXPECT_EQ(maps.find("libdw"), std::string::npos);        // tables are computed outside
  EXPECT_EQ(maps.find("libelf"), std::string::npos);
  EXPECT_EQ(maps.find("libasyncprobe-preload-blocking.so"), std::string::npos);
  // Threads: the program's own plus one (the library's service thread).
  std::string status = read_text_file("/proc/" + std::to_string(plain.pid()) + "/status");
  EXPECT_NE(status.find("Threads:\t2\n"), std::string::npos) << status;

  FixtureProcess traced(run_argv({"--trace"}, {service}));
  std::string tmaps = read_text_file("/proc/" + std::to_string(traced.pid()) + "/maps");
  EXPECT_NE(tmaps.find("libcapstone"), std::string::npos);
}

// The pids in /proc/PID/task/*/children (zombies included).
std::string children_of(pid_t pid) {
  std::string out;
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream in(dir + "/" + e->d_name + "/children");
    std::string pids;
    std::getline(in, pids);
    out += pids;
  }
  closedir(d);
  return out;
}

// The table helper ran (the tables are complete) without the program seeing it: no SIGCHLD, no
// child for its wait(), and the library reaped it (no zombie left).
TEST(PreloadRun, TheHelperIsNoChildOfTheProgramsAndIsReaped) {
  FixtureProcess p(
      run_argv({}, {fixture_path("gcc12-O2", "preload_service"), "--report-children"}));
  bool complete = false;
  for (int i = 0; i < 300 && !complete; ++i) {
    std::string why;
    auto c = process::PreloadConnection::open(p.pid(), &why);
    complete = c != nullptr && c->has_feature(preload_proto::kFeatureTablesComplete);
    if (!complete) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(complete) << "pid " << p.pid() << " never completed its coroutine tables";
  std::string children = children_of(p.pid());
  for (int i = 0; i < 200 && !children.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    children = children_of(p.pid());
  }
  EXPECT_EQ(children, "");
  ASSERT_EQ(kill(p.pid(), SIGUSR1), 0);
  EXPECT_EQ(p.read_line(std::chrono::seconds(20)), "DONE 1 sigchld=0 children=none");
}

}  // namespace
}  // namespace asyncprobe::testing
