// What `asyncprobe run` asked the library for, read once from the environment in the library's
// constructor (see docs/PRELOAD.md, "Environment"; the variable names are in protocol.h). Plain
// fixed-size storage: the crash handler reads it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace asyncprobe::preload {

inline constexpr size_t kPathMax = 4096;

struct Config {
  bool crash = true;              // crash / std::terminate reports
  bool socket = true;             // serve snapshots and trace sessions
  bool trace = false;             // patch resume functions at load time
  bool trace_from_start = false;  // count resumes from the start (for --trace-out)
  bool blocking = false;          // record blocking calls (needs the blocking interposer library)
  uint64_t blocking_threshold_ns = 10'000'000;
  bool follow_children = false;
  bool json = false;           // exit reports as JSON
  int crash_wait_ms = 30'000;  // how long a crash waits for tables still being computed
  char crash_report[kPathMax] = {};
  char trace_out[kPathMax] = {};
  char blocking_out[kPathMax] = {};
  char helper[kPathMax] = {};
  char debug_dirs[kPathMax] = {};  // ':'-separated
  char socket_dir[kPathMax] = {};
};

Config& config();

// Parses `options` ("crash,socket,trace,trace-from-start,blocking=NS,follow-children,json,
// crash-wait=MS,no-crash,no-socket") into `c`. Unknown words are ignored. Returns false when
// a value is malformed.
bool parse_options(const char* options, Config* c);

// Reads the environment into config(), then removes our variables and our library from
// LD_PRELOAD (unless follow-children), so that programs the target runs do not inherit us.
void load_config_from_environment();

}  // namespace asyncprobe::preload
