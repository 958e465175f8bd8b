// A target of `asyncprobe run` ended by a signal. SIGTERM, SIGINT and SIGHUP at their default
// action still write the reports asked for at exit and remove the socket file, and the program
// still dies by the signal (same wait status). SIGKILL lets nothing run: the socket file stays,
// a client that finds it says the pid is gone (not "permission denied"), and the next run with
// that pid replaces it.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/integration/fixture_process.h"
#include "tests/integration/preload_support.h"
#include "tests/integration/source_markers.h"
#include "userspace/preload/protocol.h"
#include "userspace/process/preload_client.h"
#include "userspace/util/exit_codes.h"

namespace asyncprobe::testing {
namespace {

using nlohmann::json;

const char* kSource = "tests/fixtures/preload_blocking.cpp";

bool exists(const std::string& path) {
  struct stat st {};
  return lstat(path.c_str(), &st) == 0;
}

class PreloadExitSignal : public ::testing::TestWithParam<int> {};

TEST_P(PreloadExitSignal, WritesTheBlockingReportRemovesTheSocketAndDiesByTheSignal) {
  const int sig = GetParam();
  const std::string dir = make_temp_dir("exitsig");
  const std::string out = dir + "/blocking.json", sockets = dir + "/sockets";
  FixtureProcess p(
      run_argv({"--blocking=20ms", "--blocking-out", out, "--json", "--socket-dir", sockets},
               {fixture_path("gcc12-O2", "preload_blocking")}));
  const std::string sock = preload_proto::socket_path(sockets, geteuid(), p.pid());
  EXPECT_TRUE(exists(sock)) << sock;
  ASSERT_EQ(kill(p.pid(), sig), 0);
  std::optional<ProcessExit> e = p.wait_exit(std::chrono::seconds(30));
  ASSERT_TRUE(e.has_value()) << "still running 30 s after signal " << sig;
  EXPECT_EQ(e->term_signal, sig);
  EXPECT_EQ(e->exit_code, -1);
  EXPECT_FALSE(exists(sock));
  json report = json::parse(read_text_file(out), nullptr, false);
  remove_tree(dir);
  ASSERT_FALSE(report.is_discarded());
  EXPECT_EQ(report["schema"], "asyncprobe.preload-blocking/1");
  // The three calls the fixture makes inside blocking_leaf(), each at its marker (the fixture's
  // header), in the order made.
  const std::vector<std::pair<std::string, std::string>> want = {
      {"usleep", "leaf_sleeps"}, {"pthread_mutex_lock", "leaf_locks"}, {"read", "leaf_reads"}};
  ASSERT_EQ(report["calls"].size(), want.size()) << report.dump(1);
  for (size_t i = 0; i < want.size(); ++i) {
    const json& c = report["calls"][i];
    EXPECT_EQ(c["call"], want[i].first);
    EXPECT_GE(c["duration_ns"].get<uint64_t>(), 59'000'000u);
    EXPECT_EQ(c["call_site"].get<std::string>().rfind(
                  "blocking_leaf() [coroutine] at " + marker_location(kSource, want[i].second), 0),
              0u)
        << c["call_site"];
  }
}

INSTANTIATE_TEST_SUITE_P(Signals, PreloadExitSignal, ::testing::Values(SIGTERM, SIGINT, SIGHUP),
                         [](const ::testing::TestParamInfo<int>& i) {
                           return std::string(sigabbrev_np(i.param));
                         });

TEST(PreloadStaleSocket, AfterSigkillTheClientSaysThePidIsGone) {
  const std::string dir = make_temp_dir("stale");
  const std::string sockets = dir + "/sockets";
  FixtureProcess p(
      run_argv({"--socket-dir", sockets}, {fixture_path("gcc12-O2", "preload_blocking")}));
  const pid_t pid = p.pid();
  const std::string sock = preload_proto::socket_path(sockets, geteuid(), pid);
  p.kill();
  EXPECT_TRUE(exists(sock));  // nothing ran in the target: the file stays
  std::string why;
  int code = 0;
  EXPECT_EQ(process::PreloadConnection::open(pid, &why, &code, sockets), nullptr);
  EXPECT_EQ(code, util::kExitNoProcess);
  EXPECT_EQ(why, "stale socket " + sock + ": pid " + std::to_string(pid) +
                     " does not exist (the socket was left by a process that died)");
  remove_tree(dir);
}

TEST(PreloadStaleSocket, ANewRunWithTheSamePidReplacesIt) {
  // In a new pid namespace the program is pid 1: its socket path is known before it starts.
  const std::string dir = make_temp_dir("replace");
  const std::string sockets = dir + "/sockets";
  ASSERT_EQ(mkdir(sockets.c_str(), 0700), 0);
  const std::string sock = preload_proto::socket_path(sockets, geteuid(), 1);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, sock.c_str(), sock.size() + 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  close(fd);  // a socket file nobody serves, as a killed run leaves it
  std::vector<std::string> argv = {"unshare", "--pid", "--fork", "--kill-child"};
  for (const auto& a :
       run_argv({"--socket-dir", sockets}, {fixture_path("gcc12-O2", "preload_service"), "--now"}))
    argv.push_back(a);
  RunResult r = run_command(argv);
  EXPECT_EQ(r.exit.exit_code, 0) << r.err;
  // Bound in place of the stale file (a failed bind would have said "snapshots over the socket
  // disabled"), and removed at exit.
  EXPECT_EQ(r.err, "");
  EXPECT_FALSE(exists(sock));
  remove_tree(dir);
}

}  // namespace
}  // namespace asyncprobe::testing
