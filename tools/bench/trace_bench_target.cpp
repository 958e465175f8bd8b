// The program tools/bench/trace_bench measures: a coroutine ping-pong on one thread (ping
// transfers symmetrically to pong, pong suspends back: two resumes per round), driven by commands
// on stdin, answering on stdout:
//   run N          N resumes as fast as possible  -> "ns_per_resume <cpu> <wall>": this thread's
//                  CPU time (user + kernel, so the uprobe traps count) and wall time per resume
//   pace R S T     R resumes per second in all for S seconds, shared by T threads (each with its
//                  own ping-pong, busy-waiting between rounds)
//                                                 -> "paced resumes=<n> seconds=<float>"
//   quit           exits 0
// Prints "READY <pid>" first.
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

struct task {
  struct promise_type {
    task get_return_object() {
      return task{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    void return_void() {}
    void unhandled_exception() { std::abort(); }
  };
  std::coroutine_handle<promise_type> h;
};

std::atomic<uint64_t> resumes{0};

// CPU time of this thread: other load on the machine does not inflate it.
double thread_cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

struct switch_to {
  std::coroutine_handle<> next;
  bool await_ready() const noexcept { return false; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<>) const noexcept { return next; }
  void await_resume() const noexcept {}
};

}  // namespace

task bench_pong() {
  for (;;) {
    resumes.fetch_add(1, std::memory_order_relaxed);
    co_await std::suspend_always{};
  }
}

task bench_ping(std::coroutine_handle<> partner) {
  for (;;) {
    resumes.fetch_add(1, std::memory_order_relaxed);
    co_await switch_to{partner};
  }
}

int main() {
  task pong = bench_pong();
  task ping = bench_ping(pong.h);
  // First resumes happen here, so that every measured resume is at the same suspend points.
  ping.h.resume();
  std::printf("READY %d\n", static_cast<int>(getpid()));
  std::fflush(stdout);
  using clock = std::chrono::steady_clock;
  std::string cmd;
  while (std::cin >> cmd) {
    if (cmd == "run") {
      uint64_t n = 0;
      std::cin >> n;
      const uint64_t rounds = n / 2;
      auto t0 = clock::now();
      const double c0 = thread_cpu_ns();
      for (uint64_t i = 0; i < rounds; ++i) ping.h.resume();
      const double cpu = thread_cpu_ns() - c0;
      double ns = std::chrono::duration<double, std::nano>(clock::now() - t0).count();
      std::printf("ns_per_resume %.3f %.3f\n", cpu / static_cast<double>(rounds * 2),
                  ns / static_cast<double>(rounds * 2));
    } else if (cmd == "pace") {
      double rate = 0, seconds = 0;
      int threads = 1;
      std::cin >> rate >> seconds >> threads;
      threads = std::max(1, std::min(threads, 64));
      const uint64_t before = resumes.load();
      const auto t0 = clock::now();
      const auto end =
          t0 + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(seconds));
      const auto step = std::chrono::duration_cast<clock::duration>(
          std::chrono::duration<double>(2.0 * threads / rate));
      auto pace = [&](std::coroutine_handle<> driver) {
        auto next = t0;
        while (next < end) {
          while (clock::now() < next) {
          }
          driver.resume();
          next += step;
        }
      };
      std::vector<std::thread> pool;
      for (int t = 1; t < threads; ++t) {
        pool.emplace_back([&] {
          task my_pong = bench_pong();
          task my_ping = bench_ping(my_pong.h);
          my_ping.h.resume();  // to the same suspend points as the main pair
          pace(my_ping.h);
        });
      }
      pace(ping.h);
      for (auto& th : pool) th.join();
      double s = std::chrono::duration<double>(clock::now() - t0).count();
      std::printf("paced resumes=%llu seconds=%.3f\n",
                  static_cast<unsigned long long>(resumes.load() - before), s);
    } else if (cmd == "quit") {
      return 0;
    }
    std::fflush(stdout);
  }
  return 0;
}
