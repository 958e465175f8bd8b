// Stop requests (SIGINT, SIGTERM, SIGHUP) that long loops notice. A subcommand that must clean up
// before it exits (detach probes, write what it has) installs the handlers, which only count the
// signals. Its long work (a snapshot of a big heap, grouping a big report) runs inside an
// InterruptScope: loops call check_interrupt() at least every few milliseconds of work, which
// throws Interrupted once a signal arrived after the scope began, or its deadline passed. So a
// pending signal is noticed within 100 ms, and the caller decides what to keep.
#pragma once

#include <cstdint>
#include <exception>

namespace asyncprobe::util {

// Counts SIGINT, SIGTERM and SIGHUP from now on (the handler is async-signal-safe).
void install_stop_handlers();
// Signals counted so far, and the first one (0: none).
unsigned stop_count();
int first_stop_signal();

// Thrown by check_interrupt().
struct Interrupted : std::exception {
  const char* what() const noexcept override { return "interrupted by a stop request"; }
};

// While alive, check_interrupt() throws once stop_count() exceeds the count at construction, or
// CLOCK_MONOTONIC passes deadline_ns (0: none). Scopes nest; the innermost rules.
class InterruptScope {
 public:
  explicit InterruptScope(uint64_t deadline_ns = 0);
  ~InterruptScope();
  InterruptScope(const InterruptScope&) = delete;
  InterruptScope& operator=(const InterruptScope&) = delete;

 private:
  unsigned saved_after_;
  uint64_t saved_deadline_;
  bool saved_active_;
};

// True when the innermost InterruptScope's condition holds (false outside any scope).
bool interrupt_pending();
// Throws Interrupted when interrupt_pending(). Cheap: an atomic load, and a clock read when the
// scope has a deadline.
void check_interrupt();

// CLOCK_MONOTONIC in ns (the clock of the deadlines and of BPF timestamps).
uint64_t monotonic_ns();

}  // namespace asyncprobe::util
