// Every way a user can point asyncprobe at the wrong thing: each gets one clear line on stderr
// and its documented exit code (README "Exit codes"), never a crash or a silent wrong answer.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "tests/integration/fixture_process.h"
#include "userspace/util/exit_codes.h"

namespace asyncprobe::testing {
namespace {

RunResult probe(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {asyncprobe_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, std::chrono::seconds(60));
}

int count_lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

void expect_one_line_error(const RunResult& r, int code, const std::string& needle) {
  EXPECT_EQ(r.exit.exit_code, code) << r.err;
  EXPECT_EQ(r.exit.term_signal, 0);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_EQ(r.err.rfind("asyncprobe: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

int free_pid() {
  // PIDs above pid_max cannot exist; stay below it but far from live ones.
  for (int pid = 4'000'000; pid > 100'000; pid -= 7919) {
    if (::kill(pid, 0) != 0 && errno == ESRCH) return pid;
  }
  return 0;
}

TEST(BadInput, NoSuchProcess) {
  int pid = free_pid();
  ASSERT_NE(pid, 0);
  expect_one_line_error(probe({"-p", std::to_string(pid)}), util::kExitNoProcess,
                        "no such process");
}

TEST(BadInput, UsageErrors) {
  expect_one_line_error(probe({}), util::kExitUsage, "-p PID");
  expect_one_line_error(probe({"-p", "abc"}), util::kExitUsage, "invalid PID");
  expect_one_line_error(probe({"-p", "1", "--window", "soon"}), util::kExitUsage,
                        "invalid duration");
  expect_one_line_error(probe({"-p", "1", "--frobnicate"}), util::kExitUsage, "unknown option");
}

TEST(BadInput, KernelThread) {
  // PID 2 is kthreadd on every Linux system.
  expect_one_line_error(probe({"-p", "2", "--window", "0"}), util::kExitNotInspectable,
                        "kernel thread");
}

TEST(BadInput, Zombie) {
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  // Not reaped yet: a zombie until waitpid below.
  for (int i = 0; i < 200; ++i) {
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT) == 0) break;
    ::usleep(10'000);
  }
  expect_one_line_error(probe({"-p", std::to_string(child), "--window", "0"}),
                        util::kExitNotInspectable, "zombie");
  ::waitpid(child, nullptr, 0);
}

TEST(BadInput, ProcessWithoutCoroutineCode) {
  FixtureProcess fx({fixture_path("gcc12-O2", "nocoro")});
  expect_one_line_error(probe({"-p", std::to_string(fx.pid()), "--window", "0"}),
                        util::kExitNoCoroutines, "no coroutine code found");
}

// Debian's bash is stripped and has no coroutines: the stripped-binary fallback once confirmed
// one frame in its heap on the strength of a plausible suspend index and printed it, exit 0.
TEST(BadInput, StrippedProgramWithoutCoroutinesIsNotAFrame) {
  FixtureProcess fx({"/usr/bin/bash", "--norc", "--noprofile", "-c",
                     "x=$(printf '%0500d' 0); echo READY $$; while :; do sleep 1; done"});
  RunResult r = probe({"-p", std::to_string(fx.pid()), "--window", "0"});
  EXPECT_EQ(r.exit.exit_code, util::kExitNoCoroutines) << r.err << r.out;
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_NE(r.err.find("no coroutine frames recognised"), std::string::npos) << r.err;
}

TEST(BadInput, NotPermittedAsAnotherUser) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run the probe as another user";
  FixtureProcess fx({fixture_path("gcc12-O2", "chain")});
  RunResult r = run_command({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                             asyncprobe_binary(), "-p", std::to_string(fx.pid()), "--window", "0"},
                            std::chrono::seconds(60));
  expect_one_line_error(r, util::kExitPermission, "CAP_SYS_PTRACE");
}

TEST(BadInput, TargetExitsDuringTheWindow) {
  FixtureProcess fx({fixture_path("gcc12-O2", "exits"), "--after-ms", "700"});
  RunResult r = probe({"-p", std::to_string(fx.pid()), "--window", "3s"});
  EXPECT_EQ(r.exit.exit_code, util::kExitTargetExited) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("exited"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace asyncprobe::testing
