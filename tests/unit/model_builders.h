// Snapshot model values for the analysis and report unit tests.
#pragma once

#include <cstdint>
#include <string>

#include "userspace/snapshot_model.h"

namespace asyncprobe::testing {

// A frame suspended at a co_await placed by the index-store rule; linked to `awaiter` by the
// continuation-in-promise rule when awaiter != 0.
inline CoroFrame suspended_frame(uint64_t address, const std::string& function,
                                 const std::string& file, int line, uint64_t awaiter = 0,
                                 int64_t index = 4, const std::string& object = "/usr/bin/demo") {
  CoroFrame f;
  f.address = address;
  f.resume_fn = 0x401000;
  f.destroy_fn = 0x402000;
  f.function = function;
  f.object = object;
  f.state = FrameState::kSuspended;
  f.suspend.kind = SuspendPoint::Kind::kAwait;
  f.suspend.index = index;
  f.suspend.file = file;
  f.suspend.line = line;
  f.suspend.rule = "index-store";
  f.awaiter = awaiter;
  if (awaiter != 0) f.awaiter_rule = "continuation-in-promise";
  return f;
}

}  // namespace asyncprobe::testing
