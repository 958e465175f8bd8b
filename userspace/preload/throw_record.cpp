#include "userspace/preload/throw_record.h"

#include <dlfcn.h>
#include <pthread.h>
#include <sys/mman.h>

#include <atomic>
#include <cstring>
#include <exception>
#include <typeinfo>

#include "userspace/preload/blocking_records.h"
#include "userspace/preload/modules.h"
#include "userspace/preload/signal_safe.h"

namespace asyncprobe::preload {

namespace {

using CxaThrow = void (*)(void*, std::type_info*, void (*)(void*));
using CxaRethrow = void (*)();

std::atomic<CxaThrow> g_real_throw{nullptr};
std::atomic<CxaRethrow> g_real_rethrow{nullptr};
std::atomic<bool> g_enabled{false};
pthread_key_t g_copy_key;
std::atomic<bool> g_key_made{false};

// The coroutine's activation is usually a few frames above the throw; deeper than this the walk
// continues in live memory, which std::terminate may have overwritten (the walk then stops).
constexpr size_t kStackCopy = size_t{16} * 1024;

struct ThreadThrow {
  const void* object = nullptr;
  RegState regs;
  uint64_t base = 0;  // the copy holds [base, base + len)
  size_t len = 0;
  unsigned char* copy = nullptr;  // kStackCopy bytes, mapped on the thread's first throw
  uint64_t stack_lo = 0, stack_hi = 0;
  bool bounds_known = false;
  bool recording = false;
};
__thread ThreadThrow t_throw __attribute__((tls_model("initial-exec")));

CxaThrow real_throw() {
  CxaThrow f = g_real_throw.load(std::memory_order_acquire);
  if (f == nullptr) {
    f = reinterpret_cast<CxaThrow>(dlsym(RTLD_NEXT, "__cxa_throw"));
    g_real_throw.store(f, std::memory_order_release);
  }
  return f;
}

CxaRethrow real_rethrow() {
  CxaRethrow f = g_real_rethrow.load(std::memory_order_acquire);
  if (f == nullptr) {
    f = reinterpret_cast<CxaRethrow>(dlsym(RTLD_NEXT, "__cxa_rethrow"));
    g_real_rethrow.store(f, std::memory_order_release);
  }
  return f;
}

void unmap_copy(void* copy) { munmap(copy, kStackCopy); }

// The thread's stack, so that the copy never reads past its end (once per thread).
bool stack_bounds(ThreadThrow& t) {
  if (!t.bounds_known) {
    t.bounds_known = true;
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
      void* addr = nullptr;
      size_t size = 0;
      if (pthread_attr_getstack(&attr, &addr, &size) == 0) {
        t.stack_lo = reinterpret_cast<uint64_t>(addr);
        t.stack_hi = t.stack_lo + size;
      }
      pthread_attr_destroy(&attr);
    }
  }
  return t.stack_hi != 0;
}

// `keep`: a rethrow of the object already recorded keeps the record of its first throw, the
// innermost place.
__attribute__((noinline)) void record_throw(const void* object, bool keep) {
  ThreadThrow& t = t_throw;
  if (!g_enabled.load(std::memory_order_relaxed) || t.recording || asyncprobe_internal_thread())
    return;
  if (keep && t.object == object) return;
  t.recording = true;
  RegState regs;
  asyncprobe_capture_caller_regs(&regs);
  t.object = object;
  t.regs = regs;
  t.len = 0;
  if (t.copy == nullptr && g_key_made.load()) {
    void* m = mmap(nullptr, kStackCopy, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m != MAP_FAILED) {
      t.copy = static_cast<unsigned char*>(m);
      pthread_setspecific(g_copy_key, m);
    }
  }
  uint64_t sp = regs.get(kRsp);
  // A throw on another stack (a signal handler's, a fiber's) is analysed in live memory only.
  if (t.copy != nullptr && stack_bounds(t) && sp >= t.stack_lo && sp < t.stack_hi) {
    t.base = sp;
    t.len = t.stack_hi - sp < kStackCopy ? t.stack_hi - sp : kStackCopy;
    std::memcpy(t.copy, reinterpret_cast<const void*>(sp), t.len);
  }
  t.recording = false;
}

}  // namespace

void enable_throw_records() {
  real_throw();
  real_rethrow();
  if (!g_key_made.load() && pthread_key_create(&g_copy_key, unmap_copy) == 0)
    g_key_made.store(true);
  g_enabled.store(true);
}

void disable_throw_records() { g_enabled.store(false); }

const void* current_exception_object() {
  // libstdc++'s exception_ptr is one pointer: the thrown object (bits/exception_ptr.h).
  static_assert(sizeof(std::exception_ptr) == sizeof(void*));
  std::exception_ptr e = std::current_exception();
  const void* object = nullptr;
  std::memcpy(&object, static_cast<const void*>(&e), sizeof object);
  return object;
}

size_t analyse_throw(const void* object, StackFrame* frames, size_t max_frames, AwaitLink* links,
                     size_t max_links, uint64_t* running_pc, bool* running_pc_exact) {
  const ThreadThrow& t = t_throw;
  if (object == nullptr || t.object != object) return 0;
  // Reads of the stack as it was at the throw come from the copy.
  if (t.len > 0) set_read_overlay(t.base, t.copy, t.len);
  size_t n = unwind_stack(t.regs, false, frames, max_frames);
  size_t first = 0;  // our own frames (record_throw, __cxa_throw) are not the program's
  while (first < n) {
    const ModuleRecord* m = Modules::by_code(frames[first].pc - 1);
    if (m == nullptr || !m->is_self) break;
    ++first;
  }
  size_t count = 0;
  RunningCoroutine running;
  if (find_running_coroutine(frames, n, first, &running)) {
    *running_pc = frames[running.stack_index].pc;
    *running_pc_exact = frames[running.stack_index].pc_exact;
    count = walk_awaiters(running, links, max_links);
  }
  clear_read_overlay();
  return count;
}

}  // namespace asyncprobe::preload

// The C++ runtime's throw entry points, interposed (exports.map): record, then throw as usual.
// Their reserved names are the point: the Itanium C++ ABI's, which LD_PRELOAD overrides.
// NOLINTNEXTLINE(bugprone-reserved-identifier)
extern "C" __attribute__((visibility("default"), noreturn)) void __cxa_throw(
    void* object, std::type_info* type, void (*destructor)(void*)) {
  asyncprobe::preload::record_throw(object, false);
  asyncprobe::preload::real_throw()(object, type, destructor);
  __builtin_unreachable();
}

// NOLINTNEXTLINE(bugprone-reserved-identifier)
extern "C" __attribute__((visibility("default"), noreturn)) void __cxa_rethrow() {
  asyncprobe::preload::record_throw(asyncprobe::preload::current_exception_object(), true);
  asyncprobe::preload::real_rethrow()();
  __builtin_unreachable();
}
