// Resume-function bytes as the catalog disassembles them: CFG dataflow, frame stores, index guess.
#include <cstdint>

#include "symbolizer/index_store_finder.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto facts = asyncprobe::symbolizer::analyze_resume_code(data, size, 0x401000);
  asyncprobe::symbolizer::guess_index_field(facts);
  return 0;
}
