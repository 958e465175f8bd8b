#include "userspace/preload/crash.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <exception>

#include "userspace/preload/async_walk.h"
#include "userspace/preload/config.h"
#include "userspace/preload/modules.h"
#include "userspace/preload/service.h"
#include "userspace/preload/signal_safe.h"
#include "userspace/preload/throw_record.h"
#include "userspace/preload/unwinder.h"
#include "userspace/util/frame_runs.h"

namespace asyncprobe::preload {

namespace {

constexpr int kSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
constexpr size_t kMaxStack = 64;
constexpr size_t kMaxAwaiters = 64;
constexpr size_t kAltStackBytes = size_t{128} * 1024;

struct sigaction g_old[NSIG];
bool g_installed[NSIG];
std::terminate_handler g_prev_terminate = nullptr;
bool g_terminate_installed = false;

std::atomic<int> g_owner{0};  // tid writing a report
std::atomic<bool> g_terminate_reported{false};

// Only the owner of g_owner uses these.
StackFrame g_frames[kMaxStack];
AwaitLink g_links[kMaxAwaiters];
StackFrame g_throw_frames[kMaxStack];
AwaitLink g_throw_links[kMaxAwaiters];
char g_text_buf[32 * 1024];

class Report {
 public:
  Report() : t_(g_text_buf, sizeof g_text_buf) {
    const char* path = config().crash_report;
    file_ = path[0] != '\0' ? raw_open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : -1;
  }
  ~Report() {
    flush();
    if (file_ >= 0) raw_close(file_);
  }
  Text& t() { return t_; }
  void flush() {
    write_fully(2, t_.data(), t_.size());
    if (file_ >= 0) write_fully(file_, t_.data(), t_.size());
    t_.clear();
  }

 private:
  Text t_;
  int file_ = -1;
};

void append_thread_name(Text& t, int tid) {
  char path[64];
  Text p(path, sizeof path);
  p.str("/proc/self/task/").dec(tid).str("/comm").ch('\0');
  int fd = raw_open(path, O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) return;
  char name[32];
  long n = sys(SYS_read, fd, name, sizeof name);
  raw_close(fd);
  if (n <= 0) return;
  while (n > 0 && (name[n - 1] == '\n' || name[n - 1] == '\0')) --n;
  t.str(" \"");
  for (long i = 0; i < n; ++i) t.ch(name[i] >= 0x20 && name[i] < 0x7f ? name[i] : '?');
  t.ch('"');
}

// Waits (bounded) for the helper's tables when they are still being computed.
void wait_for_tables(Report& r) {
  if (Modules::tables_complete() || !table_loader_alive() || table_loader_tid() == self_tid())
    return;
  int budget = config().crash_wait_ms;
  r.t()
      .str("asyncprobe: waiting up to ")
      .dec(budget / 1000)
      .str(" s for the coroutine tables (still being computed)\n");
  r.flush();
  for (int waited = 0; waited < budget; waited += 20) {
    if (Modules::tables_complete() || !table_loader_alive()) return;
    sleep_ms(20);
  }
}

// The async stack lines: links[0] running at running_pc, then every awaiting coroutine.
void write_async_stack(Text& t, const AwaitLink* links, size_t count, size_t max,
                       uint64_t running_pc, bool running_pc_exact) {
  for (size_t k = 0; k < count; ++k) {
    t.str("  #").udec(k).pad_to(6);
    if (k == 0) {
      append_coroutine_name(t, links[0].ref);
      t.str(" running");
      PcInfo info = describe_pc(running_pc, running_pc_exact);
      if (info.line != 0) t.str(" at ").str(info.file).ch(':').udec(info.line);
      t.str(" [frame ").hex(links[0].frame).ch(']');
    } else {
      append_await_link(t, links[k], false, 0);
    }
    t.ch('\n');
  }
  if (count == max) t.str("  ... (more awaiting coroutines not shown)\n");
}

// For std::terminate: the coroutine that threw the active exception, as it was at the throw.
struct Thrown {
  const AwaitLink* links = nullptr;
  size_t count = 0;  // 0: none known
  uint64_t running_pc = 0;
  bool running_pc_exact = false;
};

// `thrown`: used when the coroutine that threw is no longer on the stack.
void write_stacks(Report& r, int tid, size_t n, size_t first, const Thrown* thrown) {
  Text& t = r.t();
  t.str("asyncprobe: stack of thread ").dec(tid).str(" (innermost first):\n");
  for (size_t i = first; i < n;) {
    const size_t run = util::folded_run(i, n, [](size_t a, size_t b) {
      return g_frames[a].pc == g_frames[b].pc && g_frames[a].pc_exact == g_frames[b].pc_exact;
    });
    t.str("  #").udec(i - first).pad_to(6).hex(g_frames[i].pc, 12).ch(' ');
    append_pc(t, g_frames[i].pc, g_frames[i].pc_exact);
    if (run > 1) t.str("  x").udec(run);
    t.ch('\n');
    i += run;
  }
  if (n == kMaxStack) t.str("  ... (deeper frames not shown)\n");
  r.flush();
  RunningCoroutine running;
  if (!find_running_coroutine(g_frames, n, first, &running)) {
    if (thrown != nullptr && thrown->count > 0) {
      t.str(
          "asyncprobe: the coroutine that threw the exception is no longer on the stack (it was "
          "unwound before std::terminate); as recorded at the throw:\n");
      t.str(
          "asyncprobe: async stack of the running coroutine (innermost first, each awaited by "
          "the next):\n");
      write_async_stack(t, thrown->links, thrown->count, kMaxAwaiters, thrown->running_pc,
                        thrown->running_pc_exact);
      r.flush();
      return;
    }
    if (!Modules::tables_complete()) {
      t.str("asyncprobe: no coroutine found on this stack (the coroutine tables are incomplete)\n");
    } else {
      t.str("asyncprobe: no coroutine is running on this thread\n");
    }
    r.flush();
    return;
  }
  size_t links = walk_awaiters(running, g_links, kMaxAwaiters);
  t.str(
      "asyncprobe: async stack of the running coroutine (innermost first, each awaited by the "
      "next):\n");
  const StackFrame& act = g_frames[running.stack_index];
  uint64_t pc = act.pc;
  bool exact = act.pc_exact;
  // Still on the stack, but inside its exception path (a landing pad, the catch of its body):
  // where it stood when it threw says more.
  if (thrown != nullptr && thrown->count > 0 && thrown->links[0].frame == g_links[0].frame) {
    pc = thrown->running_pc;
    exact = thrown->running_pc_exact;
  }
  write_async_stack(t, g_links, links, kMaxAwaiters, pc, exact);
  r.flush();
}

void regs_from_context(const ucontext_t* uc, RegState* regs) {
  const greg_t* g = uc->uc_mcontext.gregs;
  regs->set(kRax, static_cast<uint64_t>(g[REG_RAX]));
  regs->set(kRdx, static_cast<uint64_t>(g[REG_RDX]));
  regs->set(kRcx, static_cast<uint64_t>(g[REG_RCX]));
  regs->set(kRbx, static_cast<uint64_t>(g[REG_RBX]));
  regs->set(kRsi, static_cast<uint64_t>(g[REG_RSI]));
  regs->set(kRdi, static_cast<uint64_t>(g[REG_RDI]));
  regs->set(kRbp, static_cast<uint64_t>(g[REG_RBP]));
  regs->set(kRsp, static_cast<uint64_t>(g[REG_RSP]));
  regs->set(kR8, static_cast<uint64_t>(g[REG_R8]));
  regs->set(kR9, static_cast<uint64_t>(g[REG_R9]));
  regs->set(kR10, static_cast<uint64_t>(g[REG_R10]));
  regs->set(kR11, static_cast<uint64_t>(g[REG_R11]));
  regs->set(kR12, static_cast<uint64_t>(g[REG_R12]));
  regs->set(kR13, static_cast<uint64_t>(g[REG_R13]));
  regs->set(kR14, static_cast<uint64_t>(g[REG_R14]));
  regs->set(kR15, static_cast<uint64_t>(g[REG_R15]));
  regs->set(kRip, static_cast<uint64_t>(g[REG_RIP]));
}

void report_signal(int sig, const siginfo_t* info, const ucontext_t* uc) {
  Report r;
  int tid = self_tid();
  Text& t = r.t();
  t.str("\nasyncprobe: ").str(signal_name(sig));
  const char* what = signal_code_text(sig, info != nullptr ? info->si_code : 0);
  if (what[0] != '\0') t.str(" (").str(what).ch(')');
  if (info != nullptr && info->si_code > 0 && sig != SIGABRT) {
    t.str(" at address ").hex(reinterpret_cast<uint64_t>(info->si_addr));
  }
  t.str(" in thread ").dec(tid);
  append_thread_name(t, tid);
  t.ch('\n');
  r.flush();
  wait_for_tables(r);
  size_t n = 0;
  if (uc != nullptr) {
    RegState regs;
    regs_from_context(uc, &regs);
    n = unwind_stack(regs, true, g_frames, kMaxStack);
  }
  write_stacks(r, tid, n, 0, nullptr);
  t.str("asyncprobe: end of report; the process now dies of ").str(signal_name(sig)).str("\n\n");
  service_unlink_socket();
}

void die_again(int sig, const siginfo_t* info) {
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(sig, &dfl, nullptr);
  // A fault repeats when the handler returns and the instruction runs again, now under the
  // default action: the core dump then shows the real faulting context. A sent signal (kill,
  // raise, abort) is sent again; it stays pending until the handler returns.
  bool fault = info != nullptr && info->si_code > 0 && sig != SIGABRT;
  if (!fault) sys(SYS_tgkill, self_pid(), self_tid(), sig);
}

void on_signal(int sig, siginfo_t* info, void* uc) {
  int tid = self_tid();
  int expected = 0;
  if (!g_owner.compare_exchange_strong(expected, tid)) {
    if (expected != tid) {
      // Another thread is writing its report and will end the process when done.
      for (int waited = 0; waited < config().crash_wait_ms + 10'000; waited += 50) sleep_ms(50);
    }
    die_again(sig, info);
    return;
  }
  if (!g_terminate_reported.load()) report_signal(sig, info, static_cast<const ucontext_t*>(uc));
  die_again(sig, info);
}

[[noreturn]] void on_terminate() {
  int tid = self_tid();
  int expected = 0;
  if (g_owner.compare_exchange_strong(expected, tid)) {
    Report r;
    Text& t = r.t();
    t.str("\nasyncprobe: std::terminate called in thread ").dec(tid);
    append_thread_name(t, tid);
    const void* exception = current_exception_object();
    if (exception != nullptr) t.str(" with an active exception");
    t.ch('\n');
    r.flush();
    wait_for_tables(r);
    Thrown thrown;
    thrown.links = g_throw_links;
    thrown.count = analyse_throw(exception, g_throw_frames, kMaxStack, g_throw_links, kMaxAwaiters,
                                 &thrown.running_pc, &thrown.running_pc_exact);
    RegState regs;
    asyncprobe_capture_caller_regs(&regs);
    size_t n = unwind_stack(regs, false, g_frames, kMaxStack);
    // Leave out our own frames (this handler).
    size_t first = 0;
    while (first < n) {
      const ModuleRecord* m = Modules::by_code(g_frames[first].pc - 1);
      if (m == nullptr || !m->is_self) break;
      ++first;
    }
    write_stacks(r, tid, n, first, &thrown);
    t.str("asyncprobe: end of report\n\n");
    g_terminate_reported.store(true);
  }
  if (g_prev_terminate != nullptr) g_prev_terminate();
  std::abort();
}

}  // namespace

void install_crash_handlers() {
  void* alt =
      mmap(nullptr, kAltStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (alt != MAP_FAILED) {
    stack_t ss{};
    ss.ss_sp = alt;
    ss.ss_size = kAltStackBytes;
    stack_t old{};
    // Keep a stack the program already installed.
    if (sigaltstack(nullptr, &old) == 0 && (old.ss_flags & SS_DISABLE) != 0) {
      sigaltstack(&ss, nullptr);
    } else {
      munmap(alt, kAltStackBytes);
    }
  }
  for (int sig : kSignals) {
    struct sigaction cur {};
    if (sigaction(sig, nullptr, &cur) != 0) continue;
    // A program (or an inherited SIG_IGN) that already chose what happens keeps its choice.
    if ((cur.sa_flags & SA_SIGINFO) != 0 || cur.sa_handler != SIG_DFL) continue;
    struct sigaction sa {};
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigfillset(&sa.sa_mask);
    if (sigaction(sig, &sa, &g_old[sig]) == 0) g_installed[sig] = true;
  }
  g_prev_terminate = std::set_terminate(on_terminate);
  g_terminate_installed = true;
  enable_throw_records();
}

void uninstall_crash_handlers() {
  for (int sig : kSignals) {
    if (!g_installed[sig]) continue;
    sigaction(sig, &g_old[sig], nullptr);
    g_installed[sig] = false;
  }
  if (g_terminate_installed) {
    std::set_terminate(g_prev_terminate);
    g_terminate_installed = false;
  }
  disable_throw_records();
}

}  // namespace asyncprobe::preload
