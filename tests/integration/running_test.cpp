// Coroutines running on a blocked thread (issue 11, item 2): tests/fixtures/blocking_loops.cpp
// blocks three event-loop threads from inside coroutine bodies (read() on a pipe, sleep(), a
// std::mutex another thread holds). asyncprobe must call each of those coroutines running on its
// thread (the TIDs the fixture prints), at the blocking call's line (from the source markers), in
// the syscall the thread is in, with the thread's native stack reaching the coroutine's resume
// function; the other frame of the same coroutine function stays suspended where it parked, and
// nothing running is called stuck. With --deadlock, the thread-deadlock diagnosis shows the
// async stack of the coroutine running on the deadlocked loop thread.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/integration/fixture_process.h"
#include "tests/integration/source_markers.h"

namespace asyncprobe::testing {
namespace {

using nlohmann::json;

const char kSource[] = "tests/fixtures/blocking_loops.cpp";

RunResult run_asyncprobe(pid_t pid, const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {asyncprobe_binary(), "-p", std::to_string(pid), "--window",
                                   "0.3"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  RunResult r = run_command(argv, std::chrono::seconds(120));
  EXPECT_EQ(r.exit.exit_code, 0) << r.err;
  return r;
}

json snapshot_json(pid_t pid) { return json::parse(run_asyncprobe(pid, {"--json"}).out); }

std::vector<json> coroutines_of(const json& doc, const std::string& function) {
  std::vector<json> out;
  for (const json& c : doc["coroutines"]) {
    if (c["function"] == function) out.push_back(c);
  }
  return out;
}

const json* thread_of(const json& doc, long tid) {
  for (const json& t : doc["threads"]) {
    if (t["tid"].get<long>() == tid) return &t;
  }
  return nullptr;
}

// The syscall names asyncprobe gives the numbers a sleep may block in (x86-64).
std::string sleep_syscall(long nr) { return nr == 35 ? "nanosleep" : "clock_nanosleep"; }

struct Blocked {
  std::string function;  // the running coroutine
  std::string tid_token;
  std::string site;     // @site of the blocking call
  std::string syscall;  // as asyncprobe names it
  std::string native;   // a word of a native frame between the syscall and the coroutine
  std::string parent;   // the coroutine awaiting it
  std::string parent_marker;
};

std::vector<Blocked> blocked_cases(const FixtureProcess& p) {
  return {
      {"read_request(int, bool)", "read_tid", "read_request_read", "read", "read",
       "serve_read(int)", "serve_read_calls"},
      {"nap()", "sleep_tid", "nap_sleep", sleep_syscall(p.token_int("sleep_nr")), "sleep",
       "serve_sleep()", "serve_sleep_calls"},
      {"take_lock()", "lock_tid", "take_lock_lock", "futex", "mutex_lock", "serve_lock()",
       "serve_lock_calls"},
  };
}

// The resume function of `function` in a native stack: named by its DWARF subprogram (Clang:
// the coroutine's own name, GCC: its bare name) or by a symbol ("<name>(...) [clone .actor]").
bool is_resume_of(const json& frame, const std::string& function) {
  if (!frame["function"].is_string()) return false;
  const std::string f = frame["function"];
  const std::string name = function.substr(0, function.find('('));
  return f == name || f.rfind(name + "(", 0) == 0 || f.rfind(name + " ", 0) == 0;
}

// Where the running frame cannot be told: g++ -O2's read_request actor keeps its frame in rbx
// across `call read@plt` (objdump of the fixture), glibc's read() saves no rbx, and a blocked
// thread's registers are not readable without a stop. The scan holds two frames of
// read_request, so both are candidates and neither is called running.
bool frame_address_lost(const std::string& variant, const Blocked& b) {
  return variant == "gcc12-O2" && b.function == "read_request(int, bool)";
}

void expect_uncertain(const json& doc, const FixtureProcess& p, const Blocked& b) {
  SCOPED_TRACE(b.function + " (uncertain)");
  const long tid = p.token_int(b.tid_token);
  const std::vector<json> frames = coroutines_of(doc, b.function);
  ASSERT_EQ(frames.size(), 2u);
  for (const json& c : frames) {
    EXPECT_EQ(c["state"], "suspended");
    EXPECT_TRUE(c["thread"].is_null());
    ASSERT_TRUE(c["running"].is_object()) << c.dump(1);
    EXPECT_EQ(c["running"]["uncertain"], true);
    EXPECT_EQ(c["running"]["thread"], tid);
    EXPECT_EQ(c["running"]["line"], marker_line(source_file(kSource), b.site));
    EXPECT_EQ(c["stuck"], false);
  }
  const json* t = thread_of(doc, tid);
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE((*t)["running_coroutine"].is_null());
  EXPECT_EQ((*t)["running_function"], b.function);
  EXPECT_EQ((*t)["running_candidates"].size(), 2u);
}

void expect_running(const json& doc, const FixtureProcess& p, const Blocked& b) {
  SCOPED_TRACE(b.function);
  const long tid = p.token_int(b.tid_token);
  const std::string src = source_file(kSource);
  std::vector<json> running;
  for (const json& c : coroutines_of(doc, b.function)) {
    if (c["state"] == "running") running.push_back(c);
  }
  ASSERT_EQ(running.size(), 1u) << json(coroutines_of(doc, b.function)).dump(1);
  const json& c = running[0];
  EXPECT_EQ(c["thread"], tid);
  EXPECT_EQ(c["running"]["thread"], tid);
  EXPECT_EQ(c["running"]["file"], src);
  EXPECT_EQ(c["running"]["line"], marker_line(src, b.site));
  EXPECT_EQ(c["running"]["syscall"], b.syscall);
  EXPECT_EQ(c["running"]["uncertain"], false);
  EXPECT_EQ(c["stuck"], false);
  EXPECT_EQ(c["unchanged"], false);
  EXPECT_EQ(c["stuck_evidence"], "running");
  ASSERT_TRUE(c["awaiter_id"].is_number());
  const json& parent = doc["coroutines"][c["awaiter_id"].get<size_t>()];
  EXPECT_EQ(parent["function"], b.parent);
  EXPECT_EQ(parent["state"], "suspended");
  EXPECT_EQ(parent["suspend"]["line"], marker_line(src, b.parent_marker));

  const json* t = thread_of(doc, tid);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ((*t)["syscall"], b.syscall);
  EXPECT_EQ((*t)["running_coroutine"], c["id"]);
  EXPECT_EQ((*t)["running_function"], b.function);
  ASSERT_TRUE((*t)["resume_native_frame"].is_number()) << t->dump(1);
  const size_t k = (*t)["resume_native_frame"].get<size_t>();
  const json& stack = (*t)["native_stack"];
  ASSERT_LT(k, stack.size());
  EXPECT_TRUE(is_resume_of(stack[k], b.function)) << stack.dump(1);
  EXPECT_EQ(stack[k]["line"], marker_line(src, b.site));
  bool native = false;
  for (size_t i = 0; i < k; ++i) {
    native |= stack[i]["function"].is_string() &&
              stack[i]["function"].get<std::string>().find(b.native) != std::string::npos;
  }
  EXPECT_TRUE(native) << "no frame naming '" << b.native
                      << "' under the coroutine: " << stack.dump(1);
}

class BlockingLoops : public ::testing::TestWithParam<std::string> {
 protected:
  std::string exe() const { return fixture_path(GetParam(), "blocking_loops"); }
};

TEST_P(BlockingLoops, EachBlockingCoroutineRunsOnItsThreadAtTheBlockingCall) {
  FixtureProcess p({exe()});
  const json doc = snapshot_json(p.pid());
  int running = 0;
  for (const Blocked& b : blocked_cases(p)) {
    if (frame_address_lost(GetParam(), b)) {
      expect_uncertain(doc, p, b);
    } else {
      expect_running(doc, p, b);
      ++running;
    }
  }
  EXPECT_EQ(doc["summary"]["running"], running);
  // Stuck (not resumed in the window, the probe runs here as root): the three serve_* parents
  // awaiting running children, idle_reader and its parked read_request; with the uncertain join
  // the parked read_request may be the running one, so it is not called stuck.
  EXPECT_EQ(doc["summary"]["stuck"], running == 3 ? 5 : 4);
  // No lock cycle and no dead owner: main holds `held` and waits for nothing.
  EXPECT_EQ(doc["diagnoses"], json::array()) << doc["diagnoses"].dump(1);
}

TEST_P(BlockingLoops, TheOtherFrameOfTheSameCoroutineStaysSuspendedWhereItParked) {
  FixtureProcess p({exe()});
  const json doc = snapshot_json(p.pid());
  const std::vector<json> frames = coroutines_of(doc, "read_request(int, bool)");
  ASSERT_EQ(frames.size(), 2u) << json(frames).dump(1);
  if (frame_address_lost(GetParam(), blocked_cases(p)[0])) GTEST_SKIP() << "see expect_uncertain";
  const std::string src = source_file(kSource);
  size_t parked = 0;
  for (const json& c : frames) {
    if (c["state"] != "suspended") continue;
    ++parked;
    EXPECT_EQ(c["suspend"]["line"], marker_line(src, "read_request_park"));
    EXPECT_TRUE(c["running"].is_null());
    EXPECT_TRUE(c["thread"].is_null());
    const json& parent = doc["coroutines"][c["awaiter_id"].get<size_t>()];
    EXPECT_EQ(parent["function"], "idle_reader(int)");
  }
  EXPECT_EQ(parked, 1u);
}

TEST_P(BlockingLoops, TextStackEndsRunningOnTheThreadBlockedInTheCall) {
  FixtureProcess p({exe()});
  const std::string text = run_asyncprobe(p.pid(), {}).out;
  const std::string src = source_file(kSource);
  for (const Blocked& b : blocked_cases(p)) {
    if (frame_address_lost(GetParam(), b)) {
      const std::string note = "  (thread " + p.token(b.tid_token) +
                               " runs a frame of this function, this one or another: which is "
                               "unknown)";
      EXPECT_NE(text.find(note), std::string::npos) << text;
      continue;
    }
    const std::string want = "1x " + b.function + "  running on thread " + p.token(b.tid_token) +
                             ", blocked in " + b.syscall + "() at " + src + ":" +
                             std::to_string(marker_line(src, b.site));
    const size_t at = text.find(want);
    ASSERT_NE(at, std::string::npos) << want << "\n" << text;
    // Nothing follows on that line: a running coroutine is neither stuck nor unchanged.
    EXPECT_EQ(text[at + want.size()], '\n') << text;
    // In THREADS, under the thread's row: the coroutine, then its native stack down to it.
    const std::string row = "    runs coroutine #";
    EXPECT_NE(text.find(row), std::string::npos) << text;
  }
  EXPECT_NE(text.find("(coroutine resume function)"), std::string::npos) << text;
}

TEST_P(BlockingLoops, ADeadlockedLoopThreadShowsTheAsyncStackRunningOnIt) {
  FixtureProcess p({exe(), "--deadlock"});
  const long loop = p.token_int("dl_loop_tid"), plain = p.token_int("dl_thread_tid");
  const json doc = snapshot_json(p.pid());
  ASSERT_EQ(doc["diagnoses"].size(), 1u) << doc["diagnoses"].dump(1);
  EXPECT_EQ(doc["diagnoses"][0]["kind"], "thread_deadlock");
  EXPECT_EQ(doc["diagnoses"][0]["threads"], json({std::min(loop, plain), std::max(loop, plain)}));
  const json* t = thread_of(doc, loop);
  ASSERT_NE(t, nullptr);
  ASSERT_TRUE((*t)["running_coroutine"].is_number());
  EXPECT_EQ(doc["coroutines"][(*t)["running_coroutine"].get<size_t>()]["function"], "lock_both()");

  const std::string text = run_asyncprobe(p.pid(), {}).out;
  const std::string src = source_file(kSource);
  const size_t diag = text.find("thread_deadlock: ");
  const size_t stacks = text.find("ASYNC STACKS");
  ASSERT_NE(diag, std::string::npos) << text;
  const std::string section = text.substr(diag, stacks - diag);
  const std::string head = "    thread " + std::to_string(loop) + " (dl-loop) waits for";
  const size_t at = section.find(head);
  ASSERT_NE(at, std::string::npos) << section;
  const std::string after = section.substr(at);
  const size_t root = after.find("      coroutine running on it (async stack, root first):\n");
  const size_t parent = after.find("serve_deadlock()  " + src + ":" +
                                   std::to_string(marker_line(src, "serve_deadlock_calls")));
  const size_t leaf = after.find("lock_both()  running on thread " + std::to_string(loop) +
                                 ", blocked in futex() at " + src + ":" +
                                 std::to_string(marker_line(src, "lock_both_second")));
  ASSERT_NE(root, std::string::npos) << section;
  ASSERT_NE(parent, std::string::npos) << section;
  ASSERT_NE(leaf, std::string::npos) << section;
  EXPECT_LT(root, parent);
  EXPECT_LT(parent, leaf);
  // The plain thread runs no coroutine: no async stack under it.
  const size_t other = section.find("    thread " + std::to_string(plain) + " (dl-thread)");
  ASSERT_NE(other, std::string::npos) << section;
  const size_t next = section.find("\n    thread ", other + 1);
  const std::string plain_part =
      section.substr(other, next == std::string::npos ? std::string::npos : next - other);
  EXPECT_EQ(plain_part.find("coroutine running on it"), std::string::npos) << section;
}

INSTANTIATE_TEST_SUITE_P(Variants, BlockingLoops,
                         ::testing::ValuesIn(fixture_variants_with("blocking_loops")),
                         VariantTestName());
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(BlockingLoops);

}  // namespace
}  // namespace asyncprobe::testing
