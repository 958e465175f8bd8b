// Benchmark: what in-process resume tracing adds to one coroutine resume, next to a kernel
// uprobe on the same resume function. One coroutine is resumed in bursts (a burst stays below
// the tracer's per-thread event ring, and the pause after it lets a live session drain the ring,
// so events are recorded, not dropped); only the bursts are timed.
//
// usage: preload_resume_bench [--bursts B] [--burst N] [--pause-ms P] [--uprobe] [--session]
//   --uprobe   attach a kernel uprobe (perf_event_open, this process only) to the resume function
//   --session  run an in-process trace session with events through the library's socket (needs
//              `asyncprobe run --trace`), the way `asyncprobe trace -p PID` records
// Prints one line: mode=... resumes=N ns_per_resume=X [uprobe_hits=N] [events=N lost=N]
#include <linux/perf_event.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "userspace/preload/protocol.h"
#include "userspace/process/preload_client.h"

namespace {

struct spinner {
  struct promise_type {
    spinner get_return_object() {
      return spinner{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    void return_void() {}
    void unhandled_exception() { std::abort(); }
  };
  std::coroutine_handle<promise_type> h;
};

volatile uint64_t g_sink = 0;

__attribute__((noinline)) spinner spin() {
  for (uint64_t i = 0;; ++i) {
    g_sink = i;
    co_await std::suspend_always{};
  }
}

long option(int argc, char** argv, const char* name, long fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return std::strtol(argv[i + 1], nullptr, 10);
  }
  return fallback;
}

bool flag(int argc, char** argv, const char* name) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return true;
  }
  return false;
}

// A uprobe on `addr` (code of this process) counting hits, through the perf "uprobe" PMU.
int open_uprobe(uint64_t addr, std::string* why) {
  std::ifstream type_file("/sys/bus/event_source/devices/uprobe/type");
  int type = -1;
  if (!(type_file >> type)) {
    *why = "no uprobe PMU";
    return -1;
  }
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    unsigned long long lo, hi, off;
    char perms[8];
    int path_at = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx %7s %llx %*s %*s %n", &lo, &hi, perms, &off,
                    &path_at) < 4)
      continue;
    if (addr < lo || addr >= hi || path_at <= 0) continue;
    static std::string path;
    path = line.substr(static_cast<size_t>(path_at));
    perf_event_attr attr{};
    attr.size = sizeof attr;
    attr.type = static_cast<uint32_t>(type);
    attr.config1 = reinterpret_cast<uint64_t>(path.c_str());
    attr.config2 = addr - lo + off;
    int fd = static_cast<int>(syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0));
    if (fd < 0) *why = std::string("perf_event_open: ") + std::strerror(errno);
    return fd;
  }
  *why = "resume function not in a file mapping";
  return -1;
}

// With a live session, waits for a whole poll of the ring after this moment.
void wait_for_poll(bool session, const std::atomic<uint64_t>& polls) {
  for (uint64_t p = polls.load(); session && polls.load() < p + 2;)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

// Nanoseconds per resume of each of `bursts` bursts of `burst` resumes, after one warm-up burst;
// a session's ring is drained between bursts, outside the timed part.
std::vector<double> time_bursts(spinner& s, long bursts, long burst, long pause_ms, bool session,
                                const std::atomic<uint64_t>& polls) {
  for (long i = 0; i < burst; ++i) s.h.resume();
  wait_for_poll(session, polls);
  std::vector<double> per_burst;
  for (long b = 0; b < bursts; ++b) {
    auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < burst; ++i) s.h.resume();
    auto t1 = std::chrono::steady_clock::now();
    per_burst.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() /
                        static_cast<double>(burst));
    if (pause_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
    wait_for_poll(session, polls);
  }
  return per_burst;
}

}  // namespace

int main(int argc, char** argv) {
  const long bursts = option(argc, argv, "--bursts", 200);
  const long burst = option(argc, argv, "--burst", 50000);
  const long pause_ms = option(argc, argv, "--pause-ms", 12);
  const bool uprobe = flag(argc, argv, "--uprobe");
  const bool session = flag(argc, argv, "--session");

  spinner s = spin();
  s.h.resume();  // to the first co_await
  uint64_t resume_fn = 0;
  std::memcpy(&resume_fn, s.h.address(), sizeof resume_fn);

  int probe = -1;
  if (uprobe) {
    std::string why;
    probe = open_uprobe(resume_fn, &why);
    if (probe < 0) {
      std::fprintf(stderr, "preload_resume_bench: %s\n", why.c_str());
      return 1;
    }
  }
  std::unique_ptr<asyncprobe::process::PreloadConnection> conn;
  std::thread poller;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> polls{0};
  uint64_t events = 0, lost = 0;
  if (session) {
    std::string why;
    conn = asyncprobe::process::PreloadConnection::open(getpid(), &why);
    uint64_t start_ns = 0;
    if (conn == nullptr || !conn->trace_start(true, &start_ns, &why)) {
      std::fprintf(stderr, "preload_resume_bench: %s\n", why.c_str());
      return 1;
    }
    poller = std::thread([&] {
      asyncprobe::process::PreloadConnection::TracePoll p;
      std::string w;
      while (!stop) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        if (conn->trace_poll(&p, false, &w)) events += p.events.size();
        polls++;
      }
      if (conn->trace_poll(&p, true, &w)) {
        events += p.events.size();
        lost = p.lost_events;
      }
    });
  }

  std::vector<double> per_burst = time_bursts(s, bursts, burst, pause_ms, session, polls);
  if (session) {
    stop = true;
    poller.join();
  }
  std::sort(per_burst.begin(), per_burst.end());
  double median = per_burst[per_burst.size() / 2];
  std::printf("mode=%s resumes=%ld ns_per_resume=%.2f min=%.2f",
              uprobe    ? "uprobe"
              : session ? "session"
                        : "run",
              bursts * burst, median, per_burst.front());
  if (probe >= 0) {
    uint64_t hits = 0;
    if (read(probe, &hits, sizeof hits) != sizeof hits) hits = 0;
    std::printf(" uprobe_hits=%llu", static_cast<unsigned long long>(hits));
  }
  if (session)
    std::printf(" events=%llu lost=%llu", static_cast<unsigned long long>(events),
                static_cast<unsigned long long>(lost));
  std::printf("\n");
  s.h.destroy();
  return 0;
}
