// The resume functions of the coroutines mapped in a process (Clang's .resume, GCC's .actor) at
// their absolute addresses, sorted for lookup by pc: how a native stack (a CPU sample, a thread
// blocked in a syscall) tells that it is inside a coroutine's body, and which coroutine's.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "userspace/snapshot/coroutine_index.h"

namespace asyncprobe::snapshot {

// The resume (Clang .resume, GCC .actor) function of one coroutine, at its absolute addresses.
struct ResumeFunction {
  uint64_t start = 0, end = 0;  // [start, end) of its code
  uint64_t destroy = 0;         // absolute destroy address (the frame header's second word)
  uint64_t cleanup = 0;         // Clang .cleanup (elided frames), 0 if none
  const LoadedCatalog* loaded = nullptr;
  const symbolizer::CoroFunction* fn = nullptr;
  std::string name;  // demangled coroutine name, "0x..." when unnamed
};

class ResumeFunctionTable {
 public:
  // Every coroutine of `index` that has a resume function; `index` must outlive the table.
  explicit ResumeFunctionTable(const CoroutineIndex& index);
  // The coroutine whose resume function holds `pc` (an address inside the code, not a return
  // address), or nullptr.
  const ResumeFunction* at(uint64_t pc) const;
  bool empty() const { return functions_.empty(); }

 private:
  std::vector<ResumeFunction> functions_;  // sorted by start
};

}  // namespace asyncprobe::snapshot
