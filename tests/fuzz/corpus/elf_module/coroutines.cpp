// Seed source for fuzz_elf_module: tools/run-fuzz compiles it with each compiler (-O2 -g) into a
// small ELF (20-35 KB) that has everything the module reader and the coroutine catalog look at
// (symbols, split coroutine functions, frame types in DWARF, lines, inlines, PLT), so that the
// fuzzer mutates real structure at thousands of inputs per second rather than a large fixture.
#include <coroutine>

struct Task {
  struct promise_type {
    std::coroutine_handle<> next;
    Task get_return_object() { return {std::coroutine_handle<promise_type>::from_promise(*this)}; }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    void return_void() {}
    void unhandled_exception() {}
  };
  std::coroutine_handle<promise_type> h;
  bool await_ready() { return false; }
  void await_suspend(std::coroutine_handle<> c) {
    h.promise().next = c;
    h.resume();
  }
  void await_resume() {}
};

Task leaf(int n) {
  co_await std::suspend_always{};
  (void)n;
}

Task mid(int n) {
  co_await leaf(n);
  co_await leaf(n + 1);
}

int main() {
  auto t = mid(1);
  t.h.resume();
  return 0;
}
