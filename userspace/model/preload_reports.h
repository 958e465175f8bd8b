// What the in-process (LD_PRELOAD) engine reports: resume counts from in-process tracing and
// blocking calls made inside coroutines. Filled from the run socket (process/preload_client) or
// by the library at exit; rendered by output/preload_report.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace asyncprobe::model {

struct PreloadTraceFunction {
  std::string function;  // demangled coroutine name, or "0x<resume>" when unknown
  std::string object;
  std::string file;  // declaration, "" if unknown
  int line = 0;
  uint64_t resume = 0;   // resume function address
  uint64_t resumes = 0;  // resumed from a suspend point
  uint64_t starts = 0;   // GCC: bodies started by the ramp (Clang starts them inside the ramp)
  uint64_t frames = 0;   // distinct frames seen in events (0 when counting only)
  bool traced = true;    // false: could not be patched safely, its resumes are not counted
};

struct PreloadTraceReport {
  int pid = 0;
  std::string command;
  std::string mode;  // "from start to exit" or "live session"
  double duration_s = 0;
  uint64_t total_resumes = 0;
  uint64_t events = 0;  // resume events received (0 when counting only)
  uint64_t lost_events = 0;
  uint32_t untraced = 0;                          // resume functions that could not be patched
  std::vector<PreloadTraceFunction> functions;    // every traced function with resumes
  std::vector<std::pair<int, uint64_t>> threads;  // tid -> resumes
};

struct PreloadBlockingFrame {
  std::string function;
  std::string file;
  int line = 0;
  uint64_t frame = 0;
};

struct PreloadBlockingCall {
  std::string call;  // "nanosleep", "pthread_mutex_lock", ...
  int tid = 0;
  uint64_t duration_ns = 0;
  std::string call_site;                    // "function at file:line (object+0xoff)"
  std::vector<PreloadBlockingFrame> stack;  // the running coroutine first, then its awaiters
};

struct PreloadBlockingReport {
  int pid = 0;
  std::string command;
  uint64_t threshold_ns = 0;
  uint64_t dropped = 0;
  std::vector<PreloadBlockingCall> calls;  // in the order they happened
};

// Sorts functions (most resumes first, then name) and threads (by tid).
void sort_trace_report(PreloadTraceReport* r);

}  // namespace asyncprobe::model
