// Profiles for the export unit tests (and the export integration test): a CPU profile of a
// coroutine service whose hot coroutine `compute` runs with its async parents `render` and
// `handle` joined from the async stack, an inlined helper, a plain native stack on another
// thread, and one stack whose join is a best guess.
#pragma once

#include <cstdint>
#include <string>

#include "userspace/model/profile_model.h"

namespace asyncprobe::testing {

inline model::ProfileFrame profile_frame(model::ProfileFrame::Kind kind,
                                         const std::string& function, const std::string& file,
                                         int line, uint64_t address, bool inlined = false,
                                         const std::string& object = "/srv/bin/burn") {
  model::ProfileFrame f;
  f.kind = kind;
  f.function = function;
  f.file = file;
  f.line = line;
  f.object = kind == model::ProfileFrame::Kind::kKernel ? "" : object;
  f.address = address;
  f.inlined = inlined;
  return f;
}

// Frame indexes of coroutine_cpu_profile().
enum ServiceFrame : uint32_t {
  kMix,      // native, inlined into compute (same address)
  kCompute,  // coroutine, running
  kRender,   // async parent of compute
  kHandle,   // async parent of render
  kResume,   // std::coroutine_handle<void>::resume()
  kRunLoop,  // event_loop::run()
  kMain,     // main
  kPoll,     // epoll_wait wrapper
  kGuess,    // async parent of compute in the uncertain stack
  kSysPoll,  // kernel
};

inline model::Profile coroutine_cpu_profile() {
  using K = model::ProfileFrame::Kind;
  model::Profile p;
  p.type = model::Profile::Type::kCpu;
  p.pid = 4242;
  p.command = "burn";
  p.executable = "/srv/bin/burn";
  p.start_unix_ns = 1'700'000'000'000'000'000;
  p.duration_ns = 2'000'000'000;
  p.frequency_hz = 99;
  p.period_ns = 10'101'010;
  p.frames = {
      profile_frame(K::kNative, "mix(unsigned long)", "burn.cpp", 9, 0x401230, true),
      profile_frame(K::kCoroutine, "compute(int)", "burn.cpp", 21, 0x401230),
      profile_frame(K::kAsync, "render(int)", "burn.cpp", 30, 0x7f00000a1000),
      profile_frame(K::kAsync, "handle(request)", "burn.cpp", 41, 0x7f00000a2000),
      profile_frame(K::kNative, "std::coroutine_handle<void>::resume() const", "coroutine", 244,
                    0x401500),
      profile_frame(K::kNative, "event_loop::run()", "loop.cpp", 77, 0x401800),
      profile_frame(K::kNative, "main", "burn.cpp", 90, 0x401900),
      profile_frame(K::kNative, "poll_once()", "loop.cpp", 60, 0x401700),
      profile_frame(K::kAsync, "maybe_parent(int)", "burn.cpp", 50, 0x7f00000a3000),
      profile_frame(K::kKernel, "do_epoll_wait", "", 0, 0xffffffff81234560),
  };
  model::ProfileSample hot;
  hot.frames = {kMix, kCompute, kRender, kHandle, kResume, kRunLoop, kMain};
  hot.count = 6;
  hot.value_ns = 60'606'060;
  hot.tid = 4243;
  hot.thread_name = "worker";
  hot.coroutine = 0x7f00000a0000;
  hot.coroutine_function = "compute(int)";
  model::ProfileSample body = hot;  // the coroutine's own code, past the inlined helper
  body.frames = {kCompute, kRender, kHandle, kResume, kRunLoop, kMain};
  body.count = 2;
  body.value_ns = 20'202'020;
  model::ProfileSample idle;
  idle.frames = {kSysPoll, kPoll, kRunLoop, kMain};
  idle.count = 1;
  idle.value_ns = 10'101'010;
  idle.tid = 4242;
  idle.thread_name = "burn";
  model::ProfileSample guess;
  guess.frames = {kCompute, kGuess, kResume, kRunLoop, kMain};
  guess.count = 1;
  guess.value_ns = 10'101'010;
  guess.tid = 4243;
  guess.thread_name = "worker";
  guess.coroutine = 0x7f00000a8000;
  guess.coroutine_function = "compute(int)";
  guess.async_uncertain = true;
  p.samples = {hot, body, idle, guess};
  p.warnings = {"1 stack joined by a best guess"};
  return p;
}

// The same stacks as an await profile: weights are suspended nanoseconds.
inline model::Profile coroutine_await_profile() {
  model::Profile p = coroutine_cpu_profile();
  p.type = model::Profile::Type::kAwait;
  p.frequency_hz = 0;
  p.period_ns = 100'000'000;
  p.warnings.clear();
  return p;
}

}  // namespace asyncprobe::testing
