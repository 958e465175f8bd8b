// DWARF of one object through elfutils libdw: source lines, inline chains and the few struct
// layouts the coroutine catalog needs. DWARF is hostile input: every walk is bounded.
#pragma once

#include <elfutils/libdw.h>

#include <cstdint>
#include <deque>
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
  // Reads DWARF from `object` (which must outlive this; its symbols name functions DWARF gives
  // no linkage name). nullptr when it has none.
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
  // instead of libdw's per-query tree walk (dwarf_getscopes), which dominated run time. Names
  // are resolved on first use and cached per abstract origin (one demangling per function, not
  // per inlined call).
  struct InlineScope {
    uint64_t lo = 0, hi = 0;
    Dwarf_Off die = 0;  // for the callee's name, resolved on demand
    // Call site, in the caller. The file name is libdw's (valid while dwarf_ is open): a string
    // per inlined call made indexing allocation-bound on large C++ objects.
    const char* call_file = nullptr;
    int depth = 0;  // nesting below the function, 1 = called from the function itself
    int call_line = 0;
    int call_column = 0;
    mutable int32_t name = -1;  // into names_, once resolved
    // A function's inlines are in DIE pre-order, one entry per range. On the first entry of a
    // DIE: how many entries it has, and the index past its subtree, so a lookup skips the
    // calls nested in a call that does not hold the address.
    uint32_t ranges = 0;
    uint32_t subtree_end = 0;
  };
  struct FunctionScope {
    Dwarf_Off die = 0;
    Dwarf_Off cu = 0;
    uint64_t entry = 0;  // lowest address of its code, where its symbol starts
    mutable int32_t name = -1;
    std::vector<InlineScope> inlines;
  };
  struct FunctionRange {
    uint64_t lo, hi;
    size_t function;
  };
  // A namespace, class or struct: the DIE offsets [start, end) it spans and its name
  // (libdw's string; nullptr for an anonymous namespace, "" for an unnamed class), to qualify DWARF
  // names that come without a linkage name.
  struct Scope {
    Dwarf_Off start, end;
    const char* name;
    int32_t parent;  // -1 at CU level
  };
  // A DIE still to visit in the CU walk: its depth below the CU, enclosing scope (index into
  // scopes_), the end of its parent's subtree, and whether its siblings follow in the walk.
  struct PendingDie {
    Dwarf_Die die;
    int depth;
    int32_t scope;
    Dwarf_Off end;
    bool with_siblings;
  };

  DwarfInfo() = default;
  void build_index() const;
  void index_cu(Dwarf_Die* cu, Dwarf_Off cu_end, size_t* budget) const;
  // Indexes `fn` (when it has code) with the inlined calls under it, in one walk of its subtree;
  // appends the nested DIEs that may hold more functions (local classes, nested subprograms) to
  // `nested` for the CU walk.
  void index_function(Dwarf_Die* cu, const PendingDie& fn, Dwarf_Files* files, size_t nfiles,
                      std::vector<PendingDie>* nested) const;
  const FunctionScope* function_at(uint64_t vaddr) const;
  // Names the function `die` refers to; `cached` is the caller's slot for the result and
  // `entry` the start of its code when it is a function of its own (0 for an inlined call).
  const std::string& name_of(Dwarf_Off die, int32_t* cached, uint64_t entry) const;
  // DWARF's name qualified by the namespaces and classes around its declaration.
  std::string qualified_name(Dwarf_Die* die) const;
  // The CU holding `vaddr`: .debug_aranges first, then CU ranges (clang emits no aranges).
  bool find_cu(uint64_t vaddr, Dwarf_Die* cu) const;
  std::optional<SourceLine> line_in_cu(Dwarf_Die* cu, uint64_t vaddr) const;
  std::optional<StructLayout> read_struct(Dwarf_Die* die) const;

  const ElfObject* object_ = nullptr;
  Dwarf* dwarf_ = nullptr;
  mutable bool indexed_ = false;
  mutable std::unordered_map<std::string, Dwarf_Off> frame_types_;
  mutable std::vector<FunctionScope> functions_;
  mutable std::vector<FunctionRange> function_ranges_;  // sorted by lo
  mutable std::vector<Scope> scopes_;                   // in DIE order (sorted by start)
  mutable std::deque<std::string> names_;               // a deque: name_of hands out references
  mutable std::vector<uint8_t> names_linked_;           // per name: 1 when from a linkage name
  mutable std::unordered_map<Dwarf_Off, int32_t> name_by_origin_;
  struct CuRange {
    uint64_t lo, hi;
    Dwarf_Off cu;
  };
  mutable bool cu_ranges_built_ = false;
  mutable std::vector<CuRange> cu_ranges_;
};

}  // namespace asyncprobe::sym
