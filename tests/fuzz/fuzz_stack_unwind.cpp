// A profile or trace sample's registers and copied stack bytes come from the target: any value,
// any length. Unwinds them against this process's own objects (so the CFI is real and the pc can
// land in real code), symbolizing every frame; must end, bounded, whatever the bytes.
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <memory>

#include "userspace/process/stack_unwind.h"

namespace {

asyncprobe::process::TraceUnwinder& unwinder() {
  static auto* u = new asyncprobe::process::TraceUnwinder(getpid(), {});
  return *u;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr size_t kRegs = 17;
  if (size < kRegs * 8 + 8) return 0;
  uint64_t regs[kRegs];
  std::memcpy(regs, data, sizeof regs);
  uint64_t stack_addr = 0;
  std::memcpy(&stack_addr, data + sizeof regs, 8);
  // Keep the pc inside this fuzzer's code most of the time so the unwinder has CFI to follow.
  if ((regs[16] & 1) == 0) {
    regs[16] = reinterpret_cast<uint64_t>(&LLVMFuzzerTestOneInput) + (regs[16] >> 1) % 0x40000;
  }
  // And the stack pointer inside the copied bytes, where the walk reads its return addresses.
  if ((regs[7] & 1) == 0) stack_addr = regs[7] - (regs[7] >> 1) % 64;
  const uint8_t* stack = data + sizeof regs + 8;
  size_t len = size - sizeof regs - 8;
  if (!unwinder().ok()) return 0;
  for (const auto& frame : unwinder().unwind(regs, stack_addr, stack, len, 64)) {
    (void)unwinder().describe(frame.pc, true);
  }
  return 0;
}
