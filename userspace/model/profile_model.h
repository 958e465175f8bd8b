// The profile model: what `asyncprobe profile` measured, already symbolized and joined with async
// stacks. Produced by the sampler (CPU profile) or by periodic snapshots / the trace (await
// profile); consumed by every export format (folded, SVG, speedscope, pprof) and the text summary.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace asyncprobe::model {

// One function frame of a stack. An address that falls in inlined code yields several frames
// with the same `address`: the innermost first, each but the outermost with `inlined` set.
struct ProfileFrame {
  enum class Kind {
    kNative,     // an ordinary user-space function on the thread's stack
    kCoroutine,  // a coroutine body (resume/actor function) that was running on the thread
    kAsync,      // an awaiting coroutine joined from the async stack: not on the thread's stack
    kKernel,     // a kernel function (kernel stacks are optional)
  };
  Kind kind = Kind::kNative;
  std::string function;  // demangled name; "0x<addr>" (with `object`) when no symbol covers it
  std::string file;      // source file, empty when unknown
  int line = 0;          // 0 when unknown (no DWARF, or the suspend point could not be placed)
  std::string object;    // path of the ELF object as the target names it; empty for kernel
  uint64_t address = 0;  // absolute pc in the target (for kAsync: the coroutine frame address)
  bool inlined = false;  // inlined into the next (outer) frame at the same address
};

// One distinct stack with its accumulated weight.
struct ProfileSample {
  std::vector<uint32_t> frames;  // indexes into Profile::frames, LEAF FIRST (pprof order)
  int64_t count = 0;             // number of samples (CPU) or snapshots (await) merged here
  int64_t value_ns = 0;          // CPU time or suspended wall time, nanoseconds
  int tid = 0;                   // 0 when samples of several threads were merged
  std::string thread_name;
  uint64_t coroutine = 0;  // frame address of the coroutine running (CPU) or waiting (await)
  std::string coroutine_function;
  bool async_uncertain = false;  // the joined async stack is a best guess (say so in every format)
};

struct Profile {
  enum class Type { kCpu, kAwait };
  Type type = Type::kCpu;
  int pid = 0;
  std::string command;     // comm
  std::string executable;  // /proc/PID/exe target
  int64_t start_unix_ns = 0;
  int64_t duration_ns = 0;
  int64_t period_ns = 0;               // sampling period (CPU: 1e9 / HZ; await: snapshot interval)
  int frequency_hz = 0;                // CPU only
  std::vector<ProfileFrame> frames;    // interned: identical frames share one index
  std::vector<ProfileSample> samples;  // distinct stacks
  std::vector<std::string> warnings;   // lost samples, failed unwinds, unsure joins, ...
  int64_t lost_samples = 0;
};

}  // namespace asyncprobe::model
