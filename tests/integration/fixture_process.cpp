#include "tests/integration/fixture_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace asyncprobe::testing {
namespace {

using steady = std::chrono::steady_clock;

std::runtime_error system_error(const std::string& what) {
  return std::runtime_error(what + ": " + std::strerror(errno));
}

ProcessExit decode_status(int status) {
  ProcessExit result;
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.term_signal = WTERMSIG(status);
  return result;
}

std::string describe(const ProcessExit& e) {
  if (e.term_signal > 0) return "killed by signal " + std::to_string(e.term_signal);
  return "exited with status " + std::to_string(e.exit_code);
}

std::string join(const std::vector<std::string>& argv) {
  std::string out;
  for (const std::string& a : argv) out += (out.empty() ? "" : " ") + a;
  return out;
}

int remaining_ms(steady::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now());
  return static_cast<int>(std::max<long>(0, left.count()));
}

// Forks and execs argv with stdin from /dev/null and the given fds as stdout/stderr (-1 keeps the
// parent's). Everything the child needs is prepared before fork: after fork only async-signal-safe
// calls are allowed, and the test process has threads.
pid_t spawn(const std::vector<std::string>& argv, int stdout_fd, int stderr_fd) {
  if (argv.empty()) throw std::runtime_error("spawn: empty argv");
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const int dev_null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (dev_null < 0) throw system_error("open /dev/null");
  const pid_t parent = ::getpid();
  const std::string exec_failed = "exec " + argv[0] + " failed\n";

  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(dev_null);
    throw system_error("fork");
  }
  if (pid == 0) {
    // No fixture may outlive a crashed test; the getppid check closes the race with prctl.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::dup2(dev_null, STDIN_FILENO);
    if (stdout_fd >= 0) ::dup2(stdout_fd, STDOUT_FILENO);
    if (stderr_fd >= 0) ::dup2(stderr_fd, STDERR_FILENO);
    ::execvp(args[0], args.data());
    ssize_t ignored = ::write(STDERR_FILENO, exec_failed.data(), exec_failed.size());
    (void)ignored;
    ::_exit(127);
  }
  ::close(dev_null);
  return pid;
}

void make_pipe(int fds[2]) {
  if (::pipe2(fds, O_CLOEXEC) != 0) throw system_error("pipe2");
}

std::string getenv_or(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : fallback;
}

}  // namespace

RunResult run_command(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  int out_pipe[2];
  int err_pipe[2];
  make_pipe(out_pipe);
  try {
    make_pipe(err_pipe);
  } catch (...) {
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    throw;
  }
  pid_t pid;
  try {
    pid = spawn(argv, out_pipe[1], err_pipe[1]);
  } catch (...) {
    for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) ::close(fd);
    throw;
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);

  RunResult result;
  const steady::time_point deadline = steady::now() + timeout;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_count = 2;
  char buffer[65536];
  // Both pipes are drained together so that a child filling one of them never blocks.
  while (open_count > 0) {
    const int wait_ms = remaining_ms(deadline);
    if (wait_ms == 0) {
      result.timed_out = true;
      break;
    }
    const int ready = ::poll(fds, 2, wait_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t n = ::read(fds[i].fd, buffer, sizeof buffer);
      if (n > 0) {
        sinks[i]->append(buffer, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_count;
      }
    }
  }
  for (const pollfd& p : fds)
    if (p.fd >= 0) ::close(p.fd);

  if (result.timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit = decode_status(status);
  return result;
}

FixtureProcess::FixtureProcess(std::vector<std::string> argv,
                               std::chrono::milliseconds ready_timeout)
    : argv_(std::move(argv)) {
  int out_pipe[2];
  make_pipe(out_pipe);
  try {
    pid_ = spawn(argv_, out_pipe[1], -1);
  } catch (...) {
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    throw;
  }
  ::close(out_pipe[1]);
  stdout_fd_ = out_pipe[0];

  // The destructor does not run when a constructor throws: clean up here on every failure.
  const steady::time_point deadline = steady::now() + ready_timeout;
  std::string before_ready;
  for (;;) {
    std::optional<std::string> line =
        read_line(std::chrono::milliseconds(std::max(1, remaining_ms(deadline))));
    if (!line) {
      std::string why;
      if (std::optional<ProcessExit> ended = wait_exit(std::chrono::milliseconds(200))) {
        why = describe(*ended);
      } else {
        why = "no READY line within " + std::to_string(ready_timeout.count()) + " ms";
      }
      kill();
      ::close(stdout_fd_);
      throw std::runtime_error(join(argv_) + ": " + why + "; stdout before READY: [" +
                               before_ready + "]");
    }
    if (line->rfind("READY ", 0) != 0) {
      before_ready += *line + "\n";
      continue;
    }
    std::istringstream words(line->substr(6));
    std::string pid_word;
    words >> pid_word;
    if (pid_word != std::to_string(pid_)) {
      kill();
      ::close(stdout_fd_);
      throw std::runtime_error(join(argv_) + ": READY names pid " + pid_word + ", child is " +
                               std::to_string(pid_));
    }
    for (std::string word; words >> word;) {
      const std::size_t eq = word.find('=');
      if (eq == std::string::npos) continue;
      tokens_[word.substr(0, eq)] = word.substr(eq + 1);
    }
    return;
  }
}

FixtureProcess::~FixtureProcess() {
  kill();
  if (stdout_fd_ >= 0) ::close(stdout_fd_);
}

const std::string& FixtureProcess::token(const std::string& key) const {
  auto it = tokens_.find(key);
  if (it == tokens_.end()) throw std::out_of_range("READY line has no token " + key);
  return it->second;
}

long FixtureProcess::token_int(const std::string& key) const { return std::stol(token(key)); }

std::optional<std::string> FixtureProcess::read_line(std::chrono::milliseconds timeout) {
  const steady::time_point deadline = steady::now() + timeout;
  for (;;) {
    const std::size_t newline = pending_.find('\n');
    if (newline != std::string::npos) {
      std::string line = pending_.substr(0, newline);
      pending_.erase(0, newline + 1);
      return line;
    }
    if (stdout_fd_ < 0) return std::nullopt;
    pollfd p{stdout_fd_, POLLIN, 0};
    const int ready = ::poll(&p, 1, remaining_ms(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return std::nullopt;
    char buffer[4096];
    const ssize_t n = ::read(stdout_fd_, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // End of output: keep the fd closed so later calls return at once.
      ::close(stdout_fd_);
      stdout_fd_ = -1;
      continue;
    }
    pending_.append(buffer, static_cast<std::size_t>(n));
  }
}

std::optional<ProcessExit> FixtureProcess::wait_exit(std::chrono::milliseconds timeout) {
  if (exit_) return exit_;
  const steady::time_point deadline = steady::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t reaped = ::waitpid(pid_, &status, WNOHANG);
    if (reaped == pid_) {
      exit_ = decode_status(status);
      return exit_;
    }
    if (reaped < 0 && errno != EINTR) throw system_error("waitpid " + std::to_string(pid_));
    if (steady::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

bool FixtureProcess::running() { return !wait_exit(std::chrono::milliseconds(0)); }

void FixtureProcess::kill() {
  if (exit_ || pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  exit_ = decode_status(status);
}

std::string fixture_dir() { return getenv_or("ASYNCPROBE_FIXTURE_DIR", ASYNCPROBE_FIXTURE_DIR); }

std::string fixture_path(const std::string& variant, const std::string& name) {
  return fixture_dir() + "/" + variant + "/" + name;
}

std::vector<std::pair<std::string, std::string>> fixture_manifest() {
  const std::string path = fixture_dir() + "/MANIFEST";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path + ": build the fixtures target first");
  std::vector<std::pair<std::string, std::string>> entries;
  std::string variant;
  std::string file;
  while (in >> variant >> file) entries.emplace_back(variant, file);
  return entries;
}

std::vector<std::string> fixture_variants() {
  std::vector<std::string> variants;
  for (const auto& [variant, file] : fixture_manifest()) {
    if (std::find(variants.begin(), variants.end(), variant) == variants.end()) {
      variants.push_back(variant);
    }
  }
  return variants;
}

std::vector<std::string> fixture_variants_with(const std::string& name) {
  std::vector<std::string> variants;
  for (const auto& [variant, file] : fixture_manifest()) {
    if (file == name) variants.push_back(variant);
  }
  return variants;
}

std::string source_dir() { return ASYNCPROBE_SOURCE_DIR; }

std::string asyncprobe_binary() { return getenv_or("ASYNCPROBE_BINARY", ASYNCPROBE_BINARY); }

std::string test_name_of_variant(std::string variant) {
  for (char& c : variant) {
    if (c == '-') c = '_';
  }
  return variant;
}

}  // namespace asyncprobe::testing
