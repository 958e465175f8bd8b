// The `asyncprobe run` socket under hostile and heavy clients of the target's own user: clients
// that stall half-way through a request, dribble one byte at a time, hold idle connections, do
// not read their replies, or arrive 200 at once. Each time an ordinary `asyncprobe -p PID` (same
// user, non-dumpable target: the socket is its only way in) still gets its snapshot within 1 s of
// its unloaded time, the bad clients are cut at the documented deadlines (docs/PRELOAD.md,
// "Socket protocol"), and when every slot is truly held the CLI says "busy" (exit 9).
#include <gtest/gtest.h>

#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/fixture_process.h"
#include "tests/integration/preload_support.h"
#include "userspace/preload/protocol.h"
#include "userspace/util/exit_codes.h"

namespace asyncprobe::testing {
namespace {

namespace proto = preload_proto;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

int dial(pid_t pid) {
  std::string path = proto::socket_path("", kTestUid, pid);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  return fd;
}

// utime + stime of the process, in clock ticks (/proc/PID/stat).
long cpu_ticks(pid_t pid) {
  std::string stat = read_text_file("/proc/" + std::to_string(pid) + "/stat");
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string f;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14) utime = std::stol(f);
    if (i == 15) stime = std::stol(f);
  }
  return utime + stime;
}

proto::RequestHeader header(uint16_t op, uint32_t payload) {
  return {proto::kMagic, op, proto::kVersion, payload, 0};
}

bool send_bytes(int fd, const void* p, size_t n) {
  return send(fd, p, n, MSG_NOSIGNAL) == static_cast<ssize_t>(n);
}

// Seconds until the library closes `fd` (end of file or reset; reply bytes are skipped), or -1
// when it is still open after `limit` seconds.
double seconds_until_closed(int fd, Clock::time_point since, double limit) {
  char buf[65536];
  while (seconds_since(since) < limit) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return seconds_since(since);
  }
  return -1;
}

// Clients run by kTestUid in a child process: `start` opens them and returns once they are in
// the wanted state, with a function that reports on them (called at release, in the child).
class HeldClients {
 public:
  using Start = std::function<std::function<std::string()>()>;
  explicit HeldClients(Start start) {
    int ready[2], control[2];
    if (pipe(ready) != 0 || pipe(control) != 0) throw std::runtime_error("pipe");
    pid_ = fork();
    if (pid_ == 0) {
      close(ready[0]);
      close(control[1]);
      if (setgroups(0, nullptr) != 0 || setresgid(kTestUid, kTestUid, kTestUid) != 0 ||
          setresuid(kTestUid, kTestUid, kTestUid) != 0)
        _exit(3);
      std::function<std::string()> report = start();
      if (write(ready[1], "R", 1) != 1) _exit(4);
      char c;
      while (read(control[0], &c, 1) > 0) {
      }
      std::string text = report();
      if (write(ready[1], text.data(), text.size()) < 0) _exit(5);
      _exit(0);
    }
    close(ready[1]);
    close(control[0]);
    from_child_ = ready[0];
    to_child_ = control[1];
    char c = 0;
    if (read(from_child_, &c, 1) != 1 || c != 'R') throw std::runtime_error("clients not ready");
  }
  // Ends the clients and returns their report.
  std::string release() {
    close(to_child_);
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = read(from_child_, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    close(from_child_);
    int status = 0;
    waitpid(pid_, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "clients' status " << status;
    return out;
  }

 private:
  pid_t pid_ = -1;
  int from_child_ = -1, to_child_ = -1;
};

struct Timed {
  RunResult r;
  double seconds = 0;
};

class PreloadSocketLoad : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    service_ = new FixtureProcess(as_user(
        kTestUid, run_argv({}, {fixture_path("gcc12-O2", "preload_service"), "--nondumpable"})));
    // Unloaded: the tables ready, then the time a snapshot takes and its report.
    for (int i = 0; i < 300; ++i) {
      Timed t = snapshot();
      if (t.r.exit.exit_code == 0 && t.r.out.find("service_leaf") != std::string::npos) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    Timed t = snapshot();
    baseline_ = new Timed(t);
  }
  static void TearDownTestSuite() {
    delete service_;
    delete baseline_;
    service_ = nullptr;
    baseline_ = nullptr;
  }
  static Timed snapshot() {
    Timed t;
    auto start = Clock::now();
    t.r = run_command(
        as_user(kTestUid, {asyncprobe_binary(), "-p", std::to_string(pid()), "--window", "0"}),
        std::chrono::seconds(60));
    t.seconds = seconds_since(start);
    return t;
  }
  // What a snapshot says that does not change from one look to the next: the summary (without
  // the scan's timing) and the async stacks.
  static std::string essentials(const std::string& report) {
    std::string head = report.substr(0, report.find("; scanned"));
    std::string out = head + "\n";
    size_t at = report.find("\nASYNC STACKS");
    if (at != std::string::npos) out += report.substr(at, report.find("\n\n", at + 1) - at);
    return out;
  }
  // A snapshot taken now is the unloaded one, and no more than 1 s slower.
  static void expect_normal_snapshot() {
    ASSERT_EQ(baseline_->r.exit.exit_code, 0) << baseline_->r.err;
    Timed t = snapshot();
    EXPECT_EQ(t.r.exit.exit_code, 0) << t.r.err;
    EXPECT_EQ(essentials(t.r.out), essentials(baseline_->r.out));
    std::cout << "snapshot: " << t.seconds << " s loaded, " << baseline_->seconds
              << " s unloaded\n";
    EXPECT_LT(t.seconds, baseline_->seconds + 1.0) << "unloaded " << baseline_->seconds << " s";
  }
  static pid_t pid() { return service_->pid(); }
  static FixtureProcess* service_;
  static Timed* baseline_;
};

FixtureProcess* PreloadSocketLoad::service_ = nullptr;
Timed* PreloadSocketLoad::baseline_ = nullptr;

TEST_F(PreloadSocketLoad, ClientsStalledHalfWayThroughAHeaderDelayNobodyAndAreCutAt2s) {
  pid_t target = pid();
  HeldClients held([target] {
    auto fds = std::make_shared<std::vector<int>>();
    auto at = Clock::now();
    for (int i = 0; i < 6; ++i) {
      int fd = dial(target);
      proto::RequestHeader h = header(proto::kHello, 0);
      if (fd >= 0 && send_bytes(fd, &h, sizeof h / 2)) fds->push_back(fd);
    }
    return std::function<std::string()>([fds, at] {
      std::string out;
      for (int fd : *fds) {
        double s = seconds_until_closed(fd, at, 6.0);
        out += s >= 1.9 && s < 3.5 ? "cut " : "open-or-early(" + std::to_string(s) + ") ";
      }
      return out;
    });
  });
  expect_normal_snapshot();
  EXPECT_EQ(held.release(), "cut cut cut cut cut cut ");
}

TEST_F(PreloadSocketLoad, AClientDribblingOneByteAtATimeIsCutAtTheRequestDeadline) {
  pid_t target = pid();
  HeldClients held([target] {
    int fd = dial(target);
    auto result = std::make_shared<std::atomic<double>>(-2);
    std::thread([fd, result] {
      proto::RequestHeader h = header(proto::kHello, 0);
      auto at = Clock::now();
      const char* p = reinterpret_cast<const char*>(&h);
      for (size_t i = 0; i < sizeof h; ++i) {
        if (!send_bytes(fd, p + i, 1)) {
          *result = seconds_since(at);  // the library closed the connection
          return;
        }
        // Closed between two bytes?
        double s = seconds_until_closed(fd, Clock::now(), 0.3);
        if (s >= 0) {
          *result = seconds_since(at);
          return;
        }
      }
      *result = -1;  // the whole header went through
    }).detach();
    return std::function<std::string()>([result] {
      while (*result == -2) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      double s = *result;
      return s >= 1.9 && s < 3.5 ? std::string("cut") : "not cut at 2 s: " + std::to_string(s);
    });
  });
  expect_normal_snapshot();
  EXPECT_EQ(held.release(), "cut");
}

TEST_F(PreloadSocketLoad, FortyIdleConnectionsLeaveRoomForASnapshot) {
  pid_t target = pid();
  HeldClients held([target] {
    auto fds = std::make_shared<std::vector<int>>();
    for (int i = 0; i < 40; ++i) {
      int fd = dial(target);
      if (fd >= 0) fds->push_back(fd);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // idle long enough to yield
    return std::function<std::string()>(
        [fds] { return std::to_string(fds->size()) + " connected"; });
  });
  // A full table of idle connections costs the target nothing while nobody else waits.
  long before = cpu_ticks(target);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_LE(cpu_ticks(target) - before, 5) << "clock ticks of CPU in 1 s";
  expect_normal_snapshot();
  EXPECT_EQ(held.release(), "40 connected");
}

TEST_F(PreloadSocketLoad, TwoHundredConcurrentClientsAreAllAnswered) {
  pid_t target = pid();
  HeldClients held([target] {
    auto answered = std::make_shared<std::atomic<int>>(0);
    auto refused = std::make_shared<std::atomic<int>>(0);
    std::vector<std::thread> threads;
    std::atomic<bool> go{false};
    for (int i = 0; i < 200; ++i) {
      threads.emplace_back([&go, target, answered, refused] {
        while (!go) std::this_thread::yield();
        int fd = dial(target);
        if (fd < 0) {
          ++*refused;
          return;
        }
        timeval tv{10, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        proto::RequestHeader h = header(proto::kHello, 0);
        proto::ReplyHeader reply{};
        if (send_bytes(fd, &h, sizeof h) &&
            recv(fd, &reply, sizeof reply, MSG_WAITALL) == sizeof reply &&
            reply.status == proto::kOk && reply.payload_bytes == sizeof(proto::HelloReply))
          ++*answered;
        close(fd);
      });
    }
    go = true;
    for (auto& t : threads) t.join();
    return std::function<std::string()>([answered, refused] {
      return std::to_string(*answered) + " answered, " + std::to_string(*refused) + " refused";
    });
  });
  EXPECT_EQ(held.release(), "200 answered, 0 refused");
  expect_normal_snapshot();
}

TEST_F(PreloadSocketLoad, WhenEverySlotHoldsAnUnreadReplyTheCliSaysBusyThenRecovers) {
  pid_t target = pid();
  auto start = Clock::now();
  HeldClients held([target] {
    // 32 connections (every slot), each with a 64 MiB reply it never reads: held until the
    // 10 s reply deadline.
    auto fds = std::make_shared<std::vector<int>>();
    for (int i = 0; i < 32; ++i) {
      int fd = dial(target);
      proto::RequestHeader h = header(proto::kReadMemory, sizeof(proto::ReadRequest));
      proto::ReadRequest rq{0x1000, proto::kMaxRead};
      if (fd >= 0 && send_bytes(fd, &h, sizeof h) && send_bytes(fd, &rq, sizeof rq))
        fds->push_back(fd);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    return std::function<std::string()>([fds] { return std::to_string(fds->size()); });
  });
  Timed t = snapshot();
  EXPECT_EQ(t.r.exit.exit_code, util::kExitBusy) << t.r.err;
  EXPECT_NE(t.r.err.find("asyncprobe socket is busy: no answer within 5 s"), std::string::npos)
      << t.r.err;
  EXPECT_GE(t.seconds, 4.9);
  EXPECT_LT(t.seconds, 8.0);
  // The reply deadline (10 s) frees the slots, with the clients still holding their ends.
  while (seconds_since(start) < 10.5) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  expect_normal_snapshot();
  EXPECT_EQ(held.release(), "32");
}

}  // namespace
}  // namespace asyncprobe::testing
