// A small ELF reader for the library itself (no libelf in the target): the coroutine resume
// functions of one object, by symbol name, from its .symtab (or its separate debug file's, found
// by build-id or .gnu_debuglink) or .dynsym. Used to decide what to patch, synchronously at load
// time and on dlopen.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace asyncprobe::preload {

struct ResumeSymbol {
  uint64_t vaddr = 0;
  uint64_t size = 0;
  bool gcc = false;  // "<...>.Frame.actor"
};

// `debug_dirs`: ':'-separated extra debug roots (besides /usr/lib/debug). Empty on failure.
std::vector<ResumeSymbol> scan_resume_functions(const std::string& path,
                                                const std::string& debug_dirs);

// A coroutine as its split functions' symbols describe it (no DWARF): enough to recognise its
// frames (header words) and its activations (resume range) before the helper's tables arrive.
struct SymbolCoroutine {
  uint64_t resume = 0;
  uint64_t resume_size = 0;
  uint64_t destroy = 0;
  uint64_t cleanup = 0;  // Clang's .cleanup, 0 if none
  bool gcc = false;
};
// Coroutines with both a resume and a destroy function, sorted by resume.
std::vector<SymbolCoroutine> scan_coroutines(const std::string& path,
                                             const std::string& debug_dirs);

}  // namespace asyncprobe::preload
