// What a thread blocked in futex() waits for, read from the bytes around the futex word: a glibc
// pthread_mutex_t (std::mutex included) and its owner TID, a PI or robust mutex's owner from the
// word itself, or a write-locked pthread_rwlock_t's recorded writer. Condition variables, futex
// words of other libraries and anything that does not validate give nothing: only a lock whose
// owner is recorded can take part in a wait-for graph.
//
// Lives in process/ (not in diagnose/) because it reads target bytes during a look, like every
// other reader here; the analysis built on it (diagnose/) runs on the model afterwards.
// The bytes are hostile: every field is checked against the layout glibc writes (x86-64,
// glibc >= 2.25 sysdeps/x86/nptl/bits/struct_mutex.h and struct_rwlock.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "userspace/model/snapshot_model.h"
#include "userspace/process/memory_reader.h"

namespace asyncprobe::process {

inline constexpr int64_t kSyscallFutex = 202;  // x86-64

// Bytes read around a futex word: `base` is the target address of bytes[0]; the futex word must
// lie inside. kLockWindowBefore bytes before the word and kLockWindowAfter from it are enough for
// every layout decoded here.
inline constexpr size_t kLockWindowBefore = 16;
inline constexpr size_t kLockWindowAfter = 48;

// Decodes a futex wait with syscall arguments `args` (uaddr, op, val, ...) against the bytes.
// nullopt when the wait is not on a lock with a recorded owner (or the bytes do not validate).
std::optional<model::LockWait> decode_futex_wait(const uint64_t args[6], uint64_t base,
                                                 const uint8_t* bytes, size_t len);

// For a thread blocked in futex(): reads the window around its futex word and decodes it.
std::optional<model::LockWait> read_lock_wait(const model::ThreadInfo& thread,
                                              const ReadMemory& read);

}  // namespace asyncprobe::process
