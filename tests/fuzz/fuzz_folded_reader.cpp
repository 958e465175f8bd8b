// Folded stacks are read back from files anyone may hand us (the round trip, and imports):
// any bytes must give a profile or a one-line error, and what was read must write again.
#include <cstdint>
#include <sstream>
#include <string>

#include "userspace/output/profile_export.h"
#include "userspace/output/profile_folded.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
  asyncprobe::model::Profile p;
  std::string error;
  if (!asyncprobe::output::read_folded(in, asyncprobe::model::Profile::Type::kCpu, &p, &error))
    return 0;
  std::ostringstream out;
  if (!asyncprobe::output::write_profile(out, p, asyncprobe::output::ProfileFormat::kFolded,
                                         &error)) {
    __builtin_trap();  // a profile we read must be one we can write
  }
  return 0;
}
