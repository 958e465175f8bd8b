#include "userspace/preload/exit_signals.h"

#include <signal.h>
#include <sys/syscall.h>

#include <atomic>
#include <cerrno>

#include "userspace/preload/service.h"
#include "userspace/preload/signal_safe.h"

namespace asyncprobe::preload {

namespace {

constexpr int kSignals[] = {SIGTERM, SIGINT, SIGHUP};
// The exit work waits up to 10 s for the coroutine tables when there is something to name.
constexpr int kExitWorkWaitMs = 15'000;

bool g_installed[NSIG];
std::atomic<bool> g_exit_started{false};

void on_exit_signal(int sig, siginfo_t*, void*) {
  int saved = errno;
  if (!g_exit_started.exchange(true)) {
    service_run_exit_work(kExitWorkWaitMs);
    service_unlink_socket();
  }
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigaction(sig, &dfl, nullptr);
  // Blocked while this handler runs: delivered, with the default action, when it returns.
  sys(SYS_tgkill, self_pid(), self_tid(), sig);
  errno = saved;
}

}  // namespace

void install_exit_signal_handlers(void (*exit_work)()) {
  service_set_exit_work(exit_work);
  for (int sig : kSignals) {
    struct sigaction old {};
    if (sigaction(sig, nullptr, &old) != 0 || (old.sa_flags & SA_SIGINFO) != 0 ||
        old.sa_handler != SIG_DFL)
      continue;
    struct sigaction sa {};
    sa.sa_sigaction = on_exit_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigfillset(&sa.sa_mask);  // one exit at a time, whichever signals follow
    g_installed[sig] = sigaction(sig, &sa, nullptr) == 0;
  }
}

void uninstall_exit_signal_handlers() {
  for (int sig : kSignals) {
    if (!g_installed[sig]) continue;
    g_installed[sig] = false;
    struct sigaction now {};
    if (sigaction(sig, nullptr, &now) != 0 || (now.sa_flags & SA_SIGINFO) == 0 ||
        now.sa_sigaction != on_exit_signal)
      continue;
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigaction(sig, &dfl, nullptr);
  }
}

}  // namespace asyncprobe::preload
