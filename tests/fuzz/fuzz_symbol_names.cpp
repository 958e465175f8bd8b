// Symbol names from a target's symbol table: split-function name parsing and demangling.
#include <cstdint>
#include <string>

#include "symbolizer/coro_catalog.h"
#include "symbolizer/demangle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string name(reinterpret_cast<const char*>(data), size);
  asyncprobe::sym::CoroCompiler compiler{};
  std::string role;
  std::string ramp = asyncprobe::sym::ramp_of_split_symbol(name, &compiler, &role);
  asyncprobe::sym::demangle(ramp);
  asyncprobe::sym::demangle(name);
  return 0;
}
