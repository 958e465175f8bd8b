// A module: one mapped ELF object together with what describes it: its separate debug file (if
// any), its DWARF, its symbols. Modules are built once per object and cached (ModuleCache), the
// way LLVM's Symbolize caches per module.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "symbolizer/debug_file_locator.h"
#include "symbolizer/dwarf_info.h"
#include "symbolizer/elf_object.h"

namespace asyncprobe::symbolizer {

class Module {
 public:
  // `open_path`: where we can read the object (e.g. /proc/PID/map_files/...);
  // `target_path`: its path as the target names it (for messages and debuglink lookup).
  static std::unique_ptr<Module> load(const std::string& open_path, const std::string& target_path,
                                      const DebugSearchPaths& paths, std::string* error);
  // A module from an ELF image in memory, named `name`; no separate debug file is looked for.
  static std::unique_ptr<Module> from_memory(const std::string& name, std::vector<uint8_t> image,
                                             std::string* error);

  const std::string& target_path() const { return target_path_; }
  const ElfObject& object() const { return *object_; }
  // The object that provides symbols and DWARF: the debug file when one was found.
  const ElfObject& symbol_source() const { return debug_ != nullptr ? *debug_ : *object_; }
  const std::string& debug_file() const { return debug_path_; }
  const DwarfInfo* dwarf() const { return dwarf_.get(); }
  bool has_symtab() const { return symbol_source().has_symtab(); }

  // Function frames at an object-relative virtual address, innermost first. Without DWARF one
  // frame named from the symbol table; without symbols, empty.
  std::vector<InlineFrame> symbolize(uint64_t vaddr) const;
  // The same frames as FrameRefs (no string per frame; see FrameRef): `out` is cleared and
  // filled. Names from the symbol table are demangled once and kept by the module.
  void symbolize_refs(uint64_t vaddr, std::vector<FrameRef>* out) const;

 private:
  // The demangled name of `sym`, kept for the module's lifetime.
  std::string_view symbol_name(const ElfSymbol& sym) const;

  Module() = default;
  std::string target_path_;
  std::unique_ptr<ElfObject> object_;
  std::unique_ptr<ElfObject> debug_;
  std::string debug_path_;
  std::unique_ptr<DwarfInfo> dwarf_;
  mutable std::mutex symbol_names_mu_;
  mutable std::map<const ElfSymbol*, std::string> symbol_names_;
};

// A file's identity without reading it: "file:" device, inode, size and mtime. false when the
// file cannot be stat'ed.
bool file_identity_key(const std::string& path, std::string* key);

// Modules keyed by build-id (or, without one, by device, inode, size and mtime of the file).
class ModuleCache {
 public:
  explicit ModuleCache(DebugSearchPaths paths) : paths_(std::move(paths)) {}
  // Returns a cached module or loads it; nullptr (with `error`) when the file is unusable.
  std::shared_ptr<Module> get(const std::string& open_path, const std::string& target_path,
                              std::string* error);
  const DebugSearchPaths& paths() const { return paths_; }

 private:
  DebugSearchPaths paths_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Module>> modules_;
};

}  // namespace asyncprobe::symbolizer
