// The C++20 coroutine frame header as GCC and Clang lay it out on x86-64: the resume function
// pointer at +0, the destroy function pointer at +8, then the promise (at +16, later when the
// promise is over-aligned; the catalog reads the real offset from DWARF when it can). Every reader
// of frame memory (snapshot scan, trace probes, the in-target library) uses these names.
#pragma once

#include <cstdint>

namespace asyncprobe::coro {

inline constexpr uint64_t kResumeOffset = 0;   // void (*resume)(frame*)
inline constexpr uint64_t kDestroyOffset = 8;  // void (*destroy)(frame*)
inline constexpr uint64_t kHeaderBytes = 16;   // the two function pointers
// Where the promise starts when nothing better is known (alignof(promise) <= 16).
inline constexpr uint64_t kDefaultPromiseOffset = kHeaderBytes;

}  // namespace asyncprobe::coro
