// In-process tracing (`asyncprobe run --trace`): resume functions are patched at load time and on
// dlopen, and every resume is counted exactly. Checked from start to exit (--trace-out) on every
// compiler x optimisation variant, with threads and a dlopened library, and as a live session
// (what `asyncprobe trace -p PID` uses) by an ordinary user against a non-dumpable target.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <grp.h>
#include <sys/wait.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/fixture_process.h"
#include "tests/integration/preload_support.h"
#include "tests/integration/source_markers.h"
#include "userspace/process/preload_client.h"
#include "userspace/trace/preload_trace.h"
#include "userspace/util/exit_codes.h"

namespace asyncprobe::testing {
namespace {

using nlohmann::json;

const char* kService = "tests/fixtures/preload_service.cpp";
const char* kPlugin = "tests/fixtures/preload_plugin.cpp";

// 1-based line of the first line of `source` that starts with `text`.
int line_starting(const std::string& source, const std::string& text) {
  std::ifstream in(source_file(source));
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.rfind(text, 0) == 0) return n;
  }
  throw std::runtime_error(text + " not in " + source);
}

std::map<std::string, uint64_t> resumes_by_function(const json& report) {
  std::map<std::string, uint64_t> out;
  for (const auto& f : report["functions"])
    out[f["function"].get<std::string>()] = f["resumes"].get<uint64_t>();
  return out;
}

class PreloadTraceOut : public ::testing::TestWithParam<std::string> {};

TEST_P(PreloadTraceOut, CountsEveryResumeFromStartToExitWithThreadsAndDlopen) {
  const std::string variant = GetParam();
  const std::string dir = make_temp_dir("trace");
  const std::string out = dir + "/trace.json";
  Finished r = run_with_status(
      run_argv({"--trace-out", out, "--json"},
               {fixture_path(variant, "preload_service"), "--now", "--rounds", "1000", "--threads",
                "2", "--plugin", fixture_path(variant, "libpreload_plugin.so")}),
      dir, 0);
  json report = json::parse(read_text_file(out), nullptr, false);
  remove_tree(dir);
  ASSERT_EQ(r.exit_code(), 0) << r.err;
  EXPECT_EQ(r.err, "");
  ASSERT_FALSE(report.is_discarded());
  EXPECT_EQ(report["schema"], "asyncprobe.preload-trace/1");
  EXPECT_EQ(report["untraced_functions"], 0);
  // Two workload threads: ticker(1000) 1001 resumes each, outer() 2, inner(5) 6, and the plugin's
  // ticker 1001; the parked chains were each resumed once, from their initial suspend.
  std::map<std::string, uint64_t> want = {{"ticker(int)", 2002},    {"outer()", 4},
                                          {"inner(int)", 12},       {"plugin_ticker(int)", 2002},
                                          {"service_root(int)", 2}, {"service_middle(int)", 2},
                                          {"service_leaf(int)", 2}};
  EXPECT_EQ(resumes_by_function(report), want) << report.dump(1);
  uint64_t total = 0;
  for (const auto& [name, n] : want) total += n;
  EXPECT_EQ(report["total_resumes"], total);
  // Named with their declarations, including the one in the dlopened library.
  for (const auto& f : report["functions"]) {
    std::string name = f["function"];
    if (name == "ticker(int)") {
      EXPECT_EQ(f["file"], source_file(kService));
      EXPECT_EQ(f["line"], line_starting(kService, "task<int> ticker(int n) {"));
    }
    if (name == "plugin_ticker(int)") {
      EXPECT_EQ(f["file"], source_file(kPlugin));
      EXPECT_EQ(f["object"], fixture_path(variant, "libpreload_plugin.so"));
    }
  }
  // Per thread: the main thread resumed the parked chains, each worker its own workload.
  std::vector<uint64_t> per_thread;
  for (const auto& t : report["threads"]) per_thread.push_back(t["resumes"]);
  std::sort(per_thread.begin(), per_thread.end());
  EXPECT_EQ(per_thread, (std::vector<uint64_t>{6, 2010, 2010}));
}

INSTANTIATE_TEST_SUITE_P(Variants, PreloadTraceOut,
                         ::testing::ValuesIn(fixture_variants_with("preload_service")),
                         VariantTestName());

// A live session by the target's own (unprivileged) user, the way `asyncprobe trace -p PID`
// does it without root: the child process below plays asyncprobe, the test plays the workload's
// trigger.
TEST(PreloadTraceSession, AnOrdinaryUserCountsExactlyWhatHappenedDuringTheSession) {
  FixtureProcess service(
      as_user(kTestUid, run_argv({"--trace"}, {fixture_path("clang19-O2", "preload_service"),
                                               "--nondumpable", "--rounds", "500"})));
  pid_t pid = service.pid();
  int started[2], stop[2], result[2];
  ASSERT_EQ(pipe(started), 0);
  ASSERT_EQ(pipe(stop), 0);
  ASSERT_EQ(pipe(result), 0);
  pid_t child = fork();
  if (child == 0) {
    close(started[0]);
    close(stop[1]);
    close(result[0]);
    if (setgroups(0, nullptr) != 0 || setresgid(kTestUid, kTestUid, kTestUid) != 0 ||
        setresuid(kTestUid, kTestUid, kTestUid) != 0) {
      _exit(3);
    }
    trace::PreloadTraceOptions opts;
    opts.duration_s = 60;
    opts.poll_interval_s = 0.01;
    opts.on_started = [&] { (void)!write(started[1], "s", 1); };
    opts.stop_early = [&] {
      pollfd p{stop[0], POLLIN, 0};
      return poll(&p, 1, 0) > 0;
    };
    model::PreloadTraceReport report;
    std::vector<preload_proto::ResumeEvent> events;
    std::string why;
    int code = 0;
    json j;
    if (!trace::preload_trace_collect(pid, opts, &report, &events, &why, &code)) {
      j["error"] = why;
    } else {
      for (const auto& f : report.functions) {
        j["resumes"][f.function] = f.resumes;
        j["frames"][f.function] = f.frames;
      }
      j["events"] = report.events;
      j["lost"] = report.lost_events;
      j["total"] = report.total_resumes;
      j["mode"] = report.mode;
    }
    std::string s = j.dump();
    (void)!write(result[1], s.data(), s.size());
    _exit(0);
  }
  close(started[1]);
  close(stop[0]);
  close(result[1]);
  char c;
  ASSERT_EQ(read(started[0], &c, 1), 1);
  // The session is recording: run one workload, wait for it to finish, end the session.
  kill(pid, SIGUSR1);
  auto done = service.read_line(std::chrono::seconds(30));
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(*done, "DONE 1");
  ASSERT_EQ(write(stop[1], "x", 1), 1);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(result[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  int status = 0;
  waitpid(child, &status, 0);
  json j = json::parse(out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << out;
  ASSERT_FALSE(j.contains("error")) << j["error"];
  // The parked chains started before the session: not counted.
  EXPECT_EQ(j["resumes"], json({{"ticker(int)", 501}, {"outer()", 2}, {"inner(int)", 6}}));
  // Every resume came as an event too, and each of those coroutines had one frame.
  EXPECT_EQ(j["events"], 509);
  EXPECT_EQ(j["lost"], 0);
  EXPECT_EQ(j["total"], 509);
  EXPECT_EQ(j["frames"], json({{"ticker(int)", 1}, {"outer()", 1}, {"inner(int)", 1}}));
  EXPECT_EQ(j["mode"], "live session");
}

TEST(PreloadTraceSession, WithoutRunTraceTheSessionIsRefusedWithAHint) {
  FixtureProcess service(run_argv({}, {fixture_path("gcc12-O2", "preload_service")}));
  trace::PreloadTraceOptions opts;
  opts.duration_s = 0.1;
  model::PreloadTraceReport report;
  std::string why;
  int code = 0;
  EXPECT_FALSE(trace::preload_trace_collect(service.pid(), opts, &report, nullptr, &why, &code));
  EXPECT_EQ(why, "pid " + std::to_string(service.pid()) +
                     " does not trace in-process: start it with `asyncprobe run --trace`");
  EXPECT_EQ(code, util::kExitUsage);
}

TEST(PreloadTraceSession, NoSocketNoSession) {
  FixtureProcess service({fixture_path("gcc12-O2", "preload_service")});
  std::string why;
  int code = 0;
  EXPECT_EQ(process::PreloadConnection::open(service.pid(), &why, &code), nullptr);
  EXPECT_NE(why.find("serves no asyncprobe socket"), std::string::npos) << why;
  EXPECT_EQ(code, util::kExitPermission);
}

// `asyncprobe trace -p PID` run by an ordinary user (no root, no BPF) against a process started
// with `asyncprobe run --trace`: the eBPF check fails and the command traces in-process instead.
struct TraceCliRun {
  int exit_code = -1;
  std::string out, err;
};

class PreloadTraceCli : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = make_temp_dir("trace-cli"); }
  void TearDown() override {
    if (tracer_ > 0 && waitpid(tracer_, nullptr, WNOHANG) == 0) {
      kill(tracer_, SIGKILL);
      waitpid(tracer_, nullptr, 0);
    }
    remove_tree(dir_);
  }

  // Starts `asyncprobe trace ARGS -o OUT` as `uid` (stderr to a file).
  pid_t start_tracer(unsigned uid, const std::vector<std::string>& args) {
    std::vector<std::string> argv = {asyncprobe_binary(), "trace"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"-o", dir_ + "/out"});
    std::string err = dir_ + "/err";
    pid_t pid = fork();
    if (pid == 0) {
      if (setgroups(0, nullptr) != 0 || setresgid(uid, uid, uid) != 0 ||
          setresuid(uid, uid, uid) != 0) {
        _exit(125);
      }
      int e = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int in = open("/dev/null", O_RDONLY);
      if (e < 0 || in < 0) _exit(126);
      dup2(in, 0);
      dup2(e, 2);
      std::vector<char*> cargv;
      for (auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
      cargv.push_back(nullptr);
      execv(cargv[0], cargv.data());
      _exit(127);
    }
    tracer_ = pid;
    return pid;
  }
  // Waits (bounded) until stderr says the session records.
  bool wait_recording(pid_t tracer) {
    for (int i = 0; i < 3000; ++i) {
      if (read_text_file(dir_ + "/err").find("asyncprobe: tracing pid") != std::string::npos)
        return true;
      if (kill(tracer, 0) != 0) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  TraceCliRun finish(pid_t tracer) {
    int status = 0;
    waitpid(tracer, &status, 0);
    tracer_ = -1;
    TraceCliRun r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = read_text_file(dir_ + "/out");
    r.err = read_text_file(dir_ + "/err");
    return r;
  }

  std::string dir_;
  pid_t tracer_ = -1;
};

TEST_F(PreloadTraceCli, AnOrdinaryUserTracesUntilCtrlCWithExactCounts) {
  FixtureProcess service(
      as_user(kTestUid, run_argv({"--trace"}, {fixture_path("clang19-O2", "preload_service"),
                                               "--nondumpable", "--rounds", "500"})));
  pid_t tracer = start_tracer(kTestUid, {"-p", std::to_string(service.pid()), "--json"});
  ASSERT_TRUE(wait_recording(tracer)) << read_text_file(dir_ + "/err");
  kill(service.pid(), SIGUSR1);
  auto done = service.read_line(std::chrono::seconds(30));
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(*done, "DONE 1");
  kill(tracer, SIGINT);
  TraceCliRun r = finish(tracer);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "asyncprobe: tracing pid " + std::to_string(service.pid()) +
                       " in-process (`asyncprobe run --trace`, no root needed); Ctrl-C to stop\n");
  json j = json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_EQ(j["schema"], "asyncprobe.preload-trace/1");
  EXPECT_EQ(j["pid"], service.pid());
  EXPECT_EQ(j["mode"], "live session");
  // The parked chains started before the session: not counted.
  EXPECT_EQ(resumes_by_function(j), (std::map<std::string, uint64_t>{
                                        {"ticker(int)", 501}, {"outer()", 2}, {"inner(int)", 6}}));
  EXPECT_EQ(j["total_resumes"], 509);
  EXPECT_EQ(j["events"], 509);
  EXPECT_EQ(j["lost_events"], 0);
  const json* ticker = nullptr;
  for (const auto& f : j["functions"]) {
    if (f["function"] == "ticker(int)") ticker = &f;
  }
  ASSERT_NE(ticker, nullptr);
  EXPECT_EQ((*ticker)["file"], source_file(kService));
  EXPECT_EQ((*ticker)["line"], line_starting(kService, "task<int> ticker(int"));
}

TEST_F(PreloadTraceCli, AnOrdinaryUserTracesForTheGivenDurationAsText) {
  FixtureProcess service(
      as_user(kTestUid, run_argv({"--trace"}, {fixture_path("gcc12-O2", "preload_service"),
                                               "--nondumpable", "--rounds", "500"})));
  auto t0 = std::chrono::steady_clock::now();
  pid_t tracer = start_tracer(kTestUid, {"-p", std::to_string(service.pid()), "-d", "3s"});
  ASSERT_TRUE(wait_recording(tracer)) << read_text_file(dir_ + "/err");
  kill(service.pid(), SIGUSR1);
  auto done = service.read_line(std::chrono::seconds(30));
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(*done, "DONE 1");
  TraceCliRun r = finish(tracer);  // ends by itself after -d
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_GE(took, 3.0);
  EXPECT_EQ(r.out.rfind("asyncprobe trace (in-process, live session): pid " +
                            std::to_string(service.pid()) + " (preload_service), ",
                        0),
            0u)
      << r.out;
  EXPECT_NE(r.out.find(", 509 resumes, 509 events, 0 lost\n"), std::string::npos) << r.out;
  const std::string src = source_file(kService);
  for (const auto& [fn, count] : std::vector<std::pair<std::string, std::string>>{
           {"ticker(int)", "501"}, {"inner(int)", "6"}, {"outer()", "2"}}) {
    bool found = false;
    for (const auto& line : split_lines(r.out)) {
      std::string want = count + "  " + fn + "  (" + src + ":";
      size_t at = line.find(want);
      found |= at != std::string::npos && line.find_first_not_of(' ') == at;
    }
    EXPECT_TRUE(found) << fn << " x" << count << " not in:\n" << r.out;
  }
}

TEST_F(PreloadTraceCli, WithoutRunTraceTheBpfErrorSaysHowToTraceWithoutRoot) {
  FixtureProcess service(
      as_user(kTestUid, run_argv({}, {fixture_path("gcc12-O2", "preload_service")})));
  TraceCliRun r = finish(start_tracer(kTestUid, {"-p", std::to_string(service.pid())}));
  EXPECT_EQ(r.exit_code, util::kExitPermission) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("CAP_BPF and CAP_PERFMON"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("; pid " + std::to_string(service.pid()) +
                       " runs under `asyncprobe run` without --trace: restart it with "
                       "`asyncprobe run --trace` to trace it without them\n"),
            std::string::npos)
      << r.err;
}

TEST_F(PreloadTraceCli, AnotherUserIsRefusedWithTheBpfError) {
  FixtureProcess service(
      as_user(kTestUid, run_argv({"--trace"}, {fixture_path("gcc12-O2", "preload_service")})));
  TraceCliRun r = finish(start_tracer(kOtherUid, {"-p", std::to_string(service.pid())}));
  EXPECT_EQ(r.exit_code, util::kExitPermission) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find("(uid " + std::to_string(kOtherUid) + " has neither)"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("; without them, start it with `asyncprobe run --trace` and trace it as "
                       "its own user\n"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.out, "");
}

}  // namespace
}  // namespace asyncprobe::testing
