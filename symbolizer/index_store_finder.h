// Reads a coroutine's resume function (GCC `.actor`, Clang `.resume`) as x86-64 machine code and
// finds every store of a constant into the coroutine frame. The suspend index is one such field:
// both compilers store the new index (a constant) just before the awaiter's await_suspend runs,
// so each store's address names the co_await through the line table.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace asyncprobe::symbolizer {

struct FrameConstantStore {
  uint64_t address = 0;  // the storing instruction
  uint32_t offset = 0;   // byte offset in the frame
  uint8_t width = 0;     // bytes stored
  int64_t value = 0;
};

struct InstructionInfo {
  uint64_t address = 0;
  bool is_call = false;
  bool ends_block = false;  // jmp, ret, ud2
  bool is_jmp = false;      // unconditional jump
  uint64_t target = 0;      // direct call/jump target, 0 if none
  bool is_join = false;     // target of a direct jump: code from here on may be shared
};

struct ResumeCodeFacts {
  std::vector<FrameConstantStore> stores;
  std::vector<InstructionInfo> instructions;  // in address order
  // The first frame field the function reads on the way from its entry (the suspend-index
  // dispatch reads it before anything else), whatever its address.
  std::optional<std::pair<uint32_t, uint8_t>> first_frame_load;
  bool decoded = false;  // false when the bytes could not be disassembled at all
};

// `code` holds the function's bytes, loaded at `vaddr`. The frame pointer arrives in %rdi.
ResumeCodeFacts analyze_resume_code(const uint8_t* code, size_t len, uint64_t vaddr);

// The same for a ramp (the coroutine's own function, which allocates the frame and runs the body up
// to the first suspend point): the frame is the register through which the ramp stores
// `resume_vaddr` (the resume function's address, the frame's first word); stores before that one
// are not seen.
ResumeCodeFacts analyze_ramp_code(const uint8_t* code, size_t len, uint64_t vaddr,
                                  uint64_t resume_vaddr);

// Picks the suspend-index field from the stores when DWARF does not name it: the (offset, width)
// with the most distinct constant values, preferring the field the function reads first.
std::optional<std::pair<uint32_t, uint8_t>> guess_index_field(const ResumeCodeFacts& facts);

}  // namespace asyncprobe::symbolizer
