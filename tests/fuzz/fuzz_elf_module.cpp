// A whole hostile ELF file: symbols, notes, debug link, PLT relocations, DWARF (lines, inlines,
// frame types) and the coroutine catalog built from it, as a target's mapped file would be read.
// The input is opened from memory (Module::from_memory): no file, no debug-file search per run.
#include <cstdint>
#include <string>
#include <vector>

#include "symbolizer/coro_catalog.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string err;
  auto module = asyncprobe::symbolizer::Module::from_memory(
      "fuzz-input", std::vector<uint8_t>(data, data + size), &err);
  if (module == nullptr) return 0;
  std::shared_ptr<const asyncprobe::symbolizer::Module> shared(std::move(module));
  asyncprobe::symbolizer::CoroCatalog catalog(shared);
  for (const auto& fn : catalog.functions()) {
    for (const auto& [index, point] : catalog.suspend_points(fn)) (void)point;
    shared->symbolize(fn.resume);
    shared->object().plt_target(fn.resume);
  }
  for (const auto& seg : shared->object().load_segments()) shared->symbolize(seg.vaddr + 16);
  // The frames without strings (symbolizer/module.h), inside the first functions' code: the
  // index's raw DIE reader, inline trees and line tables on hostile DWARF.
  std::vector<asyncprobe::symbolizer::FrameRef> refs;
  size_t looked_up = 0;
  for (const auto& sym : shared->object().symbols()) {
    if (!sym.is_function || looked_up >= 64) continue;
    ++looked_up;
    for (uint64_t off = 0; off < sym.size && off < 64; off += 5) {
      shared->symbolize_refs(sym.value + off, &refs);
    }
  }
  return 0;
}
