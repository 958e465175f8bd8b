// The readers behind the diagnoses fed hostile target bytes: the futex-owner decoder (syscall
// arguments and the bytes around the word) and the exception reader (exception header, type_info,
// name and message pointers all taken from the input, which stands for the target's memory at a
// fixed base). No per-run setup: the input is the memory.
#include <cstdint>
#include <cstring>

#include "userspace/process/exception_reader.h"
#include "userspace/process/lock_reader.h"

namespace {

constexpr uint64_t kBase = 0x7f0000001000;

uint64_t word_at(const uint8_t* data, size_t size, size_t off) {
  uint64_t v = 0;
  if (off + 8 <= size) std::memcpy(&v, data + off, 8);
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace asyncprobe::process;
  // Futex owner: the first 24 bytes choose the word's offset, op and expected value.
  uint64_t args[6] = {kBase + (word_at(data, size, 0) % (size + 16)),
                      word_at(data, size, 8),
                      word_at(data, size, 16),
                      0,
                      0,
                      0};
  decode_futex_wait(args, kBase, data, size);

  // Exception: the object address comes from the input, every pointer it leads to as well.
  auto read = [data, size](uint64_t addr, void* out, size_t len) {
    if (addr < kBase || addr - kBase > size || size - (addr - kBase) < len) return false;
    std::memcpy(out, data + (addr - kBase), len);
    return true;
  };
  const uint64_t object = kBase + (word_at(data, size, 24) % (size + 1));
  read_held_exception(object, read);
  return 0;
}
