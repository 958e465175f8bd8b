// User-stack unwinding for blocking calls found by `asyncprobe trace` (the BPF program copies the
// registers and the stack bytes of a thread at a slow syscall), for CPU samples, and for threads a
// snapshot finds blocked in a syscall (sp and pc from /proc, the stack read from memory without a
// stop: unwind_blocked). This walks the bytes with the DWARF CFI
// of the target's objects (elfutils libdwfl, our own memory callback over the copied bytes:
// targets have no frame pointers), then names each frame with the project's symbolizer.
// The copied bytes are hostile input: reads outside them fail, walks are bounded.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "symbolizer/dwarf_info.h"
#include "symbolizer/module.h"
#include "userspace/process/memory_reader.h"

namespace asyncprobe::process {

struct UnwoundFrame {
  uint64_t pc = 0;     // return address (or the interrupted pc for frame 0)
  std::string object;  // target path of the mapped file, empty when unknown
  // Innermost inlined function first; empty when no symbol covers the pc.
  std::vector<symbolizer::InlineFrame> functions;
  // What the CFI walk knew of this frame's registers (unwind() only; 0 when not recovered): its
  // stack pointer and its callee-saved registers rbx, rbp, r12, r13, r14, r15. The profile
  // looks there for a running coroutine's frame address.
  uint64_t sp = 0;
  uint64_t callee_saved[6] = {};
};

class TraceUnwinder {
 public:
  // Reads /proc/PID/maps and opens every mapped ELF file now (through /proc/PID/map_files), so
  // that stacks can still be unwound after the target exits.
  TraceUnwinder(int pid, const std::vector<std::string>& debug_dirs);
  ~TraceUnwinder();
  TraceUnwinder(const TraceUnwinder&) = delete;
  TraceUnwinder& operator=(const TraceUnwinder&) = delete;

  bool ok() const { return dwfl_ != nullptr; }
  const std::string& error() const { return error_; }

  // regs: DWARF x86-64 order (rax, rdx, rcx, rbx, rsi, rdi, rbp, rsp, r8..r15, rip).
  // stack: bytes copied from stack_addr upward. At most max_frames frames.
  std::vector<UnwoundFrame> unwind(const uint64_t regs[17], uint64_t stack_addr,
                                   const uint8_t* stack, size_t len, size_t max_frames = 64);

  // A thread blocked in a syscall, from its user sp and pc (/proc/PID/task/TID/syscall): reads
  // its stack from sp up through `read` (at most kMaxBlockedStackBytes, not past stack_hi when
  // that is known, halved until a read succeeds) and unwinds it. Empty when nothing could be
  // read. `stack` (optional) receives the bytes read, from sp up.
  static constexpr size_t kMaxBlockedStackBytes = size_t{256} * 1024;
  std::vector<UnwoundFrame> unwind_blocked(uint64_t sp, uint64_t pc, uint64_t stack_hi,
                                           const ReadMemory& read, size_t max_frames,
                                           std::vector<uint8_t>* stack = nullptr);

  static constexpr size_t kMaxFramePointerTries = 4;

  // The object and its symbols at an absolute address (for pcs known otherwise).
  UnwoundFrame describe(uint64_t pc, bool is_return_address) const;

  struct Walk;  // the walk in progress, served to libdwfl's callbacks

 private:
  struct Mapping {
    uint64_t start = 0, end = 0;
    uint64_t bias = 0;
    std::string target_path;
    std::shared_ptr<symbolizer::Module> module;
  };
  const Mapping* mapping_at(uint64_t pc) const;
  // Stack slots from sp up that look like a saved frame pointer (see unwind_blocked), at most
  // kMaxFramePointerTries.
  std::vector<uint64_t> frame_pointer_slots(uint64_t sp, const std::vector<uint8_t>& stack,
                                            const ReadMemory& read) const;

  int pid_;
  void* dwfl_ = nullptr;  // Dwfl*
  // describe() results by (pc, is_return_address): DWARF line and inline lookups dominate the
  // cost of a walk, and profiles see the same pcs over and over. Bounded (cleared when full).
  mutable std::unordered_map<uint64_t, UnwoundFrame> described_;
  std::string error_;
  std::vector<Mapping> mappings_;
  std::unique_ptr<symbolizer::ModuleCache> modules_;
  Walk* current_ = nullptr;
};

}  // namespace asyncprobe::process
