#include "userspace/util/stop_request.h"

#include <signal.h>
#include <time.h>

#include <atomic>

namespace asyncprobe::util {

namespace {

std::atomic<unsigned> g_count{0};
std::atomic<int> g_first{0};
// The innermost scope (one thread runs the long work; the handler only counts).
unsigned g_after = 0;
uint64_t g_deadline = 0;
bool g_active = false;

void on_stop_signal(int sig) {
  int none = 0;
  g_first.compare_exchange_strong(none, sig);
  g_count.fetch_add(1);
}

}  // namespace

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a blocking poll returns at once with EINTR
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGHUP, &sa, nullptr);
}

unsigned stop_count() { return g_count.load(); }
int first_stop_signal() { return g_first.load(); }

uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

InterruptScope::InterruptScope(uint64_t deadline_ns)
    : saved_after_(g_after), saved_deadline_(g_deadline), saved_active_(g_active) {
  g_after = g_count.load();
  g_deadline = deadline_ns;
  g_active = true;
}

InterruptScope::~InterruptScope() {
  g_after = saved_after_;
  g_deadline = saved_deadline_;
  g_active = saved_active_;
}

bool interrupt_pending() {
  if (!g_active) return false;
  if (g_count.load(std::memory_order_relaxed) > g_after) return true;
  return g_deadline != 0 && monotonic_ns() >= g_deadline;
}

void check_interrupt() {
  if (!g_active) return;
  if (g_count.load(std::memory_order_relaxed) > g_after) throw Interrupted();
  // A vDSO clock read (tens of ns): callers call this every few thousand items, not per word.
  if (g_deadline != 0 && monotonic_ns() >= g_deadline) throw Interrupted();
}

}  // namespace asyncprobe::util
