// libasyncprobe-preload.so: the in-process engine that `asyncprobe run` puts into a program with
// LD_PRELOAD. Its constructor reads the options, records the mapped modules, installs the crash
// and terminate handlers, patches resume functions when tracing was asked for, hooks the dynamic
// loader for dlopen/dlclose and starts the service thread (socket + table helper). At exit it
// hands the reports that were asked for to asyncprobe-preload-helper, which writes them (see
// exit_report.h). See docs/PRELOAD.md.
#include <dlfcn.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "userspace/preload/blocking_records.h"
#include "userspace/preload/config.h"
#include "userspace/preload/crash.h"
#include "userspace/preload/elf_scan.h"
#include "userspace/preload/exit_report.h"
#include "userspace/preload/exit_signals.h"
#include "userspace/preload/library.h"
#include "userspace/preload/modules.h"
#include "userspace/preload/protocol.h"
#include "userspace/preload/service.h"
#include "userspace/preload/signal_safe.h"
#include "userspace/preload/tracer.h"

namespace asyncprobe::preload {

namespace {

bool g_dl_hooked = false;
uint64_t g_start_ns = 0;
pid_t g_main_pid = 0;

void warn(const std::string& what) {
  std::string line = "asyncprobe-preload: " + what + "\n";
  write_fully(2, line.data(), line.size());
}

std::string library_dir() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&library_dir), &info) == 0 || info.dli_fname == nullptr)
    return "";
  std::string path = info.dli_fname;
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

// Waits (bounded) for the helper so that names and lines are in the exit reports.
void wait_for_tables_briefly() {
  for (int i = 0; i < 500 && table_loader_alive() && !Modules::tables_complete(); ++i) sleep_ms(20);
}

// Blocking calls are recorded from the first moment: recognising the running coroutine then
// needs its frames' header words, which the coroutines' symbols give at once (the helper's
// tables, with names and lines, follow).
void install_symbol_tables(size_t first) {
  for (size_t i = first; i < Modules::count(); ++i) {
    ModuleRecord* m = Modules::at(i);
    if (m->is_self || m->is_vdso || m->path[0] != '/' || m->unloaded.load()) continue;
    install_symbol_table(m, scan_coroutines(m->path, config().debug_dirs));
  }
}

void at_exit() {
  if (self_pid() != g_main_pid && !config().follow_children) return;
  // Once: a termination signal during a normal exit must not write the reports a second time.
  static std::atomic<bool> done{false};
  if (done.exchange(true)) return;
  set_internal_thread(true);
  bool want_trace = config().trace_from_start && config().trace_out[0] != '\0';
  bool want_blocking = config().blocking;
  // Names and lines come from the helper's tables: wait for them only when there is something
  // to name.
  std::vector<BlockingSample> samples;
  uint64_t next = 0, dropped = 0;
  if (want_blocking) blocking_samples(0, &samples, &next, &dropped);
  bool anything = !samples.empty();
  if (want_trace) {
    std::vector<EntryCounts> counts;
    tracer_sum_counts(&counts);
    for (const auto& c : counts) anything |= c.resumes + c.starts > 0;
  }
  if (anything) wait_for_tables_briefly();
  if (want_trace) {
    uint8_t flags = tracer_flags();
    tracer_set_flags(0);
    write_exit_report(preload_proto::kExitTrace, config().trace_out, g_start_ns);
    tracer_set_flags(flags);
  }
  if (want_blocking)
    write_exit_report(preload_proto::kExitBlocking, config().blocking_out, g_start_ns);
  service_unlink_socket();
}

void on_fork_child() {
  refresh_self_pid();
  service_after_fork_child();
  if (!config().follow_children) {
    // A forked child is not ours to watch: back to how it would run without us.
    uninstall_crash_handlers();
    uninstall_exit_signal_handlers();
    tracer_set_flags(0);
    config().blocking = false;
    return;
  }
  g_main_pid = self_pid();
  std::string why;
  if (!start_service(&why) && !why.empty())
    warn("child " + std::to_string(self_pid()) + ": " + why);
}

}  // namespace

// Called by the dynamic-loader hook, with the loader lock held: a new library is mapped but its
// initialisers have not run, so nobody executes its code yet and it can be patched.
void on_modules_changed() {
  size_t first = Modules::count();
  size_t added = Modules::refresh();
  if (added > 0 && config().blocking) install_symbol_tables(first);
  if (added > 0 && config().trace) tracer_patch_new_modules(first);
  service_wake();
}

// Without the loader hook the service polls before each request: tables only (patching code that
// other threads may already run would not be safe).
void poll_modules_without_hook() {
  if (g_dl_hooked) return;
  Modules::refresh();
}

}  // namespace asyncprobe::preload

using namespace asyncprobe::preload;

__attribute__((constructor)) static void asyncprobe_preload_init() {
  // Never twice (a program that dlopens us although we are preloaded).
  static bool done = false;
  if (done) return;
  done = true;
  g_start_ns = monotonic_ns();
  g_main_pid = self_pid();
  load_config_from_environment();
  Config& c = config();
  if (c.helper[0] == '\0') {
    std::string guess = library_dir() + "/asyncprobe-preload-helper";
    if (access(guess.c_str(), X_OK) == 0) std::strncpy(c.helper, guess.c_str(), kPathMax - 1);
  }
  Modules::refresh();
  if (c.blocking) install_symbol_tables(0);
  if (c.crash) install_crash_handlers();
  if (c.trace) {
    const char* why = "";
    if (tracer_init(&why)) {
      tracer_patch_new_modules(0);
      if (c.trace_from_start) tracer_set_flags(kTraceCount);
    } else {
      warn(std::string("tracing disabled: ") + why);
      c.trace = false;
    }
  }
  g_dl_hooked = install_dl_hook();
  std::string why;
  if (!start_service(&why) && !why.empty()) warn("snapshots over the socket disabled: " + why);
  pthread_atfork(nullptr, nullptr, on_fork_child);
  std::atexit(at_exit);
  // A termination signal at its default action would skip at_exit: the same work, then the
  // same death.
  if (c.socket || c.blocking || c.trace_out[0] != '\0') install_exit_signal_handlers(at_exit);
}
