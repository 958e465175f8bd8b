// Test support for `asyncprobe run` (LD_PRELOAD) tests: how to invoke `run`, a process runner
// that reports core dumps and can drop privileges, and small text helpers. Header-only (the
// integration tests' CMake compiles one source per test).
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/integration/fixture_process.h"

namespace asyncprobe::testing {

// A uid no account uses, for "an ordinary user" (the fixtures and the build tree are world
// readable), and a second one for "another user".
inline constexpr unsigned kTestUid = 4242;
inline constexpr unsigned kOtherUid = 4343;

inline std::string read_text_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The command that runs `asyncprobe run`.
inline std::vector<std::string> run_command_prefix() { return {asyncprobe_binary(), "run"}; }

inline std::vector<std::string> run_argv(const std::vector<std::string>& options,
                                         const std::vector<std::string>& cmd) {
  std::vector<std::string> argv = run_command_prefix();
  argv.insert(argv.end(), options.begin(), options.end());
  argv.push_back("--");
  argv.insert(argv.end(), cmd.begin(), cmd.end());
  return argv;
}

// argv prefixed to run as `uid` (util-linux setpriv).
inline std::vector<std::string> as_user(unsigned uid, std::vector<std::string> argv) {
  std::vector<std::string> out = {"setpriv", "--reuid=" + std::to_string(uid),
                                  "--regid=" + std::to_string(uid), "--clear-groups", "--"};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

struct Finished {
  int status = 0;  // raw wait status
  std::string out, err;
  bool signaled() const { return WIFSIGNALED(status); }
  int signal() const { return WIFSIGNALED(status) ? WTERMSIG(status) : 0; }
  bool core_dumped() const { return WIFSIGNALED(status) && WCOREDUMP(status); }
  int exit_code() const { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }
};

// Runs argv in `cwd` with RLIMIT_CORE set to `core_limit` and returns its raw wait status (so that
// the core-dump bit can be checked), stdout and stderr.
inline Finished run_with_status(const std::vector<std::string>& argv, const std::string& cwd,
                                rlim_t core_limit,
                                std::chrono::seconds timeout = std::chrono::seconds(120)) {
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork");
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    if (chdir(cwd.c_str()) != 0) _exit(126);
    rlimit rl{core_limit, core_limit};
    setrlimit(RLIMIT_CORE, &rl);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  Finished f;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  std::string* sinks[2] = {&f.out, &f.err};
  int open_fds = 2;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[65536];
  while (open_fds > 0 && std::chrono::steady_clock::now() < deadline) {
    if (poll(fds, 2, 200) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  if (open_fds > 0) kill(pid, SIGKILL);
  for (auto& p : fds) {
    if (p.fd >= 0) close(p.fd);
  }
  waitpid(pid, &f.status, 0);
  return f;
}

// A fresh directory under /tmp (world-writable, sticky), removed with its contents by the caller.
inline std::string make_temp_dir(const std::string& tag) {
  std::string templ = "/tmp/asyncprobe-test-" + tag + "-XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) throw std::runtime_error("mkdtemp");
  chmod(buf.data(), 0777);
  return buf.data();
}

inline void remove_tree(const std::string& dir) {
  if (dir.rfind("/tmp/asyncprobe-test-", 0) != 0) return;
  std::string cmd = "rm -rf '" + dir + "'";
  if (std::system(cmd.c_str()) != 0) {
  }
}

inline std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream s(text);
  std::string line;
  while (std::getline(s, line)) out.push_back(line);
  return out;
}

// The lines from the one starting with `header` up to (not including) the next line that does
// not start with two spaces.
inline std::vector<std::string> section(const std::string& text, const std::string& header) {
  std::vector<std::string> lines = split_lines(text), out;
  bool in = false;
  for (const auto& l : lines) {
    if (!in) {
      in = l.rfind(header, 0) == 0;
      continue;
    }
    if (l.rfind("  ", 0) != 0) break;
    out.push_back(l);
  }
  return out;
}

// "  #3  request(int) awaiting at /x.cpp:12 [frame 0x55...]" -> "request(int) awaiting at
// /x.cpp:12"
inline std::string strip_frame_decoration(std::string line) {
  size_t at = line.find("  ", 2);
  if (line.rfind("  #", 0) == 0 && at != std::string::npos) {
    size_t text = line.find_first_not_of(' ', at);
    line = line.substr(text);
  }
  size_t frame = line.find(" [frame 0x");
  if (frame != std::string::npos) line = line.substr(0, frame);
  return line;
}

}  // namespace asyncprobe::testing
