// Test support for integration tests: start a fixture program as a real child process and wait
// until it says READY, run a command and capture its output, and find the built fixtures.
//
// Paths come from compile definitions set by tests/integration/CMakeLists.txt:
// ASYNCPROBE_FIXTURE_DIR (build/fixtures), ASYNCPROBE_SOURCE_DIR, ASYNCPROBE_BINARY. The
// environment variables ASYNCPROBE_FIXTURE_DIR and ASYNCPROBE_BINARY, when set, override them
// (e.g. to run one test binary against another build).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace asyncprobe::testing {

// How a child process ended: exit_code >= 0 when it exited, term_signal > 0 when a signal killed
// it.
struct ProcessExit {
  int exit_code = -1;
  int term_signal = 0;
};

struct RunResult {
  ProcessExit exit;
  bool timed_out = false;  // killed with SIGKILL when the timeout passed
  std::string out;
  std::string err;
};

// Runs argv[0] (looked up in PATH when it has no '/') with stdin from /dev/null, and returns its
// stdout, stderr and how it ended. Throws std::runtime_error when the process cannot be started.
RunResult run_command(const std::vector<std::string>& argv,
                      std::chrono::milliseconds timeout = std::chrono::seconds(60));

// A fixture program running as a separate child process. The constructor returns once the child
// has printed "READY <pid> [key=value ...]" on stdout; the destructor kills (SIGKILL) and reaps it.
// The child also gets SIGKILL if the test process dies first, so no fixture outlives its test.
class FixtureProcess {
 public:
  // Throws std::runtime_error (with what the child printed and how it ended) when it exits or
  // stays silent for ready_timeout, or prints a READY line with a different pid.
  explicit FixtureProcess(std::vector<std::string> argv,
                          std::chrono::milliseconds ready_timeout = std::chrono::seconds(20));
  ~FixtureProcess();
  FixtureProcess(const FixtureProcess&) = delete;
  FixtureProcess& operator=(const FixtureProcess&) = delete;

  pid_t pid() const { return pid_; }
  const std::vector<std::string>& argv() const { return argv_; }
  // The key=value tokens of the READY line, e.g. {"port": "40213"}.
  const std::map<std::string, std::string>& tokens() const { return tokens_; }
  // One token's value; throws std::out_of_range when the READY line did not carry it.
  const std::string& token(const std::string& key) const;
  long token_int(const std::string& key) const;

  // The next stdout line after READY (without '\n'), or nullopt on timeout or end of output.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout);
  // Waits for the child to end by itself; nullopt if it is still running after timeout.
  std::optional<ProcessExit> wait_exit(std::chrono::milliseconds timeout);
  // True while the child has not been reaped and has not exited.
  bool running();
  // SIGKILLs and reaps now; what the destructor does. Safe to call twice.
  void kill();

 private:
  std::vector<std::string> argv_;
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::string pending_;  // bytes read from stdout that do not yet form a whole line
  std::map<std::string, std::string> tokens_;
  std::optional<ProcessExit> exit_;  // set once reaped
};

// build/fixtures, and the path of one built fixture: fixture_path("gcc12-O2", "chain").
// A fixture variant ("gcc12-O2") as a gtest parameter name ("gcc12_O2").
std::string test_name_of_variant(std::string variant);
// For INSTANTIATE_TEST_SUITE_P over fixture_variants_with(...).
struct VariantTestName {
  template <typename Info>
  std::string operator()(const Info& info) const {
    return test_name_of_variant(info.param);
  }
};

std::string fixture_dir();
std::string fixture_path(const std::string& variant, const std::string& name);
// Every "<variant> <relative path>" line of build/fixtures/MANIFEST, in build order.
std::vector<std::pair<std::string, std::string>> fixture_manifest();
// Distinct variants in the manifest, e.g. gcc12-O0, gcc12-O2, gcc12-O3, clang14-O0, ...
std::vector<std::string> fixture_variants();
// Variants that built `name` (e.g. "asio_server" only exists for a few).
std::vector<std::string> fixture_variants_with(const std::string& name);
// The source tree root, and the asyncprobe binary (which may not exist yet).
std::string source_dir();
std::string asyncprobe_binary();

}  // namespace asyncprobe::testing
