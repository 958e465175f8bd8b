// `asyncprobe watch` against real processes: the watch_service fixture's database hangs on
// SIGUSR1 and recovers on SIGUSR2; the daemon must report `stuck` (confirmed by its resume probe)
// then `recovered` at db_query's co_await with the handler count, nothing for the busy
// coroutines, `detached` when a target exits, new processes with --all, an `error` for a process
// it may not read, and clear usage errors. A real Prometheus scrapes its /metrics; the test reads
// asyncprobe_stuck_coroutines back through Prometheus' query API. The systemd unit is verified.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/fixture_process.h"
#include "tests/integration/source_markers.h"

namespace {

using asyncprobe::testing::asyncprobe_binary;
using asyncprobe::testing::fixture_path;
using asyncprobe::testing::fixture_variants_with;
using asyncprobe::testing::FixtureProcess;
using asyncprobe::testing::marker_line;
using asyncprobe::testing::run_command;
using asyncprobe::testing::RunResult;
using nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr const char* kSource = "tests/fixtures/watch_service.cpp";

// The daemon as a child process: stdout read line by line, stderr kept in a file.
class Daemon {
 public:
  explicit Daemon(const std::vector<std::string>& args,
                  const std::vector<std::string>& prefix = {}) {
    err_path_ = fs::temp_directory_path() /
                ("watch_err_" + std::to_string(getpid()) + "_" + std::to_string(counter_++));
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    std::vector<std::string> argv = prefix;
    argv.push_back(asyncprobe_binary());
    argv.push_back("watch");
    argv.insert(argv.end(), args.begin(), args.end());
    pid_ = fork();
    if (pid_ == 0) {
      int err = open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(out[1], 1);
      dup2(err, 2);
      std::vector<char*> c;
      for (auto& a : argv) c.push_back(a.data());
      c.push_back(nullptr);
      execvp(c[0], c.data());
      _exit(127);
    }
    close(out[1]);
    fd_ = out[0];
  }
  ~Daemon() {
    if (!exit_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    close(fd_);
    fs::remove(err_path_);
  }
  pid_t pid() const { return pid_; }

  // The next line, or nullopt after `timeout` or at end of output.
  std::optional<std::string> line(std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string l = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        lines_.push_back(l);
        return l;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          end - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char tmp[4096];
      ssize_t n = read(fd_, tmp, sizeof tmp);
      if (n <= 0) return std::nullopt;
      buf_.append(tmp, static_cast<size_t>(n));
    }
  }
  // The next JSON event for which `match` holds (others are kept in events()).
  std::optional<json> event(std::chrono::milliseconds timeout,
                            const std::function<bool(const json&)>& match) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          end - std::chrono::steady_clock::now());
      auto l = line(std::max(left, 0ms));
      if (!l) return std::nullopt;
      json j = json::parse(*l);
      events_.push_back(j);
      if (match(j)) return j;
    }
  }
  const std::vector<json>& events() const { return events_; }
  // Waits for the daemon to exit; its exit code, or -1 (killed by a signal or still running).
  int wait(std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exit_ = true;
        // Whatever is left on stdout: the last events.
        while (auto l = line(200ms)) {
          if (!l->empty() && (*l)[0] == '{') events_.push_back(json::parse(*l));
        }
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }
  std::string err() const {
    std::ifstream f(err_path_);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }

 private:
  static inline int counter_ = 0;
  pid_t pid_ = -1;
  int fd_ = -1;
  bool exit_ = false;
  std::string buf_;
  std::vector<std::string> lines_;
  std::vector<json> events_;
  fs::path err_path_;
};

bool is(const json& e, const char* kind) { return e.value("event", "") == kind; }

void wait_for_line(FixtureProcess& f, const std::string& want) {
  for (int i = 0; i < 100; ++i) {
    auto l = f.read_line(100ms);
    if (l && *l == want) return;
  }
  FAIL() << "fixture never printed " << want;
}

int free_port() {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  close(s);
  return ntohs(a.sin_port);
}

class WatchStuck : public ::testing::TestWithParam<std::string> {};

// The hang is reported as `stuck` at db_query's co_await with the 8 handlers, confirmed by the
// probe, with the stack serve -> handle_request -> db_query; then `recovered`; nothing for the
// spinners or the healthy service; SIGTERM ends the daemon at once with exit 0.
TEST_P(WatchStuck, StuckThenRecoveredAtTheHungAwait) {
  FixtureProcess f({fixture_path(GetParam(), "watch_service"), "--handlers", "8"});
  const std::string pid = std::to_string(f.pid());
  Daemon d({"-p", pid, "--interval", "200ms", "--stuck-threshold", "1s", "--json"});
  ASSERT_TRUE(d.event(20s, [](const json& e) { return is(e, "attached"); })) << d.err();
  // Healthy for three thresholds: no event at all.
  EXPECT_FALSE(d.event(3s, [](const json&) { return true; })) << d.events().back().dump();
  kill(f.pid(), SIGUSR1);
  wait_for_line(f, "HANGING");
  // On a loaded machine a probe window can start late and not cover its interval: the daemon then
  // says `unchanged` (not known) first, and `stuck` once a window covers it. Never `stuck` early.
  auto stuck = d.event(10s, [](const json& e) { return is(e, "stuck"); });
  ASSERT_TRUE(stuck) << d.err();
  for (const json& e : d.events()) {
    if (is(e, "unchanged")) {
      EXPECT_NE(e["evidence"], "resume-probe") << e.dump();
    }
  }
  EXPECT_EQ((*stuck)["event"], "stuck") << stuck->dump();
  EXPECT_EQ((*stuck)["evidence"], "resume-probe");
  EXPECT_EQ((*stuck)["pid"], f.pid());
  EXPECT_EQ((*stuck)["suspend"]["function"], "db_query(long, long)");
  EXPECT_EQ((*stuck)["suspend"]["file"], asyncprobe::testing::source_file(kSource));
  EXPECT_EQ((*stuck)["suspend"]["line"], marker_line(kSource, "db_wait"));
  EXPECT_EQ((*stuck)["count"], 8);
  EXPECT_GE((*stuck)["stuck_for_s"].get<double>(), 1.0);
  ASSERT_EQ((*stuck)["stack"].size(), 3u);
  EXPECT_EQ((*stuck)["stack"][0]["function"], "serve(long)");
  EXPECT_EQ((*stuck)["stack"][0]["line"], marker_line(kSource, "serve_calls_handle"));
  EXPECT_EQ((*stuck)["stack"][1]["function"], "handle_request(long, long)");
  EXPECT_EQ((*stuck)["stack"][1]["line"], marker_line(kSource, "handle_calls_query"));
  EXPECT_EQ((*stuck)["stack"][2]["function"], "db_query(long, long)");

  kill(f.pid(), SIGUSR2);
  wait_for_line(f, "RECOVERED");
  auto rec = d.event(3s, [](const json& e) { return is(e, "recovered"); });
  ASSERT_TRUE(rec) << d.err();
  EXPECT_EQ((*rec)["suspend"], (*stuck)["suspend"]);
  EXPECT_EQ((*rec)["count"], 8);
  std::this_thread::sleep_for(1500ms);
  kill(d.pid(), SIGTERM);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(d.wait(2s), 0) << d.err();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  // Exactly attached, stuck, recovered: no spinner, no healthy request, no flapping. An
  // `unchanged` before `stuck` (a window that did not cover its interval) is for the hung point.
  std::vector<std::string> kinds;
  for (const json& e : d.events()) {
    if (is(e, "unchanged")) {
      EXPECT_EQ(e["suspend"], (*stuck)["suspend"]) << e.dump();
      continue;
    }
    kinds.push_back(e["event"]);
  }
  EXPECT_EQ(kinds, (std::vector<std::string>{"attached", "stuck", "recovered"}));
}

INSTANTIATE_TEST_SUITE_P(Variants, WatchStuck,
                         ::testing::ValuesIn(fixture_variants_with("watch_service")),
                         asyncprobe::testing::VariantTestName());

// busy's two coroutines suspend at the same co_await millions of times a second and keep no
// state in their frames: memory alone cannot tell them from stuck ones; the probe sees them run.
TEST(Watch, BusyCoroutinesAreNeitherStuckNorUnchanged) {
  FixtureProcess f({fixture_path("gcc12-O2", "busy"), "--seconds", "30"});
  Daemon d(
      {"-p", std::to_string(f.pid()), "--interval", "200ms", "--stuck-threshold", "1s", "--json"});
  ASSERT_TRUE(d.event(20s, [](const json& e) { return is(e, "attached"); })) << d.err();
  auto e = d.event(5s, [](const json&) { return true; });
  EXPECT_FALSE(e) << e->dump();
}

// The same busy target without the probe: memory evidence only, reported as `unchanged` (never
// `stuck`), with the reason.
TEST(Watch, WithoutProbeSameLookingFramesAreUnchangedNotStuck) {
  FixtureProcess f({fixture_path("gcc12-O2", "busy"), "--seconds", "30"});
  Daemon d({"-p", std::to_string(f.pid()), "--interval", "200ms", "--stuck-threshold", "1s",
            "--json", "--no-probe"});
  auto e = d.event(20s, [](const json& e) { return !is(e, "attached"); });
  ASSERT_TRUE(e) << d.err();
  EXPECT_EQ((*e)["event"], "unchanged");
  EXPECT_EQ((*e)["evidence"], "memory-unchanged");
  for (const json& ev : d.events()) EXPECT_NE(ev["event"], "stuck");
}

TEST(Watch, TargetExitIsDetachedAndEndsTheDaemon) {
  FixtureProcess f({fixture_path("gcc12-O2", "exits"), "--after-ms", "3000"});
  Daemon d({"-p", std::to_string(f.pid()), "--interval", "200ms", "--json"});
  ASSERT_TRUE(d.event(20s, [](const json& e) { return is(e, "attached"); })) << d.err();
  auto det = d.event(10s, [](const json& e) { return is(e, "detached"); });
  ASSERT_TRUE(det) << d.err();
  EXPECT_EQ((*det)["pid"], f.pid());
  EXPECT_EQ((*det)["reason"], "exited");
  EXPECT_EQ(d.wait(3s), 0) << d.err();
}

TEST(Watch, AllPicksUpAProcessStartedAfterTheDaemon) {
  Daemon d({"--all", "--interval", "500ms", "--json", "--no-probe"});
  std::this_thread::sleep_for(2s);
  FixtureProcess f({fixture_path("clang19-O2", "many"), "--count", "400"});
  auto att = d.event(30s, [&](const json& e) { return is(e, "attached") && e["pid"] == f.pid(); });
  ASSERT_TRUE(att) << d.err();
  EXPECT_EQ((*att)["command"], "many");
  EXPECT_EQ((*att)["coroutines"], 400);
}

TEST(Watch, ProcessItMayNotReadIsAnErrorEventNotACrash) {
  FixtureProcess f({fixture_path("gcc12-O2", "watch_service")});
  Daemon d({"-p", std::to_string(f.pid()), "--json"},
           {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"});
  auto e = d.event(20s, [](const json&) { return true; });
  if (!e && d.err().find("Permission denied") != std::string::npos) {
    GTEST_SKIP() << "uid 65534 cannot execute asyncprobe from this build tree: " << d.err();
  }
  ASSERT_TRUE(e) << d.err();
  EXPECT_EQ((*e)["event"], "error");
  EXPECT_EQ((*e)["pid"], f.pid());
  EXPECT_EQ((*e)["reason"], "permission");
  EXPECT_NE((*e)["message"].get<std::string>().find("pid " + std::to_string(f.pid())),
            std::string::npos);
  EXPECT_EQ(d.wait(5s), 4) << d.err();
}

TEST(Watch, BadInputIsAUsageError) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"watch", "-p", "1", "--interval", "0"}, "invalid duration '0' for --interval"},
      {{"watch", "-p", "1", "--interval", "5ms"},
       "--interval and --stuck-threshold must be at least 10ms"},
      {{"watch", "-p", "1", "--all"}, "-p and --all exclude each other"},
      {{"watch"}, "give -p PID or --all"},
      {{"watch", "-p", "1", "--stuck-threshold", "soon"},
       "invalid duration 'soon' for --stuck-threshold"},
      {{"watch", "-p", "1", "--listen", "localhost"}, "--listen wants ADDR:PORT"},
      {{"watch", "-p", "1", "--bogus"}, "unknown option '--bogus'"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {asyncprobe_binary()};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    RunResult r = run_command(argv, 10s);
    EXPECT_EQ(r.exit.exit_code, 2) << c.message << ": " << r.err;
    EXPECT_NE(r.err.find("asyncprobe: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("(see asyncprobe watch --help)"), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

TEST(Watch, ListenOnAPortInUseIsAUsageError) {
  FixtureProcess f({fixture_path("gcc12-O2", "watch_service")});
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(s, 1), 0);
  socklen_t len = sizeof a;
  getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  const std::string port = std::to_string(ntohs(a.sin_port));
  RunResult r = run_command({asyncprobe_binary(), "watch", "-p", std::to_string(f.pid()),
                             "--listen", "127.0.0.1:" + port},
                            10s);
  close(s);
  EXPECT_EQ(r.exit.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("cannot listen on 127.0.0.1:" + port), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("Address already in use"), std::string::npos) << r.err;
}

// Prometheus' instant query for one series: its value, or nullopt when it has none.
std::optional<double> query(httplib::Client& prom, const std::string& promql) {
  auto res = prom.Get("/api/v1/query", httplib::Params{{"query", promql}}, httplib::Headers{});
  if (!res || res->status != 200) return std::nullopt;
  json j = json::parse(res->body);
  if (j["data"]["result"].empty()) return std::nullopt;
  return std::stod(j["data"]["result"][0]["value"][1].get<std::string>());
}

TEST(Watch, PrometheusScrapesStuckCoroutinesAboveZeroThenZero) {
  FixtureProcess f({fixture_path("gcc12-O2", "watch_service"), "--handlers", "5"});
  const int port = free_port();
  Daemon d({"-p", std::to_string(f.pid()), "--interval", "200ms", "--stuck-threshold", "1s",
            "--json", "--listen", "127.0.0.1:" + std::to_string(port)});
  ASSERT_TRUE(d.event(20s, [](const json& e) { return is(e, "attached"); })) << d.err();

  // promtool lints the raw page.
  httplib::Client daemon("127.0.0.1", port);
  auto page = daemon.Get("/metrics");
  ASSERT_TRUE(page) << "no answer from the daemon";
  EXPECT_EQ(page->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  const fs::path dir = fs::temp_directory_path() / ("watch_prom_" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "page.txt") << page->body;
  RunResult lint =
      run_command({"sh", "-c", "promtool check metrics < " + (dir / "page.txt").string()});
  EXPECT_EQ(lint.exit.exit_code, 0) << lint.out << lint.err << page->body;

  const int prom_port = free_port();
  std::ofstream(dir / "prometheus.yml")
      << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
      << "scrape_configs:\n  - job_name: asyncprobe\n    static_configs:\n"
      << "      - targets: ['127.0.0.1:" << port << "']\n";
  pid_t prom = fork();
  if (prom == 0) {
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    execlp("prometheus", "prometheus",
           ("--config.file=" + (dir / "prometheus.yml").string()).c_str(),
           ("--storage.tsdb.path=" + (dir / "data").string()).c_str(),
           ("--web.listen-address=127.0.0.1:" + std::to_string(prom_port)).c_str(), nullptr);
    _exit(127);
  }
  httplib::Client client("127.0.0.1", prom_port);
  const std::string series = "asyncprobe_stuck_coroutines{pid=\"" + std::to_string(f.pid()) +
                             "\",function=\"db_query(long, long)\"}";
  auto poll_until = [&](const std::function<bool(std::optional<double>)>& ok, auto timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    std::optional<double> v;
    while (std::chrono::steady_clock::now() < end) {
      v = query(client, series);
      if (ok(v)) return v;
      std::this_thread::sleep_for(250ms);
    }
    return v;
  };
  kill(f.pid(), SIGUSR1);
  wait_for_line(f, "HANGING");
  auto during = poll_until([](std::optional<double> v) { return v && *v > 0; }, 20s);
  EXPECT_TRUE(during && *during == 5) << (during ? std::to_string(*during) : "no series");
  kill(f.pid(), SIGUSR2);
  wait_for_line(f, "RECOVERED");
  auto after = poll_until([](std::optional<double> v) { return v && *v == 0; }, 20s);
  EXPECT_TRUE(after && *after == 0) << (after ? std::to_string(*after) : "no series");
  kill(prom, SIGTERM);
  waitpid(prom, nullptr, 0);
  fs::remove_all(dir);
}

// The daemon's /metrics page.
std::string metrics_page(int port) {
  httplib::Client daemon("127.0.0.1", port);
  auto page = daemon.Get("/metrics");
  return page ? page->body : std::string();
}

// The value of the one sample of `name` whose labels contain every `labels` part; nullopt when
// no sample (or more than one) matches.
std::optional<double> sample(const std::string& page, const std::string& name,
                             const std::vector<std::string>& labels = {}) {
  std::optional<double> found;
  size_t matches = 0;
  std::istringstream in(page);
  for (std::string l; std::getline(in, l);) {
    if (l.rfind(name + "{", 0) != 0 && l.rfind(name + " ", 0) != 0) continue;
    bool all = true;
    for (const std::string& want : labels) all &= l.find(want) != std::string::npos;
    if (!all) continue;
    ++matches;
    found = std::stod(l.substr(l.rfind(' ') + 1));
  }
  return matches == 1 ? found : std::nullopt;
}

// The page is rebuilt after each step, just after the step's events are written: a value an
// event announces is on the page within one interval. Polls until `name` has it (or 5 s passed).
std::optional<double> settled_sample(int port, const std::string& name,
                                     const std::vector<std::string>& labels, double want) {
  std::optional<double> v;
  for (int i = 0; i < 50; ++i) {
    v = sample(metrics_page(port), name, labels);
    if (v == want) break;
    std::this_thread::sleep_for(100ms);
  }
  return v;
}

void expect_promtool_accepts(const std::string& page) {
  const fs::path file =
      fs::temp_directory_path() / ("watch_page_" + std::to_string(getpid()) + ".txt");
  std::ofstream(file) << page;
  RunResult lint = run_command({"sh", "-c", "promtool check metrics < " + file.string()});
  fs::remove(file);
  EXPECT_EQ(lint.exit.exit_code, 0) << lint.out << lint.err << page;
}

std::vector<json> events_of(const Daemon& d, const char* kind) {
  std::vector<json> out;
  for (const json& e : d.events()) {
    if (is(e, kind)) out.push_back(e);
  }
  return out;
}

// coro_failures (tests/fixtures/coro_failures.cpp): four failed groups are reported with the
// first scan, grouped by type and message; the two await cycles once a second rescan confirms
// them; the gauges follow and promtool accepts the page.
TEST(WatchDiagnoses, FailedGroupsAndAwaitCyclesAreEventsAndMetrics) {
  const std::string src = asyncprobe::testing::source_file("tests/fixtures/coro_failures.cpp");
  FixtureProcess f({fixture_path("gcc12-O0", "coro_failures")});
  const int port = free_port();
  Daemon d({"-p", std::to_string(f.pid()), "--interval", "200ms", "--stuck-threshold", "1s",
            "--json", "--no-probe", "--listen", "127.0.0.1:" + std::to_string(port)});
  int cycles = 0;
  ASSERT_TRUE(d.event(30s, [&](const json& e) { return is(e, "await_cycle") && ++cycles == 2; }))
      << d.err();
  std::this_thread::sleep_for(1500ms);  // a few more rescans: nothing is reported twice
  kill(d.pid(), SIGTERM);
  ASSERT_EQ(d.wait(5s), 0) << d.err();

  struct Expected {
    std::string type;
    json what;
    std::string function;
    size_t count;
  };
  const std::vector<Expected> expected = {
      {"std::runtime_error", "payment backend refused", "charge_card(int)", 3},
      {"payment_declined", "card expired", "verify_address()", 1},
      {"quota_exceeded", nullptr, "reserve_stock()", 1},
      {"int", nullptr, "parse_amount()", 1}};
  const std::vector<json> failed = events_of(d, "failed");
  ASSERT_EQ(failed.size(), expected.size()) << json(failed).dump(1);
  for (const Expected& x : expected) {
    auto it = std::find_if(failed.begin(), failed.end(),
                           [&](const json& e) { return e["exception"]["type"] == x.type; });
    ASSERT_NE(it, failed.end()) << x.type;
    EXPECT_EQ((*it)["exception"]["what"], x.what) << x.type;
    EXPECT_EQ((*it)["count"], x.count) << x.type;
    EXPECT_EQ((*it)["in_window"], x.count) << x.type;
    EXPECT_EQ((*it)["window_s"], 300);
    EXPECT_EQ((*it)["update"], false);
    EXPECT_EQ((*it)["functions"], json::array({{{"function", x.function}, {"count", x.count}}}))
        << it->dump();
    EXPECT_EQ((*it)["pid"], f.pid());
  }
  const std::vector<json> found = events_of(d, "await_cycle");
  ASSERT_EQ(found.size(), 2u);
  std::set<std::vector<std::string>> seen;
  for (const json& c : found) {
    std::vector<std::string> members;
    for (const json& m : c["members"]) {
      const std::string fn = m["function"].get<std::string>();
      members.push_back(fn.substr(0, fn.find('(')));
      const std::string marker = members.back() == "pair_first"    ? "pair_first_awaits_second"
                                 : members.back() == "pair_second" ? "pair_second_joins_first"
                                 : members.back() == "ring_first"  ? "ring_first_awaits_second"
                                 : members.back() == "ring_second" ? "ring_second_awaits_third"
                                                                   : "ring_third_joins_first";
      EXPECT_EQ(m["line"], marker_line(src, marker)) << fn;
    }
    EXPECT_EQ(c["count"], members.size());
    std::rotate(members.begin(), std::min_element(members.begin(), members.end()), members.end());
    seen.insert(members);
  }
  EXPECT_EQ(seen, (std::set<std::vector<std::string>>{
                      {"pair_first", "pair_second"}, {"ring_first", "ring_second", "ring_third"}}));
  EXPECT_TRUE(events_of(d, "orphaned").empty());
  EXPECT_TRUE(events_of(d, "thread_deadlock").empty());
}

TEST(WatchDiagnoses, GaugesFollowTheDiagnosesAndPromtoolAcceptsThem) {
  FixtureProcess f({fixture_path("gcc12-O0", "coro_failures")});
  const int port = free_port();
  Daemon d({"-p", std::to_string(f.pid()), "--interval", "200ms", "--stuck-threshold", "1s",
            "--json", "--no-probe", "--listen", "127.0.0.1:" + std::to_string(port)});
  int cycles = 0;
  ASSERT_TRUE(d.event(30s, [&](const json& e) { return is(e, "await_cycle") && ++cycles == 2; }))
      << d.err();
  const std::string pid = "pid=\"" + std::to_string(f.pid()) + "\"";
  ASSERT_EQ(settled_sample(port, "asyncprobe_await_cycles", {pid}, 2), 2);
  const std::string page = metrics_page(port);
  EXPECT_EQ(
      sample(page, "asyncprobe_failed_coroutines", {pid, "exception_type=\"std::runtime_error\""}),
      3)
      << page;
  EXPECT_EQ(sample(page, "asyncprobe_failed_coroutines", {pid, "exception_type=\"int\""}), 1);
  EXPECT_EQ(sample(page, "asyncprobe_await_cycles", {pid}), 2);
  EXPECT_EQ(sample(page, "asyncprobe_orphaned_coroutines", {pid}), 0);
  EXPECT_EQ(sample(page, "asyncprobe_thread_deadlocks", {pid}), 0);
  expect_promtool_accepts(page);
}

// orphans (tests/fixtures/orphans.cpp): 5 stacks request @ request_calls_handler -> handler @
// handler_loses_wakeup nothing points to; 3 held stacks are not orphaned.
TEST(WatchDiagnoses, OrphanedStacksAreOneEvent) {
  const std::string src = asyncprobe::testing::source_file("tests/fixtures/orphans.cpp");
  FixtureProcess f({fixture_path("gcc12-O2", "orphans")});
  const int port = free_port();
  Daemon d({"-p", std::to_string(f.pid()), "--interval", "200ms", "--stuck-threshold", "1s",
            "--json", "--no-probe", "--listen", "127.0.0.1:" + std::to_string(port)});
  auto e = d.event(30s, [](const json& e) { return is(e, "orphaned"); });
  ASSERT_TRUE(e) << d.err();
  EXPECT_EQ((*e)["count"], 5) << e->dump();
  EXPECT_EQ((*e)["frames"], 10);
  ASSERT_EQ((*e)["stack"].size(), 2u);
  EXPECT_EQ((*e)["stack"][0]["function"], "request(int)");
  EXPECT_EQ((*e)["stack"][0]["line"], marker_line(src, "request_calls_handler"));
  EXPECT_EQ((*e)["stack"][1]["function"], "handler(int)");
  EXPECT_EQ((*e)["stack"][1]["line"], marker_line(src, "handler_loses_wakeup"));
  EXPECT_EQ(settled_sample(port, "asyncprobe_orphaned_coroutines",
                           {"pid=\"" + std::to_string(f.pid()) + "\""}, 10),
            10);
  std::this_thread::sleep_for(1500ms);
  kill(d.pid(), SIGTERM);
  ASSERT_EQ(d.wait(5s), 0) << d.err();
  EXPECT_EQ(events_of(d, "orphaned").size(), 1u);
}

// lock_waits mutex2 (tests/fixtures/lock_waits.cpp): threads a and b each hold one mutex and
// wait for the other's.
TEST(WatchDiagnoses, ThreadDeadlockIsAnEvent) {
  FixtureProcess p({fixture_path("gcc12-O2", "lock_waits"), "mutex2"});
  const long a = p.token_int("a"), b = p.token_int("b");
  const int port = free_port();
  Daemon d({"-p", std::to_string(p.pid()), "--interval", "200ms", "--stuck-threshold", "1s",
            "--json", "--no-probe", "--listen", "127.0.0.1:" + std::to_string(port)});
  auto e = d.event(30s, [](const json& e) { return is(e, "thread_deadlock"); });
  ASSERT_TRUE(e) << d.err();
  EXPECT_EQ((*e)["threads"], json({std::min(a, b), std::max(a, b)})) << e->dump();
  EXPECT_EQ((*e)["count"], 2);
  ASSERT_EQ((*e)["locks"].size(), 2u);
  std::set<std::string> addresses;
  for (const json& l : (*e)["locks"]) {
    EXPECT_EQ(l["type"], "pthread_mutex");
    addresses.insert(l["address"].get<std::string>());
  }
  EXPECT_EQ(addresses, (std::set<std::string>{p.token("m1"), p.token("m2")}));
  EXPECT_EQ(settled_sample(port, "asyncprobe_thread_deadlocks",
                           {"pid=\"" + std::to_string(p.pid()) + "\""}, 1),
            1);
}

// Two processes of one binary: the second attach takes every catalog from the first's.
TEST(Watch, TwoProcessesOfOneBinaryShareCatalogs) {
  FixtureProcess one({fixture_path("gcc12-O2", "many"), "--count", "40"});
  FixtureProcess two({fixture_path("gcc12-O2", "many"), "--count", "40"});
  const int port = free_port();
  Daemon d({"-p", std::to_string(one.pid()), "-p", std::to_string(two.pid()), "--json",
            "--no-probe", "--listen", "127.0.0.1:" + std::to_string(port)});
  int attached = 0;
  ASSERT_TRUE(d.event(30s, [&](const json& e) { return is(e, "attached") && ++attached == 2; }))
      << d.err();
  const std::vector<json> att = events_of(d, "attached");
  ASSERT_EQ(att.size(), 2u);
  EXPECT_EQ(att[0]["pid"], one.pid());
  EXPECT_EQ(att[0]["objects_shared"], 0) << att[0].dump();
  EXPECT_GE(att[0]["objects"].get<int>(), 3) << att[0].dump();  // many, libstdc++, libc, ...
  EXPECT_EQ(att[1]["pid"], two.pid());
  EXPECT_EQ(att[1]["objects"], att[0]["objects"]);
  EXPECT_EQ(att[1]["objects_shared"], att[1]["objects"]) << att[1].dump();
  EXPECT_EQ(att[1]["coroutines"], 40);
  const std::string page = metrics_page(port);
  EXPECT_EQ(sample(page, "asyncprobe_catalog_loads_total"), att[0]["objects"].get<double>())
      << page;
  EXPECT_EQ(sample(page, "asyncprobe_catalog_reuses_total"), att[1]["objects"].get<double>());
}

TEST(Watch, SystemdUnitVerifies) {
  // The unit as shipped, pointed at this build's binary (verify checks that ExecStart exists).
  std::ifstream in(asyncprobe::testing::source_file("tools/systemd/asyncprobe-watch.service"));
  std::string unit((std::istreambuf_iterator<char>(in)), {});
  ASSERT_FALSE(unit.empty());
  const std::string shipped = "ExecStart=/usr/local/bin/asyncprobe";
  ASSERT_NE(unit.find(shipped), std::string::npos);
  unit.replace(unit.find(shipped), shipped.size(), "ExecStart=" + asyncprobe_binary());
  const fs::path dir = fs::temp_directory_path() / ("watch_unit_" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "asyncprobe-watch.service") << unit;
  RunResult r =
      run_command({"systemd-analyze", "verify", (dir / "asyncprobe-watch.service").string()});
  fs::remove_all(dir);
  EXPECT_EQ(r.exit.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.err, "") << r.err;
  for (const char* must : {"NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=",
                           "PrivateTmp=yes", "CapabilityBoundingSet=CAP_SYS_PTRACE"}) {
    EXPECT_NE(unit.find(must), std::string::npos) << must;
  }
}

}  // namespace
