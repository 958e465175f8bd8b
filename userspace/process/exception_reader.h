// Reads an exception held by a std::exception_ptr in the target: its dynamic type from the
// __cxa_refcounted_exception header the runtime puts before the thrown object (exceptionType, a
// std::type_info*), and for std::logic_error / std::runtime_error and their single-inheritance
// subclasses the message. libstdc++ and libc++ (libc++abi) agree on both layouts on x86-64:
// the exception header ends with the 16-aligned _Unwind_Exception right before the object, with
// exceptionType the same 112 bytes back (libc++abi pads its header at the front instead), and
// libc++'s refstring keeps {length, capacity, count} before the characters as libstdc++'s COW
// string does. Sources: libsupc++/unwind-cxx.h, eh_ptr.cc, cow-stdexcept.cc, libcxxabi's
// cxa_exception.h and libcxx's refstring.h; measured with g++ 12, clang++ 14/19 with libstdc++
// and clang++ 14 with libc++ (docs: /work/shared/research/fleet-and-diagnosis.md).
//
// Lives in process/ next to the other readers of target bytes. Everything read is hostile: each
// pointer is read through ReadMemory (a failed read is an error, never a crash), names and
// messages are bounded, and lengths are checked against the string's own capacity.
#pragma once

#include <cstddef>
#include <cstdint>

#include "userspace/model/snapshot_model.h"
#include "userspace/process/memory_reader.h"

namespace asyncprobe::process {

struct ExceptionReadLimits {
  size_t max_type_name = 1024;  // bytes of a mangled type name
  size_t max_message = 512;     // bytes of a message shown (longer: truncated, and marked)
  size_t max_base_depth = 16;   // base-class steps when looking for std::runtime_error
};

// The exception whose thrown object is at `object` (an exception_ptr's value; non-zero).
// Fields the bytes did not support stay empty, with `error` saying what failed.
model::HeldException read_held_exception(uint64_t object, const ReadMemory& read,
                                         const ExceptionReadLimits& limits = {});

}  // namespace asyncprobe::process
