// `asyncprobe top` in a real terminal: tmux runs a shell, the shell runs asyncprobe top against a
// fixture service, send-keys types, capture-pane reads the screen. Expected rows come from the
// fixture's source (its @await markers), never from asyncprobe's own output.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/fixture_process.h"
#include "tests/integration/source_markers.h"

namespace asyncprobe::testing {
namespace {

constexpr const char* kService = "tests/fixtures/top_service.cpp";

// One tmux server of our own (-L), one session running a plain shell.
class Tmux {
 public:
  // `locale` is the shell's LC_ALL: "C" draws ASCII trees, "C.UTF-8" Unicode ones.
  Tmux(int width, int height, const std::string& locale = "C") {
    static std::atomic<int> counter{0};
    socket_ = "asyncprobe-top-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
    RunResult r = tmux({"-f", "/dev/null", "new-session", "-d", "-s", "t", "-x",
                        std::to_string(width), "-y", std::to_string(height),
                        "env PS1='$ ' TERM=screen LC_ALL=" + locale + " bash --norc --noprofile"});
    if (r.exit.exit_code != 0) throw std::runtime_error("tmux: " + r.err);
  }
  ~Tmux() { tmux({"kill-server"}); }
  Tmux(const Tmux&) = delete;
  Tmux& operator=(const Tmux&) = delete;

  RunResult tmux(std::vector<std::string> args) {
    std::vector<std::string> argv = {"tmux", "-L", socket_};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, std::chrono::seconds(10));
  }
  // A line typed into the shell, then Enter.
  void type_line(const std::string& text) {
    tmux({"send-keys", "-t", "t", "-l", text});
    tmux({"send-keys", "-t", "t", "Enter"});
  }
  void keys(const std::vector<std::string>& names) {
    std::vector<std::string> args = {"send-keys", "-t", "t"};
    args.insert(args.end(), names.begin(), names.end());
    tmux(args);
  }
  std::string screen() { return tmux({"capture-pane", "-p", "-t", "t"}).out; }
  // The screen with its attributes as escape sequences (tmux capture-pane -e).
  std::string screen_with_attributes() { return tmux({"capture-pane", "-p", "-e", "-t", "t"}).out; }
  void resize(int width, int height) {
    tmux({"resize-window", "-t", "t", "-x", std::to_string(width), "-y", std::to_string(height)});
  }
  // The screen once it contains `needle` (and `also`, when given); the last screen on timeout.
  std::string wait_for(const std::string& needle, const std::string& also = {},
                       std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    auto end = std::chrono::steady_clock::now() + timeout;
    std::string s;
    do {
      s = screen();
      if (s.find(needle) != std::string::npos &&
          (also.empty() || s.find(also) != std::string::npos)) {
        return s;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    } while (std::chrono::steady_clock::now() < end);
    return s;
  }

 private:
  std::string socket_;
};

std::vector<std::string> lines_of(const std::string& screen);

// The exit code the shell printed after top ended ("EXIT=N" alone on a line), -1 on timeout.
int wait_exit(Tmux& t, std::string* screen) {
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  do {
    *screen = t.screen();
    for (const auto& l : lines_of(*screen)) {
      if (l.rfind("EXIT=", 0) == 0) return std::atoi(l.c_str() + 5);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  } while (std::chrono::steady_clock::now() < end);
  return -1;
}

std::vector<std::string> lines_of(const std::string& screen) {
  std::vector<std::string> lines;
  std::istringstream in(screen);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

// The one screen line that mentions `text`, or "" (several: the first).
std::string line_with(const std::string& screen, const std::string& text) {
  for (const auto& l : lines_of(screen)) {
    if (l.find(text) != std::string::npos) return l;
  }
  return "";
}

std::string where(const std::string& marker) {
  return "top_service.cpp:" + std::to_string(marker_line(kService, marker));
}

std::string top_command(pid_t pid, const std::string& interval = "200ms",
                        const std::string& extra = "") {
  return asyncprobe_binary() + " top -p " + std::to_string(pid) + " --interval " + interval +
         extra + "; echo EXIT=$?";
}

// The number in a table row's STUCK column (the row's second field).
long stuck_cell(const std::string& row) {
  std::istringstream in(row);
  long count = -1, stuck = -1;
  in >> count >> stuck;
  return stuck;
}

class TopTerminal : public ::testing::Test {
 protected:
  void SetUp() override {
    if (run_command({"sh", "-c", "command -v tmux"}).exit.exit_code != 0) {
      GTEST_FAIL() << "tmux is not installed: run tools/install-deps";
    }
  }
};

TEST_F(TopTerminal, TableShowsEachPointWithItsCountAndLocation) {
  FixtureProcess svc({fixture_path("gcc12-O0", "top_service"), "--idle", "30", "--busy", "5"});
  Tmux t(80, 24);
  t.type_line(top_command(svc.pid()));
  std::string s = t.wait_for("wait_forever(int)", "tick_loop(int)");
  std::string wait = line_with(s, "wait_forever(int)");
  EXPECT_NE(wait.find(where("top_wait_forever_park")), std::string::npos) << s;
  EXPECT_EQ(wait.substr(0, 8), "     30 ") << s;
  std::string serve = line_with(s, "serve_idle(int)");
  EXPECT_NE(serve.find(where("top_serve_calls_wait")), std::string::npos) << s;
  EXPECT_EQ(serve.substr(0, 8), "     30 ") << s;
  std::string tick = line_with(s, "tick_loop(int)");
  EXPECT_NE(tick.find(where("top_tick_yield")), std::string::npos) << s;
  EXPECT_EQ(tick.substr(0, 8), "      5 ") << s;
  EXPECT_NE(line_with(s, "coroutines 65: 65 suspended").size(), 0u) << s;
  EXPECT_NE(s.find("pid " + std::to_string(svc.pid())), std::string::npos) << s;
  for (const auto& l : lines_of(s)) EXPECT_LE(l.size(), 80u) << l;
  t.keys({"q"});
  EXPECT_EQ(wait_exit(t, &s), 0) << s;
  EXPECT_NE(s.find("asyncprobe top: quit"), std::string::npos) << s;
}

// The idle coroutines are never resumed: once a probe window covered a whole interval they are
// stuck (known). The tick loops are resumed every 2 ms: never stuck, and the probe's count of
// their resumes shows (5 loops x ~500/s). A 1 s interval: a loaded machine can starve the fixture
// for a few hundred ms, and then "not resumed during the window" would be true of the loop too.
TEST_F(TopTerminal, IdleCoroutinesBecomeStuckAndTheBusyLoopNever) {
  FixtureProcess svc({fixture_path("gcc12-O0", "top_service"), "--idle", "30", "--busy", "5"});
  Tmux t(80, 24);
  t.type_line(top_command(svc.pid(), "1s"));
  std::string s = t.wait_for("refresh #4", "", std::chrono::seconds(30));
  std::string wait = line_with(s, "wait_forever(int)");
  EXPECT_EQ(stuck_cell(wait), 30) << s;
  EXPECT_EQ(stuck_cell(line_with(s, "serve_idle(int)")), 30) << s;
  std::string tick = line_with(s, "tick_loop(int)");
  EXPECT_EQ(stuck_cell(tick), 0) << s;
  EXPECT_NE(tick.find("/s"), std::string::npos) << "resumes per second counted\n" << s;
  EXPECT_NE(line_with(s, "stuck 60").size(), 0u) << s;
  // Stuck first: the two stuck points lead the table (rows start on the sixth line).
  std::vector<std::string> lines = lines_of(s);
  ASSERT_GT(lines.size(), 7u);
  EXPECT_EQ(lines[5].find("tick_loop"), std::string::npos) << s;
  EXPECT_EQ(lines[6].find("tick_loop"), std::string::npos) << s;
  EXPECT_NE(lines[7].find("tick_loop"), std::string::npos) << s;
  EXPECT_NE(line_with(s, "diagnoses: orphaned 0, await cycles 0, thread deadlocks 0").size(), 0u)
      << s;
  t.keys({"q"});
  EXPECT_EQ(wait_exit(t, &s), 0) << s;
}

// Without a probe nothing is known: nothing is called stuck.
TEST_F(TopTerminal, WithoutAProbeNothingIsCalledStuck) {
  FixtureProcess svc({fixture_path("gcc12-O0", "top_service"), "--idle", "30", "--busy", "5"});
  Tmux t(80, 24);
  t.type_line(top_command(svc.pid(), "200ms", " --no-probe"));
  std::string s = t.wait_for("refresh #6");
  EXPECT_EQ(stuck_cell(line_with(s, "wait_forever(int)")), 0) << s;
  EXPECT_EQ(stuck_cell(line_with(s, "serve_idle(int)")), 0) << s;
  EXPECT_NE(line_with(s, "stuck 0   unchanged").size(), 0u) << s;
  t.keys({"q"});
  EXPECT_EQ(wait_exit(t, &s), 0) << s;
}

TEST_F(TopTerminal, EnterOpensTheAsyncStacksOfThePointAndEscReturns) {
  FixtureProcess svc({fixture_path("gcc12-O0", "top_service"), "--idle", "30", "--busy", "5"});
  Tmux t(80, 24);
  t.type_line(top_command(svc.pid()));
  t.wait_for("wait_forever(int)");
  // Filter down to the leaf point so that the selection is known, then open it.
  t.keys({"/"});
  t.keys({"-l", "wait_forever"});
  t.keys({"Enter"});
  std::string s = t.wait_for("filter: wait_forever");
  EXPECT_EQ(line_with(s, "serve_idle(int)"), "") << s;
  EXPECT_NE(line_with(s, "1 point").size(), 0u) << s;
  t.keys({"Enter"});
  s = t.wait_for("async stacks through 30 x wait_forever(int)");
  // The coalesced tree, as the snapshot prints it: 30 serve_idle roots each awaiting one
  // wait_forever, at the marked lines.
  std::string root = line_with(s, "30x serve_idle(int)");
  EXPECT_NE(root.find(where("top_serve_calls_wait")), std::string::npos) << s;
  std::string leaf = line_with(s, "30x wait_forever(int)");
  EXPECT_NE(leaf.find(where("top_wait_forever_park")), std::string::npos) << s;
  EXPECT_EQ(line_with(s, "tick_loop"), "") << s;
  t.keys({"Escape"});
  s = t.wait_for("COUNT");
  EXPECT_NE(line_with(s, "wait_forever(int)").size(), 0u) << s;
  t.keys({"q"});
  EXPECT_EQ(wait_exit(t, &s), 0) << s;
}

TEST_F(TopTerminal, AUtf8LocaleDrawsUnicodeTrees) {
  FixtureProcess svc({fixture_path("gcc12-O0", "top_service"), "--idle", "30", "--busy", "5"});
  Tmux t(80, 24, "C.UTF-8");
  t.type_line(top_command(svc.pid()));
  t.wait_for("wait_forever(int)");
  t.keys({"/"});
  t.keys({"-l", "wait_forever"});
  t.keys({"Enter"});
  t.wait_for("filter: wait_forever");
  t.keys({"Enter"});
  std::string s = t.wait_for("async stacks through 30 x wait_forever(int)");
  EXPECT_NE(line_with(s, "30× serve_idle(int)").size(), 0u) << s;
  EXPECT_NE(line_with(s, "└── 30× wait_forever(int)").size(), 0u) << s;
  t.keys({"q"});
  EXPECT_EQ(wait_exit(t, &s), 0) << s;
}

// An SGR sequence that sets a foreground colour (30-37), alone or among other attributes.
bool has_colour(const std::string& screen) {
  static const std::regex colour("\x1b\\[([0-9]+;)*3[0-7](;[0-9]+)*m");
  return std::regex_search(screen, colour);
}

// https://no-color.org: NO_COLOR set (to anything non-empty) means no colour; bold and reverse
// video stay, since they carry the selection and the alarm.
TEST_F(TopTerminal, NoColorDrawsWithoutColourButKeepsAttributes) {
  FixtureProcess svc({fixture_path("gcc12-O0", "top_service"), "--idle", "3", "--busy", "1"});
  Tmux t(80, 24);
  t.type_line(top_command(svc.pid()));
  t.wait_for("wait_forever(int)");
  std::string coloured = t.screen_with_attributes();
  EXPECT_TRUE(has_colour(coloured)) << "the title is drawn in cyan\n" << coloured;
  t.keys({"q"});
  std::string s;
  EXPECT_EQ(wait_exit(t, &s), 0) << s;
  t.type_line("clear");
  t.type_line("NO_COLOR= " + top_command(svc.pid()));
  t.wait_for("wait_forever(int)");
  EXPECT_TRUE(has_colour(t.screen_with_attributes())) << "an empty NO_COLOR is not set";
  t.keys({"q"});
  EXPECT_EQ(wait_exit(t, &s), 0) << s;
  t.type_line("clear");
  t.type_line("NO_COLOR=1 " + top_command(svc.pid()));
  t.wait_for("wait_forever(int)");
  std::string plain = t.screen_with_attributes();
  EXPECT_FALSE(has_colour(plain)) << plain;
  EXPECT_NE(plain.find("\x1b[7m"), std::string::npos) << "selection in reverse video\n" << plain;
  t.keys({"q"});
  EXPECT_EQ(wait_exit(t, &s), 0) << s;
}

TEST_F(TopTerminal, SortKeyCyclesAndQuitRestoresTheTerminal) {
  FixtureProcess svc({fixture_path("gcc12-O0", "top_service"), "--idle", "30", "--busy", "5"});
  Tmux t(80, 24);
  t.type_line("echo BEFORE-TOP");
  t.type_line(top_command(svc.pid()));
  std::string s = t.wait_for("sort: stuck first");
  EXPECT_EQ(s.find("BEFORE-TOP"), std::string::npos) << "top draws on the alternate screen\n" << s;
  t.keys({"s"});
  s = t.wait_for("sort: count");
  t.keys({"s"});
  s = t.wait_for("sort: oldest");
  t.keys({"?"});
  s = t.wait_for("asyncprobe top: help");
  EXPECT_NE(s.find("Enter"), std::string::npos) << s;
  t.keys({"x"});
  t.wait_for("COUNT");
  t.keys({"q"});
  EXPECT_EQ(wait_exit(t, &s), 0) << s;
  // Back on the shell's screen, with what was there before.
  EXPECT_NE(s.find("BEFORE-TOP"), std::string::npos) << s;
  EXPECT_NE(s.find("asyncprobe top: quit"), std::string::npos) << s;
}

TEST_F(TopTerminal, TargetExitEndsTheViewWithAReason) {
  FixtureProcess svc({fixture_path("gcc12-O0", "top_service")});
  Tmux t(80, 24);
  t.type_line(top_command(svc.pid()));
  t.wait_for("wait_forever(int)");
  svc.kill();
  std::string s;
  EXPECT_EQ(wait_exit(t, &s), 0) << s;
  EXPECT_NE(s.find("asyncprobe top: "), std::string::npos) << s;
  EXPECT_NE(s.find(std::to_string(svc.pid())), std::string::npos) << s;
}

TEST_F(TopTerminal, SigtermAndCtrlCEndItCleanly) {
  FixtureProcess svc({fixture_path("gcc12-O0", "top_service")});
  Tmux t(80, 24);
  t.type_line(top_command(svc.pid()));
  t.wait_for("wait_forever(int)");
  t.keys({"C-c"});
  std::string s;
  EXPECT_EQ(wait_exit(t, &s), 0) << s;
  EXPECT_NE(s.find("asyncprobe top: interrupted"), std::string::npos) << s;
  t.type_line("clear");
  t.type_line(top_command(svc.pid()));
  t.wait_for("wait_forever(int)");
  run_command({"pkill", "-TERM", "-f", "asyncprobe top -p " + std::to_string(svc.pid())});
  EXPECT_EQ(wait_exit(t, &s), 0) << s;
  EXPECT_NE(s.find("asyncprobe top: terminated by SIGTERM"), std::string::npos) << s;
}

TEST_F(TopTerminal, UsesAWiderTerminalAndStillFitsEightyByTwentyFour) {
  FixtureProcess svc({fixture_path("gcc12-O0", "top_service")});
  Tmux t(80, 24);
  t.type_line(top_command(svc.pid()));
  std::string s = t.wait_for("wait_forever(int)");
  EXPECT_EQ(lines_of(s).size(), 24u) << s;
  t.resize(200, 60);
  std::vector<std::string> lines;
  for (int tries = 0; tries < 100; ++tries) {
    s = t.screen();
    lines = lines_of(s);
    if (lines.size() >= 60 && lines[59].find("Enter: stacks") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_GE(lines.size(), 60u) << s;
  // The status line is drawn across the whole width, and the location column moved right.
  size_t status = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].find("Enter: stacks") != std::string::npos) status = i;
  }
  EXPECT_EQ(status, 59u) << s;
  EXPECT_GT(line_with(s, "wait_forever(int)").find("top_service.cpp"), 80u) << s;
  t.resize(80, 24);
  s = t.wait_for("wait_forever(int)");
  for (const auto& l : lines_of(s)) EXPECT_LE(l.size(), 80u) << l;
  t.keys({"q"});
  EXPECT_EQ(wait_exit(t, &s), 0) << s;
}

TEST_F(TopTerminal, FiveThousandPointsScrollAndRefreshWithinTheInterval) {
  FixtureProcess svc({fixture_path("gcc12-O0", "top_points")});
  Tmux t(100, 30);
  t.type_line(top_command(svc.pid(), "1s"));
  std::string s = t.wait_for("5000 points");
  EXPECT_NE(line_with(s, "coroutines 5000: 5000 suspended").size(), 0u) << s;
  // Sorted by count then name: every row has one coroutine; End goes to the last row.
  t.keys({"s"});
  t.wait_for("sort: count");
  t.keys({"End"});
  s = t.wait_for("point<");
  t.keys({"Home"});
  s = t.wait_for("point<");
  // Each refresh (the look at 5,000 coroutines) must stay well inside the 1 s interval.
  t.wait_for("refresh #3");
  s = t.screen();
  std::string header = line_with(s, "refresh #");
  size_t took = header.find("took ");
  ASSERT_NE(took, std::string::npos) << s;
  std::string cost = header.substr(took + 5);
  EXPECT_TRUE(cost.find(" ms") != std::string::npos || cost.find(" us") != std::string::npos)
      << "a refresh took a second or more: " << header;
  t.keys({"q"});
  EXPECT_EQ(wait_exit(t, &s), 0) << s;
}

// Two threads deadlocked on two std::mutex (lock_waits mutex2, read from its source): the header
// counts one thread deadlock, and `d` shows it with both threads.
TEST_F(TopTerminal, ADeadlockShowsInTheHeaderAndOnTheDiagnosesPage) {
  FixtureProcess p({fixture_path("gcc12-O0", "lock_waits"), "mutex2"});
  Tmux t(100, 30);
  t.type_line(top_command(p.pid()));
  std::string s = t.wait_for("thread deadlocks 1");
  EXPECT_NE(line_with(s, "diagnoses: orphaned 0, await cycles 0, thread deadlocks 1").size(), 0u)
      << s;
  t.keys({"d"});
  s = t.wait_for("diagnoses of the last look");
  EXPECT_NE(s.find(p.token("a")), std::string::npos) << s;
  EXPECT_NE(s.find(p.token("b")), std::string::npos) << s;
  EXPECT_NE(s.find(p.token("m1")), std::string::npos) << s;
  t.keys({"Escape"});
  t.wait_for("COUNT");
  t.keys({"q"});
  EXPECT_EQ(wait_exit(t, &s), 0) << s;
}

// A coroutine blocking its loop thread (tests/fixtures/blocking_loops.cpp: nap() sleeps in its
// body on the sleep-loop thread) is a running row at the sleep's line; Enter shows its async
// stack ending where it runs, then its thread's native stack down to its resume function.
TEST_F(TopTerminal, ARunningCoroutineOpensOnItsThreadsNativeStack) {
  FixtureProcess p({fixture_path("gcc12-O0", "blocking_loops")});
  const std::string src = "tests/fixtures/blocking_loops.cpp";
  const std::string tid = p.token("sleep_tid");
  const std::string sleep_at =
      "blocking_loops.cpp:" + std::to_string(marker_line(src, "nap_sleep"));
  Tmux t(120, 40);
  t.type_line(top_command(p.pid()));
  std::string s = t.wait_for("3 running");
  EXPECT_NE(line_with(s, "3 running").size(), 0u) << s;
  t.keys({"/"});
  t.keys({"-l", "nap"});
  t.keys({"Enter"});
  s = t.wait_for("filter: nap");
  const std::string row = line_with(s, "nap()");
  EXPECT_NE(row.find(sleep_at + " running on " + tid), std::string::npos) << s;
  EXPECT_EQ(stuck_cell(row), 0) << s;
  t.keys({"Enter"});
  s = t.wait_for("async stacks through 1 x nap()", "(coroutine resume function)");
  EXPECT_NE(line_with(s, "1x serve_sleep()").size(), 0u) << s;
  const std::string leaf = line_with(s, "1x nap()");
  EXPECT_NE(leaf.find("running on thread " + tid + ", blocked in "), std::string::npos) << s;
  EXPECT_NE(leaf.find("() at " + sleep_at), std::string::npos) << s;
  EXPECT_NE(line_with(s, "thread " + tid + " (sleep-loop)").size(), 0u) << s;
  EXPECT_NE(line_with(s, "runs coroutine #").size(), 0u) << s;
  const std::string resume = line_with(s, "(coroutine resume function)");
  EXPECT_NE(resume.find("nap"), std::string::npos) << s;
  EXPECT_NE(resume.find(sleep_at), std::string::npos) << s;
  t.keys({"Escape"});
  t.wait_for("COUNT");
  t.keys({"q"});
  EXPECT_EQ(wait_exit(t, &s), 0) << s;
}

TEST(TopCommand, RefusesWithoutATerminalAndPointsToWatch) {
  FixtureProcess svc({fixture_path("gcc12-O0", "top_service")});
  RunResult r = run_command({asyncprobe_binary(), "top", "-p", std::to_string(svc.pid())});
  EXPECT_EQ(r.exit.exit_code, 2);
  EXPECT_NE(r.err.find("asyncprobe: top draws on a terminal"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(see asyncprobe top --help)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("asyncprobe watch"), std::string::npos) << r.err;
}

TEST(TopCommand, BadIntervalAndMissingPidAreUsageErrors) {
  RunResult r = run_command({asyncprobe_binary(), "top", "-p", "1", "--interval", "0"});
  EXPECT_EQ(r.exit.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--interval"), std::string::npos) << r.err;
  r = run_command({asyncprobe_binary(), "top"});
  EXPECT_EQ(r.exit.exit_code, 2) << r.err;
  r = run_command({asyncprobe_binary(), "top", "--help"});
  EXPECT_EQ(r.exit.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("--interval"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace asyncprobe::testing
