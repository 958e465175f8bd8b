#include "userspace/output/report_text.h"
#include "tests/unit/model_builders.h"

#include <gtest/gtest.h>

#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace asyncprobe {
namespace {

model::CoroFrame make_frame(uint64_t address, const std::string& function, const std::string& file,
                            int line, uint64_t awaiter = 0, int64_t index = 4) {
  return testing::suspended_frame(address, function, file, line, awaiter, index,
                                  "/usr/bin/demo_server");
}

model::ThreadInfo make_thread(int tid, const std::string& name, char state,
                              const std::string& sys) {
  model::ThreadInfo t;
  t.tid = tid;
  t.name = name;
  t.state = state;
  t.syscall = sys;
  return t;
}

// The brief's example: 1000 identical 3-level request chains, stuck at their leaf, and one idle
// root; two threads (listed out of order to show they are sorted).
model::Snapshot demo_server() {
  model::Snapshot s;
  s.pid = 4242;
  s.command = "demo_server";
  s.executable = "/usr/bin/demo_server";
  s.stuck_probe.ran = true;  // [stuck] marks come from a resume probe
  s.stuck_probe.functions = 1;
  for (uint64_t i = 0; i < 1000; ++i) {
    const uint64_t b = 0x7f0000100000 + i * 0x1000;
    s.frames.push_back(make_frame(b, "handle_connection(tcp::socket)", "server.cpp", 40, 0, 6));
    s.frames.push_back(make_frame(b + 0x100, "read_request(tcp::socket&)", "server.cpp", 22, b));
    model::CoroFrame leaf =
        make_frame(b + 0x200, "read_line(tcp::socket&, std::string&)", "io.cpp", 10, b + 0x100);
    leaf.stuck = true;
    leaf.stuck_for_s = 1.0;
    s.frames.push_back(leaf);
  }
  s.frames.push_back(make_frame(0x7f0000000100, "idle_loop()", "main.cpp", 80, 0, 2));
  s.threads.push_back(make_thread(4243, "worker-1", 'S', "futex"));
  s.threads.push_back(make_thread(4242, "demo_server", 'S', "epoll_wait"));
  s.bytes_scanned = 12897484;
  s.scan_seconds = 0.0041;
  s.window_seconds = 1.0;
  return s;
}

std::string render(const model::Snapshot& s, const output::TextReportOptions& opts = {}) {
  std::ostringstream out;
  output::write_text_report(out, s, opts);
  return out.str();
}

std::string render(const model::Snapshot& s, const snapshot::AsyncStackOptions& aopts,
                   const output::TextReportOptions& opts = {}) {
  std::ostringstream out;
  output::write_text_report(out, s, snapshot::build_async_forest(s, aopts),
                            snapshot::group_stuck(s), opts);
  return out.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

using testing::random_snapshot;

TEST(ReportText, ThousandChainsAndIdleRoot) {
  const std::string expected =
      "asyncprobe: pid 4242 (demo_server): 3001 coroutines in 1001 async stacks (2 distinct), "
      "2 threads; scanned 12.3 MiB in 4.10 ms\n"
      "\n"
      "ASYNC STACKS (root first, each stack ends where it waits)\n"
      "1000x handle_connection(tcp::socket)  server.cpp:40\n"
      "`-- 1000x read_request(tcp::socket&)  server.cpp:22\n"
      "    `-- 1000x read_line(tcp::socket&, std::string&)  io.cpp:10  suspended  "
      "[stuck >=1.0s]\n"
      "\n"
      "1x idle_loop()  main.cpp:80  suspended\n"
      "\n"
      "STUCK (not resumed during the 1.0s window, resume probe on 1 function; where the stuck "
      "stacks wait)\n"
      "1000x read_line(tcp::socket&, std::string&)  io.cpp:10  stuck >=1.0s\n"
      "    1000 from read_request(tcp::socket&)  server.cpp:22\n"
      "\n"
      "THREADS\n"
      "TID      STATE SYSCALL          NAME\n"
      "4242     S     epoll_wait       demo_server\n"
      "4243     S     futex            worker-1\n";
  EXPECT_EQ(render(demo_server()), expected);
}

TEST(ReportText, UnicodeGlyphs) {
  output::TextReportOptions opts;
  opts.unicode = true;
  const std::vector<std::string> lines = lines_of(render(demo_server(), opts));
  ASSERT_GE(lines.size(), 6u);
  EXPECT_EQ(lines[3], "1000\u00d7 handle_connection(tcp::socket)  server.cpp:40");
  EXPECT_EQ(lines[4], "\u2514\u2500\u2500 1000\u00d7 read_request(tcp::socket&)  server.cpp:22");
  EXPECT_EQ(lines[5],
            "    \u2514\u2500\u2500 1000\u00d7 read_line(tcp::socket&, std::string&)  io.cpp:10  "
            "suspended  [stuck \u22651.0s]");
}

TEST(ReportText, KindsStatesUnknownLinesAndGenericLinks) {
  model::Snapshot s;
  s.pid = 7;
  s.command = "app";
  s.bytes_scanned = 512;
  s.scan_seconds = 0.00085;
  s.warnings.push_back("no debug info for /usr/lib/libx.so: install its debug file");
  s.frames.push_back(make_frame(0x1000, "main_task()", "app.cpp", 12));
  model::CoroFrame initial = make_frame(0x1100, "start_later()", "app.cpp", 30, 0x1000, 2);
  initial.suspend.kind = model::SuspendPoint::Kind::kInitial;
  model::CoroFrame done = make_frame(0x1200, "finished()", "", 0, 0x1000, 10);
  done.suspend.kind = model::SuspendPoint::Kind::kFinal;
  done.state = model::FrameState::kDone;
  done.resume_fn = 0;
  model::CoroFrame done_elided = done;
  done_elided.address = 0x1280;
  done_elided.function = "inlined()";
  done_elided.elided = true;
  model::CoroFrame mystery = make_frame(0x1300, "mystery()", "", 0, 0x1000, 99);
  mystery.suspend.kind = model::SuspendPoint::Kind::kUnknown;
  mystery.state = model::FrameState::kUnknown;
  mystery.awaiter_rule = coro::AwaiterRule::kMutualPointer;
  model::CoroFrame at_final = make_frame(0x1400, "closing()", "app.cpp", 0, 0x1000, 12);
  at_final.suspend.kind = model::SuspendPoint::Kind::kFinal;
  model::CoroFrame unnamed = make_frame(0x2000, "0x401000", "", 0, 0, -1);
  s.frames.insert(s.frames.end(), {initial, done, done_elided, mystery, at_final, unnamed});
  const std::string expected =
      "asyncprobe: pid 7 (app): 7 coroutines in 2 async stacks (2 distinct), 0 threads; "
      "scanned 512 B in 850 us\n"
      "warning: no debug info for /usr/lib/libx.so: install its debug file\n"
      "\n"
      "ASYNC STACKS (root first, each stack ends where it waits)\n"
      "1x 0x401000  (line unknown)  suspended\n"
      "\n"
      "1x main_task()  app.cpp:12\n"
      "|-- 1x closing()  (line unknown, suspend index 12)  final suspend  suspended\n"
      "|-- 1x finished()  (line unknown, suspend index 10)  done (final suspend, not destroyed)\n"
      "|-- 1x inlined()  (line unknown, suspend index 10)  done (final suspend, not destroyed)  "
      "(elided: may be destroyed with its caller)\n"
      "|-- 1x mystery()  (line unknown, suspend index 99)  unknown  (generic link)\n"
      "`-- 1x start_later()  app.cpp:30  initial suspend  suspended\n"
      "\n"
      "STUCK: window 0: stuck detection off\n"
      "\n"
      "THREADS: none read\n";
  EXPECT_EQ(render(s), expected);
}

TEST(ReportText, AnomaliesAreWarnedAndMarked) {
  model::Snapshot s;
  s.pid = 9;
  s.command = "torn";
  s.frames.push_back(make_frame(0x10, "ping", "demo.cpp", 1, 0x20));    // #0, cycle with #1
  s.frames.push_back(make_frame(0x20, "pong", "demo.cpp", 2, 0x10));    // #1
  s.frames.push_back(make_frame(0x30, "lost", "demo.cpp", 3, 0xdead));  // #2, dangling
  s.frames.push_back(make_frame(0x40, "dup", "demo.cpp", 4));           // #3
  s.frames.push_back(make_frame(0x40, "dup", "demo.cpp", 4));           // #4, same address
  s.frames.push_back(make_frame(0x100, "d0", "demo.cpp", 1));           // #5..#8, 4 deep
  s.frames.push_back(make_frame(0x110, "d1", "demo.cpp", 2, 0x100));
  s.frames.push_back(make_frame(0x120, "d2", "demo.cpp", 3, 0x110));
  s.frames.push_back(make_frame(0x130, "d3", "demo.cpp", 4, 0x120));
  s.window_seconds = 2.0;
  snapshot::AsyncStackOptions aopts;
  aopts.max_depth = 3;
  const std::string expected =
      "asyncprobe: pid 9 (torn): 9 coroutines in 5 async stacks (4 distinct), 0 threads; "
      "scanned 0 B in 0 ns\n"
      "warning: await cycle (torn or hostile data?): #0 ping awaits #1 pong awaits #0 ping; "
      "cut at #0, stack shown is uncertain\n"
      "warning: #2 lost: its awaiter 0xdead is not among the frames found; shown as an "
      "uncertain root\n"
      "warning: stack of #5 d0 is deeper than 3 frames: cut between #7 d2 and #8 d3 (depth 3), "
      "continued as a separate tree\n"
      "warning: address 0x40 found 2 times (torn read?): frames #3 #4; awaiter edges resolve "
      "to #3\n"
      "\n"
      "ASYNC STACKS (root first, each stack ends where it waits)\n"
      "2x dup  demo.cpp:4  suspended\n"
      "\n"
      "1x d0  demo.cpp:1\n"
      "`-- 1x d1  demo.cpp:2\n"
      "    `-- 1x d2  demo.cpp:3  suspended  (deeper frames cut: continued as a separate tree)\n"
      "\n"
      "1x lost  demo.cpp:3  suspended  (awaiter not among frames: uncertain root)\n"
      "\n"
      "1x ping  demo.cpp:1  (await cycle cut here: uncertain)\n"
      "`-- 1x pong  demo.cpp:2  suspended\n"
      "\n"
      "1x d3  demo.cpp:4  suspended  (continues a stack cut at depth 3)\n"
      "\n"
      "STUCK: none known (none seen not resumed during the 2.0s window; no resume probe)\n"
      "\n"
      "THREADS: none read\n";
  EXPECT_EQ(render(s, aopts), expected);
}

TEST(ReportText, AnomalyListsAreCapped) {
  model::Snapshot s;
  for (uint64_t i = 0; i < 15; ++i) {
    s.frames.push_back(make_frame(0x1000 + i * 0x10, "lost", "x.cpp", 1, 0xdead0000 + i));
  }
  output::TextReportOptions opts;
  opts.max_listed = 2;
  const std::vector<std::string> lines = lines_of(render(s, opts));
  ASSERT_GE(lines.size(), 4u);
  EXPECT_EQ(lines[1].rfind("warning: #0 lost", 0), 0u);
  EXPECT_EQ(lines[2].rfind("warning: #1 lost", 0), 0u);
  EXPECT_EQ(lines[3], "warning: ... and 13 more dangling awaiter edges");
  EXPECT_EQ(lines[6], "15x lost  x.cpp:1  suspended  (awaiter not among frames: uncertain root)");
}

TEST(ReportText, SiblingConnectorsAndPartialStuck) {
  model::Snapshot s;
  s.window_seconds = 1.5;
  s.stuck_probe.ran = true;
  s.stuck_probe.functions = 3;
  s.frames.push_back(make_frame(0x1000, "serve", "s.cpp", 5));
  for (uint64_t i = 0; i < 3; ++i) {
    const uint64_t mid = 0x2000 + i * 0x100;
    model::CoroFrame session = make_frame(mid, "session", "s.cpp", 9, 0x1000);
    session.stuck = i == 0;  // unchanged because its child is
    session.stuck_for_s = 1.5;
    s.frames.push_back(session);
    model::CoroFrame leaf = make_frame(mid + 0x10, "recv", "net.cpp", 3, mid);
    if (i < 2) {
      leaf.stuck = true;
      leaf.stuck_for_s = i == 0 ? 1.5 : 4.5;
    }
    s.frames.push_back(leaf);
  }
  s.frames.push_back(make_frame(0x3000, "tick", "t.cpp", 2, 0x1000));
  const std::vector<std::string> lines = lines_of(render(s));
  const std::vector<std::string> expected_tail = {
      "ASYNC STACKS (root first, each stack ends where it waits)",
      "1x serve  s.cpp:5",
      "|-- 3x session  s.cpp:9  [1 of 3 stuck >=1.5s]",
      "|   `-- 3x recv  net.cpp:3  suspended  [2 of 3 stuck >=1.5s]",
      "`-- 1x tick  t.cpp:2  suspended",
      "",
      "STUCK (not resumed during the 1.5s window, resume probe on 3 functions; where the stuck "
      "stacks wait)",
      "2x recv  net.cpp:3  stuck >=1.5s, longest >=4.5s",
      "    2 from session  s.cpp:9",
      "(+ 1 enclosing frame at 1 suspend point, each awaiting another coroutine, not resumed "
      "either: "
      "marked [stuck] in the trees)",
      "",
      "THREADS: none read",
  };
  ASSERT_EQ(lines.size(), 2 + expected_tail.size());
  for (size_t i = 0; i < expected_tail.size(); ++i) EXPECT_EQ(lines[2 + i], expected_tail[i]);
}

TEST(ReportText, StuckLeavesNameTheirCallers) {
  model::Snapshot s;
  s.window_seconds = 1.0;
  s.stuck_probe.ran = true;
  s.stuck_probe.functions = 3;
  auto add = [&](uint64_t addr, const std::string& fn, int line, uint64_t awaiter, bool stuck) {
    model::CoroFrame f = make_frame(addr, fn, "x.cpp", line, awaiter);
    f.stuck = stuck;
    f.stuck_for_s = stuck ? 1.0 : 0.0;
    s.frames.push_back(f);
  };
  for (uint64_t i = 0; i < 5; ++i) {
    const uint64_t caller = 0x1000 + i * 0x100;
    add(caller, i < 3 ? "acquire" : (i == 3 ? "fetch" : "poll"), 10 + static_cast<int>(i % 2), 0,
        false);
    add(caller + 0x10, "recv", 3, caller, true);
  }
  add(0x9000, "recv", 3, 0, true);  // a stuck root at the same point
  std::ostringstream out;
  output::write_text_report(out, s, snapshot::build_async_forest(s), snapshot::group_stuck(s),
                            output::TextReportOptions{});
  const std::string text = out.str();
  const std::string expected =
      "STUCK (not resumed during the 1.0s window, resume probe on 3 functions; where the stuck "
      "stacks wait)\n"
      "6x recv  x.cpp:3  stuck >=1.0s\n"
      "    2 from acquire  x.cpp:10\n"
      "    1 from acquire  x.cpp:11\n"
      "    1 from fetch  x.cpp:11\n"
      "    ... and 1 more caller\n"
      "    1 not awaited (stack roots)\n";
  EXPECT_NE(text.find(expected), std::string::npos) << text;
}

TEST(ReportText, ControlBytesFromTheTargetAreEscaped) {
  model::Snapshot s;
  s.command = "ev\x1b[2Jil";
  s.frames.push_back(make_frame(0x1000, "f\nake()\x7f", "a\rb.cpp", 3));
  s.frames[0].function += "\xc2\x9b";     // C1 CSI as UTF-8
  s.frames[0].function += "caf\xc3\xa9";  // ordinary UTF-8 passes through
  s.threads.push_back(make_thread(1, "t\x1b", 'S', "read"));
  const std::string text = render(s);
  EXPECT_EQ(text.find('\x1b'), std::string::npos);
  EXPECT_EQ(text.find('\r'), std::string::npos);
  EXPECT_EQ(text.find('\x7f'), std::string::npos);
  EXPECT_EQ(text.find("\xc2\x9b"), std::string::npos);
  EXPECT_NE(text.find("(ev\\x1b[2Jil)"), std::string::npos);
  EXPECT_NE(text.find("1x f\\x0aake()\\x7f\\xc2\\x9bcaf\xc3\xa9  a\\x0db.cpp:3  suspended\n"),
            std::string::npos);
  EXPECT_NE(text.find("t\\x1b\n"), std::string::npos);
}

TEST(ReportText, DeepStacksStopIndentingAtTheCap) {
  model::Snapshot s;
  for (uint64_t i = 0; i < 5000; ++i) {
    s.frames.push_back(make_frame(0x100000 + i * 0x40, "recurse(int)", "r.cpp", 12,
                                  i == 0 ? 0 : 0x100000 + (i - 1) * 0x40));
  }
  output::TextReportOptions opts;
  opts.max_indent_depth = 3;
  const std::vector<std::string> lines = lines_of(render(s, opts));
  size_t widest = 0;
  for (const std::string& l : lines) widest = std::max(widest, l.size());
  EXPECT_LE(widest, 200u);
  // Summary, warning, blank, header, 4096 + blank + 904 tree lines, then STUCK and THREADS.
  ASSERT_EQ(lines.size(), 4u + 4096u + 1u + 904u + 4u);
  EXPECT_EQ(lines[4], "1x recurse(int)  r.cpp:12");
  EXPECT_EQ(lines[7], "        `-- 1x recurse(int)  r.cpp:12");
  EXPECT_EQ(lines[8], "        `-- [depth 4] 1x recurse(int)  r.cpp:12");
  EXPECT_EQ(lines[4 + 4095],
            "        `-- [depth 4095] 1x recurse(int)  r.cpp:12  suspended  (deeper frames cut: "
            "continued as a separate tree)");
  EXPECT_EQ(lines[4 + 4097], "1x recurse(int)  r.cpp:12  (continues a stack cut at depth 4096)");
}

TEST(ReportText, EmptySnapshot) {
  model::Snapshot s;
  s.pid = 1;
  EXPECT_EQ(render(s),
            "asyncprobe: pid 1: 0 coroutines in 0 async stacks (0 distinct), 0 threads; "
            "scanned 0 B in 0 ns\n"
            "\n"
            "ASYNC STACKS: none found\n"
            "\n"
            "STUCK: window 0: stuck detection off\n"
            "\n"
            "THREADS: none read\n");
}

TEST(ReportText, RandomBrokenSnapshotsRender) {
  std::mt19937_64 rng(99);
  for (int round = 0; round < 300; ++round) {
    const model::Snapshot s = random_snapshot(rng);
    snapshot::AsyncStackOptions aopts;
    aopts.max_depth = 1 + rng() % 6;
    output::TextReportOptions opts;
    opts.unicode = rng() % 2;
    opts.max_indent_depth = rng() % 4;
    const std::string text = render(s, aopts, opts);
    EXPECT_EQ(text.rfind("asyncprobe: pid ", 0), 0u);
    EXPECT_EQ(text.find('\x1b'), std::string::npos);
    EXPECT_NE(text.find("\nTHREADS"), std::string::npos);
  }
}

TEST(TextReport, LongLibraryNamesAreShortenedUnlessFullNamesAreAsked) {
  const std::string initiate =
      "boost::asio::awaitable<unsigned long, boost::asio::any_io_executor> "
      "boost::asio::async_result<boost::asio::use_awaitable_t<boost::asio::any_io_executor>, void "
      "(boost::system::error_code, unsigned long)>::initiate<boost::asio::mutable_buffers_1, "
      "int>(boost::asio::use_awaitable_t<boost::asio::any_io_executor>, "
      "boost::asio::mutable_buffers_1, int)";
  model::Snapshot s;
  s.pid = 7;
  s.frames.push_back(make_frame(0x1000, "session(int)", "server.cpp", 69, 0, 2));
  model::CoroFrame leaf = make_frame(0x2000, initiate, "", 0, 0x1000, 2);
  leaf.stuck = true;
  leaf.stuck_for_s = 1.0;
  s.frames.push_back(leaf);
  s.window_seconds = 1.0;
  std::string shortened = render(s);
  // In the tree and in the stuck section; never the whole name. The function's own template
  // arguments stay (they tell Asio's initiations apart).
  const std::string short_name =
      "boost::asio::async_result<...>::initiate<mutable_buffers_1, int>(...)";
  size_t first = shortened.find("1x " + short_name);
  ASSERT_NE(first, std::string::npos) << shortened;
  EXPECT_NE(shortened.find("1x " + short_name, first + 1), std::string::npos) << shortened;
  EXPECT_EQ(shortened.find(initiate), std::string::npos) << shortened;
  output::TextReportOptions full;
  full.max_name_chars = 0;
  std::string whole = render(s, full);
  EXPECT_NE(whole.find("1x " + initiate), std::string::npos) << whole;
  EXPECT_EQ(whole.find(short_name), std::string::npos) << whole;
}

// A thread in a lock deadlock whose stack is a 5,000-deep recursion: the recursive frame is one
// line with its count (util/frame_runs.h), not 4,996 lines.
TEST(ReportText, NativeStackFoldsRecursion) {
  model::Snapshot s;
  s.pid = 7;
  model::ThreadInfo t = make_thread(8, "worker", 'S', "futex");
  auto frame = [](uint64_t pc, const std::string& fn) {
    model::NativeFrame f;
    f.pc = pc;
    f.function = fn;
    return f;
  };
  t.native_stack.push_back(frame(0x401000, "lock_it()"));
  for (int i = 0; i < 4996; ++i) t.native_stack.push_back(frame(0x401100, "handle(int)"));
  t.native_stack.push_back(frame(0x401200, "main"));
  s.threads.push_back(t);
  model::Diagnosis d;
  d.kind = model::Diagnosis::Kind::kLockOwnerGone;
  d.threads = {8};
  d.summary = "thread 8 waits for a lock whose owner exited";
  model::Diagnosis::Lock l;
  l.address = 0x5000;
  l.type = "pthread_mutex";
  l.owner = 9;
  l.owner_alive = false;
  l.waiters = {8};
  d.locks.push_back(l);
  s.diagnoses.push_back(d);
  std::ostringstream out;
  output::write_diagnoses(out, s);
  const std::string text = out.str();
  EXPECT_NE(text.find("      #0 0x401000 lock_it()\n"
                      "      #1 0x401100 handle(int)  x4996\n"
                      "      #4997 0x401200 main\n"),
            std::string::npos)
      << text;
  size_t lines = 0;
  for (const char c : text) lines += c == '\n';
  EXPECT_LT(lines, 20u) << text;
}

}  // namespace
}  // namespace asyncprobe
