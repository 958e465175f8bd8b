// The target dies at a random moment of a subcommand's start-up or run (the fixture `exits`
// returns from main 0-1500 ms after READY; its parent reaps it at once, as a service manager
// would). The exit code is the README's, decided by when it died relative to asyncprobe:
//   - before asyncprobe started: 3 (no such process); also 3 when it died in the moment between
//     the test starting asyncprobe and asyncprobe's first look (and then only from that look);
//   - after asyncprobe ended: 0, with the full result;
//   - in between: 8 with one line saying it exited, or 0 where the command's contract makes the
//     target's exit part of the result (trace and profile once recording began: their start line
//     was printed and the result says the target exited; watch -p once attached: an "attached"
//     and a "detached ... exited" event; snapshot: the report was complete).
// Never 1 ("no uprobe could be attached ... No such process"), 5, 7 or an empty name.
#include <gtest/gtest.h>

#include <chrono>
#include <iostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/fixture_process.h"
#include "tests/integration/preload_support.h"
#include "userspace/util/exit_codes.h"

namespace asyncprobe::testing {
namespace {

using Clock = std::chrono::steady_clock;

struct Outcome {
  RunResult r;
  pid_t pid = 0;
  bool died_before_start = false, died_after_end = false;
};

// Starts `exits` with `delay_ms`, reaps it from a thread the moment it ends, and runs asyncprobe
// with `args` ("{}" = the pid) as soon as it is READY.
// With `terminal`, asyncprobe runs under script(1), which gives it a terminal and exits with its
// status.
Outcome run_against_dying_target(long delay_ms, const std::vector<std::string>& args,
                                 bool terminal = false) {
  FixtureProcess target(
      {fixture_path("gcc12-O2", "exits"), "--after-ms", std::to_string(delay_ms)});
  Clock::time_point died{};
  std::thread reaper([&] {
    target.wait_exit(std::chrono::seconds(30));
    died = Clock::now();
  });
  Outcome o;
  o.pid = target.pid();
  std::vector<std::string> argv = {asyncprobe_binary()};
  for (const auto& a : args) argv.push_back(a == "{}" ? std::to_string(o.pid) : a);
  if (terminal) {
    std::string line;
    for (const auto& a : argv) line += (line.empty() ? "" : " ") + a;
    argv = {"env", "TERM=xterm", "script", "-qec", line, "/dev/null"};
  }
  const Clock::time_point start = Clock::now();
  o.r = run_command(argv, std::chrono::seconds(60));
  const Clock::time_point end = Clock::now();
  reaper.join();
  o.died_before_start = died < start;
  o.died_after_end = died > end;
  return o;
}

std::string describe(long delay_ms, const Outcome& o) {
  return "delay " + std::to_string(delay_ms) + " ms, exit " + std::to_string(o.r.exit.exit_code) +
         "\nstdout: " + o.r.out.substr(0, 600) + "\nstderr: " + o.r.err;
}

// The checks common to every subcommand; `completed` says whether a 0 carries the full result.
void check_outcome(long delay_ms, const Outcome& o, bool completed,
                   const std::string& exited_line) {
  SCOPED_TRACE(describe(delay_ms, o));
  const int code = o.r.exit.exit_code;
  std::cout << "death after " << delay_ms << " ms: exit " << code
            << (o.died_before_start ? " (before start)"
                : o.died_after_end  ? " (after end)"
                                    : "")
            << "\n";
  if (o.died_before_start) {
    EXPECT_EQ(code, util::kExitNoProcess);
    return;
  }
  if (o.died_after_end) {
    EXPECT_EQ(code, util::kExitOk);
    EXPECT_TRUE(completed);
    return;
  }
  // Gone before asyncprobe's first look (it is still starting when we count it started): 3,
  // from that first look only.
  if (code == util::kExitNoProcess) {
    EXPECT_EQ(o.r.err, "asyncprobe: no process with pid " + std::to_string(o.pid) + "\n");
    return;
  }
  ASSERT_TRUE(code == util::kExitOk || code == util::kExitTargetExited);
  if (code == util::kExitOk) {
    EXPECT_TRUE(completed);
  } else {
    EXPECT_NE(o.r.err.find(exited_line), std::string::npos);
    EXPECT_EQ(o.r.err.find("()"), std::string::npos);  // never an empty name
  }
}

class TargetDeath : public ::testing::Test {
 protected:
  std::vector<long> delays() {
    std::mt19937 rng(static_cast<unsigned>(::testing::UnitTest::GetInstance()->random_seed()) +
                     static_cast<unsigned>(getpid()));
    std::uniform_int_distribution<long> d(0, 1500);
    std::vector<long> out;
    for (int i = 0; i < 4; ++i) out.push_back(d(rng));
    return out;
  }
};

TEST_F(TargetDeath, Snapshot) {
  for (long delay : delays()) {
    Outcome o = run_against_dying_target(delay, {"-p", "{}"});
    const std::string summary =
        "asyncprobe: pid " + std::to_string(o.pid) + " (exits): 4 coroutines";
    bool completed = o.r.out.rfind(summary, 0) == 0;
    check_outcome(delay, o, completed,
                  "asyncprobe: process " + std::to_string(o.pid) +
                      " (exits) exited while asyncprobe was taking the snapshot");
    if (o.r.exit.exit_code == util::kExitTargetExited) {
      EXPECT_EQ(o.r.out, "");
    }
  }
}

TEST_F(TargetDeath, Trace) {
  for (long delay : delays()) {
    Outcome o = run_against_dying_target(delay, {"trace", "-p", "{}", "-d", "3s"});
    const std::string pid = std::to_string(o.pid);
    // Began (the start line), and ended by the exit or by -d, with a report.
    bool completed =
        o.r.err.find("asyncprobe: tracing pid " + pid + " (exits): ") != std::string::npos &&
        !o.r.out.empty();
    check_outcome(
        delay, o, completed,
        "asyncprobe: process " + pid + " (exits) exited while asyncprobe was starting the trace");
  }
}

TEST_F(TargetDeath, Profile) {
  const std::string dir = make_temp_dir("death");
  for (long delay : delays()) {
    Outcome o = run_against_dying_target(
        delay, {"profile", "-p", "{}", "-d", "3s", "-o", dir + "/cpu.folded"});
    const std::string pid = std::to_string(o.pid);
    bool completed =
        o.r.err.find("asyncprobe: profiling pid " + pid + " (exits) at 99 Hz") != std::string::npos;
    check_outcome(
        delay, o, completed,
        "asyncprobe: process " + pid + " (exits) exited while asyncprobe was starting the profile");
    unlink((dir + "/cpu.folded").c_str());
  }
  remove_tree(dir);
}

TEST_F(TargetDeath, WatchOneProcess) {
  for (long delay : delays()) {
    Outcome o = run_against_dying_target(delay, {"watch", "-p", "{}", "--json"});
    const std::string pid = std::to_string(o.pid);
    bool completed =
        o.r.out.find("\"event\":\"attached\",\"pid\":" + pid + ",\"command\":\"exits\"") !=
            std::string::npos &&
        o.r.out.find("\"event\":\"detached\",\"pid\":" + pid +
                     ",\"command\":\"exits\",\"container\":null,\"reason\":\"exited\"") !=
            std::string::npos;
    // Before its first scan completes, watch says so as an event (stdout) and exits 8.
    SCOPED_TRACE(describe(delay, o));
    if (o.r.exit.exit_code == util::kExitTargetExited) {
      EXPECT_NE(o.r.out.find("\"event\":\"error\",\"pid\":" + pid + ",\"command\":\"exits\""),
                std::string::npos);
      EXPECT_NE(o.r.out.find("\"reason\":\"exited\""), std::string::npos);
    }
    check_outcome(delay, o, completed, "");
  }
}

TEST_F(TargetDeath, Top) {
  for (long delay : delays()) {
    Outcome o = run_against_dying_target(delay, {"top", "-p", "{}"}, true);
    const std::string pid = std::to_string(o.pid);
    // script(1) merges the streams. Drawn (its status line) before the exit ended it, or not.
    bool completed = o.r.out.find("Enter: stacks") != std::string::npos;
    if (o.r.exit.exit_code != util::kExitOk && o.r.out.find("asyncprobe: ") != std::string::npos) {
      // The error line, past what the terminal got.
      o.r.err = o.r.out.substr(o.r.out.find("asyncprobe: "));
      std::erase(o.r.err, '\r');
    }
    check_outcome(
        delay, o, completed,
        "asyncprobe: process " + pid + " (exits) exited while asyncprobe was starting top");
    if (o.r.exit.exit_code == util::kExitOk) {
      EXPECT_NE(o.r.out.find("asyncprobe top: process " + pid + " (exits) exited"),
                std::string::npos)
          << o.r.out.substr(o.r.out.size() > 400 ? o.r.out.size() - 400 : 0);
    }
    if (o.r.exit.exit_code == util::kExitTargetExited) {
      EXPECT_FALSE(completed);
    }
  }
}

}  // namespace
}  // namespace asyncprobe::testing
