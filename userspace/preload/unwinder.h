// An async-signal-safe x86-64 stack unwinder over the DWARF call-frame information every module
// carries (.eh_frame, found through PT_GNU_EH_FRAME's binary-search table). Reads go through
// safe_read, so a corrupt stack ends the walk instead of faulting; nothing allocates or locks.
// Falls back to the frame-pointer chain where a module has no unwind table.
#pragma once

#include <cstddef>
#include <cstdint>

namespace asyncprobe::preload {

// DWARF register numbers of x86-64.
enum DwarfReg : int {
  kRax = 0,
  kRdx = 1,
  kRcx = 2,
  kRbx = 3,
  kRsi = 4,
  kRdi = 5,
  kRbp = 6,
  kRsp = 7,
  kR8 = 8,
  kR9,
  kR10,
  kR11,
  kR12,
  kR13,
  kR14,
  kR15,
  kRip = 16,
  kRegCount = 17,
};

struct RegState {
  uint64_t v[kRegCount] = {};
  uint32_t valid = 0;
  bool has(int r) const { return (valid & (1u << r)) != 0; }
  uint64_t get(int r) const { return v[r]; }
  void set(int r, uint64_t value) {
    v[r] = value;
    valid |= 1u << r;
  }
};

// One activation. `pc` is exact for the interrupted frame and a return address otherwise.
struct StackFrame {
  uint64_t pc = 0;
  bool pc_exact = false;
  uint64_t sp = 0;
  uint64_t cfa = 0;                // 0 until the walk stepped past this frame
  RegState regs;                   // registers known in this frame (callee-saved ones recovered)
  bool via_frame_pointer = false;  // reached by the rbp chain, not CFI
};

// Fills `out` with up to `max` frames starting at `start` (pc = start.v[kRip], exact when
// `start_exact`). Returns the number of frames.
size_t unwind_stack(const RegState& start, bool start_exact, StackFrame* out, size_t max);

// The registers of the caller of this function, as an unwind start (pc = its return address).
// Used from normal context (terminate handler, blocking-call records).
extern "C" void asyncprobe_capture_caller_regs(RegState* out);

}  // namespace asyncprobe::preload
