// DWARF of one object through elfutils libdw: source lines, inline chains and the few struct
// layouts the coroutine catalog needs. DWARF is hostile input: every walk is bounded.
#pragma once

#include <elfutils/libdw.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "symbolizer/elf_object.h"

namespace asyncprobe::sym {

struct SourceLine {
  std::string file;
  int line = 0;
  int column = 0;
};

// One function activation at an address: the innermost inlined callee first, the physical
// function last. `location` is the position inside `function`.
struct InlineFrame {
  std::string function;  // demangled when a linkage name is known
  SourceLine location;
  bool inlined = false;
};

struct StructMember {
  std::string name;
  uint64_t offset = 0;
  uint64_t size = 0;  // 0 when the member's type has no known size
};

struct StructLayout {
  std::string name;
  uint64_t byte_size = 0;
  std::vector<StructMember> members;
  const StructMember* find(const std::string& member) const;
};

class DwarfInfo {
 public:
  // Reads DWARF from `object` (which must outlive this). nullptr when it has none.
  static std::unique_ptr<DwarfInfo> open(const ElfObject& object);
  ~DwarfInfo();
  DwarfInfo(const DwarfInfo&) = delete;
  DwarfInfo& operator=(const DwarfInfo&) = delete;

  std::optional<SourceLine> line_at(uint64_t vaddr) const;
  std::vector<InlineFrame> frames_at(uint64_t vaddr) const;
  // Struct/class types whose name ends in one of the compilers' coroutine frame suffixes
  // (".Frame", ".frame", ".coro_frame_ty"), indexed on first use.
  std::optional<StructLayout> coroutine_frame_type(const std::string& name) const;
  // The struct pointed to by the variable or parameter `var` of the function whose code starts
  // at `entry` (clang's `__coro_frame`).
  std::optional<StructLayout> pointee_of_variable(uint64_t entry, const std::string& var) const;
  // DW_AT_decl_line of the function whose code starts at `entry` (or containing it).
  std::optional<SourceLine> function_decl(uint64_t vaddr) const;

 private:
  // Every function with code, and the inlined calls inside it, indexed in one walk of the DIE
  // tree on first use: a lookup is then a binary search plus a scan of one function's inlines,
  // instead of libdw's per-query tree walk (dwarf_getscopes), which dominated run time.
  struct InlineScope {
    uint64_t lo = 0, hi = 0;
    int depth = 0;      // nesting below the function, 1 = called from the function itself
    Dwarf_Off die = 0;  // for the callee's name, resolved on demand
    // Call site, in the caller. The file name is libdw's (valid while dwarf_ is open): a string
    // per inlined call made indexing allocation-bound on large C++ objects.
    const char* call_file = nullptr;
    int call_line = 0;
    int call_column = 0;
  };
  struct FunctionScope {
    Dwarf_Off die = 0;
    Dwarf_Off cu = 0;
    std::vector<InlineScope> inlines;
  };
  struct FunctionRange {
    uint64_t lo, hi;
    size_t function;
  };

  DwarfInfo() = default;
  void build_index() const;
  // `files`: the CU's file table, looked up once per CU.
  void index_function(Dwarf_Die* cu, Dwarf_Die* fn, Dwarf_Files* files, size_t nfiles) const;
  const FunctionScope* function_at(uint64_t vaddr) const;
  std::string name_of(Dwarf_Off die) const;
  // The CU holding `vaddr`: .debug_aranges first, then CU ranges (clang emits no aranges).
  bool find_cu(uint64_t vaddr, Dwarf_Die* cu) const;
  std::optional<StructLayout> read_struct(Dwarf_Die* die) const;

  Dwarf* dwarf_ = nullptr;
  mutable bool indexed_ = false;
  mutable std::unordered_map<std::string, Dwarf_Off> frame_types_;
  mutable std::vector<FunctionScope> functions_;
  mutable std::vector<FunctionRange> function_ranges_;  // sorted by lo
  mutable std::unordered_map<Dwarf_Off, std::string> names_;
  struct CuRange {
    uint64_t lo, hi;
    Dwarf_Off cu;
  };
  mutable bool cu_ranges_built_ = false;
  mutable std::vector<CuRange> cu_ranges_;
};

}  // namespace asyncprobe::sym
