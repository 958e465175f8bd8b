// DWARF of one object through elfutils libdw: source lines, inline chains and the few struct
// layouts the coroutine catalog needs. DWARF is hostile input: every walk is bounded.
#pragma once

#include <elfutils/libdw.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "symbolizer/dwarf_die_reader.h"
#include "symbolizer/elf_object.h"

namespace asyncprobe::symbolizer {

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

// The same frame without a string of its own: `function` points into the DwarfInfo's (or the
// Module's) name pool and `file` at libdw's file names, both valid while the module lives. For
// callers that intern names (a profiler): no allocation per frame.
struct FrameRef {
  std::string_view function;
  std::string_view file;
  int line = 0;
  int column = 0;
  bool inlined = false;
};

struct StructMember {
  std::string name;
  uint64_t offset = 0;
  uint64_t size = 0;  // 0 when the member's type has no known size
  // Offsets, from the member's start, of each std::exception_ptr inside it (members and bases).
  std::vector<uint64_t> exception_ptr_offsets;
};

// The type of a named variable: enough to place and read an object of it (a clang promise, found
// through the ramp's `__promise` when no frame type says where it is).
struct VariableType {
  std::string type_name;  // the type's own name, typedefs stripped
  uint64_t byte_size = 0;
  uint64_t alignment = 0;  // DW_AT_alignment, else derived from the members
  // Offsets of each std::exception_ptr inside it (members and bases).
  std::vector<uint64_t> exception_ptr_offsets;
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
  // frames_at's frames as FrameRefs: `out` is cleared, then filled innermost first.
  void frame_refs_at(uint64_t vaddr, std::vector<FrameRef>* out) const;
  // Struct/class types whose name ends in one of the compilers' coroutine frame suffixes
  // (".Frame", ".frame", ".coro_frame_ty"), indexed on first use.
  std::optional<StructLayout> coroutine_frame_type(const std::string& name) const;
  // The struct pointed to by the variable or parameter `var` of the function whose code starts
  // at `entry` (clang's `__coro_frame`).
  std::optional<StructLayout> pointee_of_variable(uint64_t entry, const std::string& var) const;
  // The type of the variable `var` of the function whose code starts at `entry`, when it is a
  // class (clang's `__promise` in a ramp).
  std::optional<VariableType> class_type_of_variable(uint64_t entry, const std::string& var) const;
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
  // A function's inlined calls as a tree, built on its first lookup when it has many: per group
  // (by the index of its first entry; the function itself at inlines.size()) its child groups
  // in DIE order with the range that bounds each, and, for long child lists, their ranges
  // sorted by start with the running maximum of their ends, so a lookup finds the children
  // holding an address by binary search instead of a scan over scattered entries. The visiting
  // order, and so the frames, stay those of the scan.
  struct InlineTree {
    struct Node {
      uint32_t child_begin, child_end;  // into children
      uint32_t span_begin, span_end;    // into spans; empty for short lists
    };
    struct Child {
      uint64_t lo, hi;  // bounds all the group's ranges
      uint32_t group, ranges;
    };
    struct Span {
      uint64_t lo, hi, max_hi;
      uint32_t group, ranges;
    };
    std::vector<Node> nodes;
    std::vector<Child> children;
    std::vector<Span> spans;
  };
  struct FunctionScope {
    Dwarf_Off die = 0;
    Dwarf_Off cu = 0;
    uint64_t entry = 0;  // lowest address of its code, where its symbol starts
    mutable int32_t name = -1;
    std::vector<InlineScope> inlines;
    mutable std::unique_ptr<InlineTree> tree;
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

  // The same walk over DieReader's DIEs (see index_cu_fast).
  struct PendingRawDie {
    DieReader::Die die;
    int depth;
    int32_t scope;
    Dwarf_Off end;
    bool with_siblings;
  };

  DwarfInfo() = default;
  void build_index() const;
  void index_cu(Dwarf_Die* cu, Dwarf_Off cu_end, size_t* budget) const;
  // index_cu through DieReader (same walk, same order, same entries); false, with nothing
  // added, when the reader cannot read the unit: the caller then uses index_cu.
  bool index_cu_fast(Dwarf_Die* cu, Dwarf_Off cu_start, Dwarf_Off cu_end, size_t* budget) const;
  // The bytes of .debug_info as libdw reads them ({nullptr, 0} when not found).
  std::pair<const void*, size_t> debug_info_bytes() const;
  // Records function DIE `fn` of `cu` (its entry and pc ranges) when it has code: false when it
  // has none (a declaration, or code removed); functions_.back() is it otherwise.
  bool add_function(Dwarf_Die* fn, Dwarf_Die* cu) const;
  bool index_function_fast(const DieReader& reader, Dwarf_Die* cu, const PendingRawDie& fn,
                           Dwarf_Files* files, size_t nfiles,
                           std::vector<PendingRawDie>* nested) const;
  // Sets each call's subtree_end once all of a function's inlined calls are in.
  static void close_inline_subtrees(std::vector<InlineScope>* inlines);
  // Adds the entries of the inlined call `die` (one per range) to functions_[function]: its pc
  // ranges by dwarf_ranges, the call site given.
  void add_inline_ranges(Dwarf_Die* die, size_t function, int depth, const char* file, int line,
                         int column) const;
  // Adds the entries of the inlined call `die` (one per range) to functions_[function], read
  // through libdw.
  void add_inline_from_libdw(Dwarf_Die* die, size_t function, int depth, Dwarf_Files* files,
                             size_t nfiles) const;
  // Indexes `fn` (when it has code) with the inlined calls under it, in one walk of its subtree;
  // appends the nested DIEs that may hold more functions (local classes, nested subprograms) to
  // `nested` for the CU walk.
  void index_function(Dwarf_Die* cu, const PendingDie& fn, Dwarf_Files* files, size_t nfiles,
                      std::vector<PendingDie>* nested) const;
  const FunctionScope* function_at(uint64_t vaddr) const;
  // The inlined calls holding `vaddr` in `fn`, in DIE pre-order (at most `cap`); returns how many.
  size_t inline_chain(const FunctionScope& fn, uint64_t vaddr, const InlineScope** chain,
                      size_t cap) const;
  void build_inline_tree(const FunctionScope& fn) const;
  // Appends the groups among `node`'s children that hold `vaddr`, and theirs, in pre-order.
  void visit_inline_tree(const FunctionScope& fn, uint32_t node, uint64_t vaddr,
                         const InlineScope** chain, size_t* n, size_t cap) const;
  // The line at `vaddr` without copying libdw's file name; false when no line covers it.
  bool line_ref_at(uint64_t vaddr, FrameRef* out) const;
  // Names the function `die` refers to; `cached` is the caller's slot for the result and
  // `entry` the start of its code when it is a function of its own (0 for an inlined call).
  const std::string& name_of(Dwarf_Off die, int32_t* cached, uint64_t entry) const;
  // DWARF's name qualified by the namespaces and classes around its declaration.
  std::string qualified_name(Dwarf_Die* die) const;
  // One CU's line table as libdw parsed it, with its row addresses copied into an array of
  // their own, filled on the CU's first lookup: dwarf_getsrc_die's binary search over libdw's
  // rows (tens of bytes each) was a cache miss per step and the largest part of a lookup.
  struct CuLines {
    Dwarf_Off cu = 0;
    bool valid = false;  // the CU's DIE could be read
    bool loaded = false;
    Dwarf_Lines* lines = nullptr;
    std::vector<uint64_t> addrs;  // row i's address, as in libdw's order
  };
  // The CU holding `vaddr`: .debug_aranges first, then CU ranges (clang emits no aranges);
  // nullptr when none (or its DIE cannot be read).
  CuLines* find_cu_lines(uint64_t vaddr) const;
  CuLines* cu_lines(Dwarf_Off cu) const;
  std::optional<StructLayout> read_struct(Dwarf_Die* die) const;
  // The DW_TAG_variable or DW_TAG_formal_parameter named `var` directly inside the function
  // whose code starts at `entry`.
  bool find_variable(uint64_t entry, const std::string& var, Dwarf_Die* out) const;

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
  mutable std::unordered_map<const char*, int32_t> name_by_linkage_;  // by libdw's string
  struct CuRange {
    uint64_t lo, hi;
    Dwarf_Off cu;
  };
  mutable bool cu_ranges_built_ = false;
  mutable std::vector<CuRange> cu_ranges_;
  mutable bool aranges_read_ = false;
  mutable Dwarf_Aranges* aranges_ = nullptr;  // libdw's, nullptr without .debug_aranges
  mutable std::unordered_map<Dwarf_Off, CuLines> cu_lines_;  // by CU DIE offset
};

}  // namespace asyncprobe::symbolizer
