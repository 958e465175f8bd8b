// Low-level code patching: executable memory near a module (within reach of a rel32 jump) and
// W^X-respecting writes to existing code (page made read-write, written, made read-execute
// again; never writable and executable at once).
#pragma once

#include <cstddef>
#include <cstdint>

namespace asyncprobe::preload {

// A read-write mapping of `bytes` whose every byte is within +-2 GiB (minus `margin`) of every
// address in [lo, hi). nullptr when none could be placed.
void* map_near(uint64_t lo, uint64_t hi, size_t bytes, uint64_t margin = 64ull << 20);
// Makes a region from map_near read+execute (no longer writable).
bool seal_code(void* region, size_t bytes);
// Overwrites `n` bytes of code at `addr` (pages assumed read+execute before and after). The
// caller guarantees that no thread executes these pages meanwhile. Uses raw system calls only,
// so it can patch the dynamic loader itself.
bool write_code(uint64_t addr, const void* bytes, size_t n);
// True when `target` is reachable with a rel32 from the end of an instruction at `from`.
inline bool rel32_reachable(uint64_t from_end, uint64_t target) {
  int64_t d = static_cast<int64_t>(target - from_end);
  return d >= INT32_MIN && d <= INT32_MAX;
}

}  // namespace asyncprobe::preload
