// Symbol names from a target's symbol table: split-function name parsing and demangling.
#include <cstdint>
#include <string>

#include "symbolizer/coro_catalog.h"
#include "symbolizer/demangle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string name(reinterpret_cast<const char*>(data), size);
  asyncprobe::symbolizer::CoroCompiler compiler{};
  std::string role;
  std::string ramp = asyncprobe::symbolizer::ramp_of_split_symbol(name, &compiler, &role);
  asyncprobe::symbolizer::demangle(ramp);
  asyncprobe::symbolizer::demangle(name);
  return 0;
}
