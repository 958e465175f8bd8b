// One ELF file on disk (or its image in memory), opened read-only through libelf: its symbols, load
// segments, build-id and debug link. Every field is read defensively: the file may be truncated or
// hostile.
#pragma once

#include <gelf.h>
#include <libelf.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace asyncprobe::symbolizer {

struct ElfSymbol {
  std::string name;  // raw (mangled) name
  uint64_t value = 0;
  uint64_t size = 0;
  bool is_function = false;
  bool is_local = false;
};

struct LoadSegment {
  uint64_t vaddr = 0;
  uint64_t offset = 0;
  uint64_t filesz = 0;
  uint64_t memsz = 0;
  uint32_t flags = 0;  // PF_R / PF_W / PF_X
};

struct ElfSection {
  std::string name;
  uint64_t addr = 0;
  uint64_t offset = 0;
  uint64_t size = 0;
  uint32_t type = 0;
};

class ElfObject {
 public:
  // Opens `path`. On failure returns nullptr and sets `error` to a one-line reason.
  static std::unique_ptr<ElfObject> open(const std::string& path, std::string* error);
  // The same from an image in memory (fuzzing, tests); `name` stands for the path.
  static std::unique_ptr<ElfObject> from_memory(const std::string& name, std::vector<uint8_t> image,
                                                std::string* error);
  ~ElfObject();
  ElfObject(const ElfObject&) = delete;
  ElfObject& operator=(const ElfObject&) = delete;

  const std::string& path() const { return path_; }
  bool is_x86_64() const { return x86_64_; }
  // Lowercase hex of NT_GNU_BUILD_ID, empty when absent.
  const std::string& build_id() const { return build_id_; }
  const std::string& debuglink() const { return debuglink_; }
  uint32_t debuglink_crc() const { return debuglink_crc_; }
  bool has_symtab() const { return has_symtab_; }
  bool has_debug_info() const { return has_debug_info_; }
  // .symtab and .dynsym merged, sorted by value; duplicates by (name, value) removed.
  const std::vector<ElfSymbol>& symbols() const { return symbols_; }
  const std::vector<LoadSegment>& load_segments() const { return segments_; }
  const std::vector<ElfSection>& sections() const { return sections_; }
  // The function symbol whose [value, value+size) holds `vaddr` (or the nearest one before it when
  // sizes are zero).
  const ElfSymbol* function_at(uint64_t vaddr) const;
  // Bytes of the file image at virtual address `vaddr` (from PROGBITS sections), for disassembly.
  bool read_code(uint64_t vaddr, size_t len, std::vector<uint8_t>* out) const;
  // The function a PLT stub at `vaddr` jumps to (through .rela.plt), or "" when it is not one.
  std::string plt_target(uint64_t vaddr) const;
  // Up to `len` bytes of the file at `offset` into `out`; the count read (0 past the end).
  size_t read_file(uint64_t offset, void* out, size_t len) const;
  // File offset of a virtual address, through the PT_LOAD segments.
  std::optional<uint64_t> vaddr_to_offset(uint64_t vaddr) const;

  Elf* elf() const { return elf_; }

 private:
  ElfObject() = default;
  bool load(std::string* error);
  void load_symbols(Elf_Scn* scn, const GElf_Shdr& shdr);
  void load_notes(Elf_Scn* scn, const GElf_Shdr& shdr);
  void load_plt_relocations(Elf_Scn* scn, const GElf_Shdr& shdr);

  std::string path_;
  int fd_ = -1;
  std::vector<uint8_t> image_;  // the file's bytes when opened from memory (fd_ is then -1)
  Elf* elf_ = nullptr;
  bool x86_64_ = false;
  bool has_symtab_ = false;
  bool has_debug_info_ = false;
  std::string build_id_;
  std::string debuglink_;
  uint32_t debuglink_crc_ = 0;
  std::vector<ElfSymbol> symbols_;
  std::vector<size_t> function_index_;  // indices into symbols_ of function symbols, by value
  std::vector<LoadSegment> segments_;
  std::vector<ElfSection> sections_;
  std::vector<std::pair<uint64_t, std::string>> plt_slots_;  // GOT slot -> symbol, sorted
};

}  // namespace asyncprobe::symbolizer
