// Test support for the `asyncprobe trace` integration tests (header-only, used by trace_test.cpp
// and trace_many_test.cpp): run the tracer as a separate process with its output in files, wait
// for it to have attached, stop it with a signal, and look at the BPF objects it owns.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/fixture_process.h"

namespace asyncprobe::testing {

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// argv prefix that runs `trace`.
inline std::vector<std::string> tracer_argv() { return {asyncprobe_binary(), "trace"}; }

// A scratch directory under the build tree, removed by the destructor.
class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = fixture_dir() + "/../trace-test-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (mkdtemp(buf.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = buf.data();
  }
  ~ScratchDir() {
    if (std::getenv("ASYNCPROBE_KEEP_TEST_FILES") == nullptr) {
      std::string cmd = "rm -rf '" + path_ + "'";
      if (std::system(cmd.c_str()) != 0) {
      }
    }
  }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The tracer as a child process; stdout and stderr go to files in `dir`. `command` is the
// argv prefix: `trace` by default, or e.g. {asyncprobe_binary(), "profile"}.
class TracerProcess {
 public:
  TracerProcess(const std::vector<std::string>& args, const std::string& dir,
                const std::vector<std::string>& env = {},
                const std::vector<std::string>& command = tracer_argv())
      : out_(dir + "/tracer.out"), err_(dir + "/tracer.err") {
    std::vector<std::string> argv = command;
    argv.insert(argv.end(), args.begin(), args.end());
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      int in = open("/dev/null", O_RDONLY);
      int o = open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int e = open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (in < 0 || o < 0 || e < 0) _exit(127);
      dup2(in, 0);
      dup2(o, 1);
      dup2(e, 2);
      for (const auto& kv : env) putenv(const_cast<char*>(kv.c_str()));
      std::vector<char*> cargv;
      for (auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
      cargv.push_back(nullptr);
      execv(cargv[0], cargv.data());
      _exit(127);
    }
  }
  ~TracerProcess() {
    if (!exit_) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      waitpid(pid_, &st, 0);
    }
  }
  TracerProcess(const TracerProcess&) = delete;
  TracerProcess& operator=(const TracerProcess&) = delete;

  pid_t pid() const { return pid_; }
  std::string out() const { return read_file(out_); }
  std::string err() const { return read_file(err_); }

  // Waits for `said` ("asyncprobe: tracing pid") on stderr: every probe is attached.
  bool wait_attached(std::chrono::milliseconds timeout = std::chrono::seconds(60),
                     const std::string& said = "asyncprobe: tracing pid") {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      if (err().find(said) != std::string::npos) return true;
      if (wait_exit(std::chrono::milliseconds(0))) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  void signal(int sig) { ::kill(pid_, sig); }
  std::optional<ProcessExit> wait_exit(std::chrono::milliseconds timeout) {
    if (exit_) return exit_;
    auto until = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      int st = 0;
      pid_t r = waitpid(pid_, &st, WNOHANG);
      if (r == pid_) {
        ProcessExit e;
        if (WIFEXITED(st)) e.exit_code = WEXITSTATUS(st);
        if (WIFSIGNALED(st)) e.term_signal = WTERMSIG(st);
        exit_ = e;
        return exit_;
      }
      if (std::chrono::steady_clock::now() >= until) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

 private:
  std::string out_, err_;
  pid_t pid_ = -1;
  std::optional<ProcessExit> exit_;
};

// BPF objects a process holds open, from /proc/PID/fdinfo: link ids and program ids.
struct BpfHoldings {
  std::set<unsigned> links;
  std::set<unsigned> progs;
};

inline BpfHoldings bpf_holdings(pid_t pid) {
  BpfHoldings h;
  const std::string dir = "/proc/" + std::to_string(pid) + "/fdinfo";
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return h;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream in(dir + "/" + e->d_name);
    std::string line;
    while (std::getline(in, line)) {
      unsigned v = 0;
      if (std::sscanf(line.c_str(), "link_id: %u", &v) == 1) h.links.insert(v);
      if (std::sscanf(line.c_str(), "prog_id: %u", &v) == 1) h.progs.insert(v);
    }
  }
  closedir(d);
  return h;
}

// Whether bpftool still shows a link / program with this id.
inline bool bpf_link_exists(unsigned id) {
  RunResult r =
      run_command({"bpftool", "link", "show", "id", std::to_string(id)}, std::chrono::seconds(20));
  return r.exit.exit_code == 0;
}
inline bool bpf_prog_exists(unsigned id) {
  RunResult r =
      run_command({"bpftool", "prog", "show", "id", std::to_string(id)}, std::chrono::seconds(20));
  return r.exit.exit_code == 0;
}

// The 1-based line of "// @line <name>" in a source file (for lines that are not awaits).
inline int line_marker(const std::string& source_path, const std::string& name) {
  std::ifstream in(source_path);
  std::string line;
  const std::string marker = "// @line " + name;
  int n = 0, found = 0;
  while (std::getline(in, line)) {
    ++n;
    auto at = line.find(marker);
    if (at != std::string::npos && at + marker.size() == line.size()) {
      if (found != 0) throw std::runtime_error("duplicate marker " + name);
      found = n;
    }
  }
  if (found == 0) throw std::runtime_error("no marker " + name + " in " + source_path);
  return found;
}

}  // namespace asyncprobe::testing
