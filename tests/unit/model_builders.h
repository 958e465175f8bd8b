// Snapshot model values for the analysis and report unit tests.
#pragma once

#include <cstdint>
#include <random>
#include <string>

#include "userspace/model/snapshot_model.h"

namespace asyncprobe::testing {

// A frame suspended at a co_await placed by the index-store rule; linked to `awaiter` by the
// continuation-in-promise rule when awaiter != 0.
inline model::CoroFrame suspended_frame(uint64_t address, const std::string& function,
                                        const std::string& file, int line, uint64_t awaiter = 0,
                                        int64_t index = 4,
                                        const std::string& object = "/usr/bin/demo") {
  model::CoroFrame f;
  f.address = address;
  f.resume_fn = 0x401000;
  f.destroy_fn = 0x402000;
  f.function = function;
  f.object = object;
  f.state = model::FrameState::kSuspended;
  f.suspend.kind = model::SuspendPoint::Kind::kAwait;
  f.suspend.index = index;
  f.suspend.file = file;
  f.suspend.line = line;
  f.suspend.rule = "index-store";
  f.awaiter = awaiter;
  if (awaiter != 0) f.awaiter_rule = coro::AwaiterRule::kContinuationInPromise;
  return f;
}

// Random, mostly broken snapshots: duplicate addresses, cycles, dangling links, random strings.
inline model::Snapshot random_snapshot(std::mt19937_64& rng) {
  static const char* const kNames[] = {"a", "b,c", "q\"uote", "nl\nx", "\xff\xfe", "", "0x401000"};
  model::Snapshot s;
  s.pid = static_cast<int>(rng() % 100000);
  const size_t n = rng() % 200;
  const uint64_t space = 1 + rng() % (n + 3);
  for (size_t i = 0; i < n; ++i) {
    model::CoroFrame f;
    f.address = (rng() % space) * 0x10;
    f.awaiter = rng() % 3 == 0 ? 0 : (rng() % (space + 2)) * 0x10;
    f.function = kNames[rng() % 7];
    f.suspend.file = kNames[rng() % 7];
    f.suspend.line = static_cast<int>(rng() % 3);
    f.suspend.index = static_cast<int64_t>(rng() % 5) - 1;
    f.suspend.kind = static_cast<model::SuspendPoint::Kind>(rng() % 4);
    f.state = static_cast<model::FrameState>(rng() % 3);
    f.awaiter_rule = static_cast<coro::AwaiterRule>(rng() % 7);
    f.stuck = rng() % 2;
    f.stuck_for_s = f.stuck ? static_cast<double>(rng() % 100) / 10.0 : 0.0;
    s.frames.push_back(f);
  }
  for (size_t i = rng() % 4; i > 0; --i) {
    model::ThreadInfo t;
    t.tid = static_cast<int>(rng() % 1000);
    t.name = kNames[rng() % 7];
    t.state = static_cast<char>(rng() % 256);
    s.threads.push_back(t);
  }
  s.window_seconds = static_cast<double>(rng() % 3);
  return s;
}

}  // namespace asyncprobe::testing
