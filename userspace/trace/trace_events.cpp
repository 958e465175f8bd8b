#include "userspace/trace/trace_events.h"

#include "userspace/process/thread_reader.h"

namespace asyncprobe::trace {

std::string syscall_name(uint32_t nr) {
  const char* name = process::syscall_name_x86_64(nr);
  return name != nullptr ? name : "syscall_" + std::to_string(nr);
}

}  // namespace asyncprobe::trace
