// A forked child process for unit tests that need a real second process: it runs a body with a
// command pipe and a reply pipe, and is killed and reaped when the Child goes away.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>

namespace asyncprobe::testing {

inline bool write_all(int fd, const void* p, size_t n) {
  auto* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t w = ::write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    c += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

inline bool read_all(int fd, void* p, size_t n) {
  auto* c = static_cast<char*>(p);
  while (n > 0) {
    ssize_t r = ::read(fd, c, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    c += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

// Runs body(command_fd, reply_fd) in a forked child.
class Child {
 public:
  template <typename Body>
  explicit Child(Body body) {
    int to[2];
    int from[2];
    if (::pipe2(to, O_CLOEXEC) != 0 || ::pipe2(from, O_CLOEXEC) != 0) std::abort();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(to[1]);
      ::close(from[0]);
      body(to[0], from[1]);
      ::_exit(0);
    }
    ::close(to[0]);
    ::close(from[1]);
    cmd_ = to[1];
    reply_ = from[0];
  }
  ~Child() {
    kill_and_reap();
    ::close(cmd_);
    ::close(reply_);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  int pid() const { return pid_; }
  void send(uint64_t v) { ASSERT_TRUE(write_all(cmd_, &v, sizeof v)); }
  // Waits up to 10 s for n bytes from the child.
  bool receive_bytes(void* p, size_t n) {
    struct pollfd pf = {reply_, POLLIN, 0};
    return ::poll(&pf, 1, 10000) == 1 && read_all(reply_, p, n);
  }
  // Waits up to 10 s for the child's next value.
  template <typename T = uint64_t>
  T receive() {
    T v{};
    if (!receive_bytes(&v, sizeof v)) ADD_FAILURE() << "child " << pid_ << " did not answer";
    return v;
  }
  // Waits up to 10 s for the child's one-byte "ready".
  bool wait_ready() {
    char c;
    return receive_bytes(&c, 1);
  }
  void kill_and_reap() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      reaped_ = true;
    }
  }
  // Reaps a child that exits by itself.
  void reap() {
    ::waitpid(pid_, nullptr, 0);
    reaped_ = true;
  }

 private:
  int pid_ = -1;
  int cmd_ = -1;
  int reply_ = -1;
  bool reaped_ = false;
};

}  // namespace asyncprobe::testing
