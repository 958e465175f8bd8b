// Coroutines in an object without symbols or debug info, recognised from their code alone. A
// candidate frame header (resume, destroy) found in memory is accepted only when the machine
// code confirms it:
//   GCC:   the destroy function is a stub that sets the index's low bit (`or $1, idx(%rdi)`) and
//          jumps to or calls the actor, which must be the resume word;
//   both:  some code (the ramp, or a caller the ramp was inlined into) installs the header: a
//          `lea resume(%rip)` and a `lea destroy(%rip)` (or .cleanup) within a few instructions.
// Such coroutines have no names (they are shown by address) and no source lines.
#pragma once

#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "symbolizer/coro_catalog.h"

namespace asyncprobe::symbolizer {

// Where the object's code takes rip-relative addresses (`lea X(%rip), reg`): X -> the addresses
// of those instructions. Built once per object by a byte scan of its executable sections.
class AddressTakenIndex {
 public:
  explicit AddressTakenIndex(const ElfObject& object);
  // Whether code takes the addresses of both a and b within `window` bytes of each other.
  bool taken_together(uint64_t a, uint64_t b, uint64_t window = 96) const;

 private:
  std::unordered_map<uint64_t, std::vector<uint64_t>> sites_;
};

// `resume` and `destroy` are object vaddrs; `resume` is 0 for a finished frame (then only the
// GCC stub can name the actor). nullopt when the code does not confirm the pair.
std::optional<CoroFunction> recognise_stripped_coroutine(const Module& module,
                                                         const AddressTakenIndex& taken,
                                                         uint64_t resume, uint64_t destroy);

}  // namespace asyncprobe::symbolizer
