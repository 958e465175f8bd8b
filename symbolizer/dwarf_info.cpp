// How the symbolizer works (moved here from docs/ARCHITECTURE.md, next to the code).
//
// Modelled on LLVM's Symbolize: objects -> modules -> symbolizer, cached per module.
//
// - `ElfObject`: one ELF file through libelf, read defensively: symbols (`.symtab` and `.dynsym`
//   merged), PT_LOAD segments, sections, build-id note, `.gnu_debuglink`, the PLT's relocation
//   slots (to name the function a PLT stub jumps to).
// - `find_debug_file`: gdb's search order. By build-id under each debug root
//   (`<root>/.build-id/xx/rest.debug`), then by debug link beside the object, in its `.debug/`, and
//   under `<root>/<dir>/`, inside the target's root (`/proc/PID/root`) first. A candidate is
//   accepted only if its build-id matches, or without build-ids its CRC32 matches the link's.
// - `DwarfInfo`: libdw over the debug file (or the object). On first use it walks the DIE tree
//   once and indexes every function with code and every inlined call inside it (ranges, depth,
//   call site), plus coroutine frame types by name. `frames_at(addr)` is then a binary search and a
//   scan of one function's inlines: 20x faster than libdw's `dwarf_getscopes` per query, which
//   dominated run time on a Boost.Asio binary (6.1 s -> 0.26 s per snapshot). CUs are found through
//   `.debug_aranges` and, because Clang emits none, through CU ranges. Every walk has a bound.
//   The walk visits each DIE once: a function's subtree is walked for its inlined calls and, in the
//   same pass, for nested subprograms and local classes; subprograms with `DW_AT_declaration` (the
//   member declarations that make up most subprograms of a C++ object) are skipped from their
//   abbreviation alone, while class bodies are still entered because GCC defines a lambda's
//   `operator()` inside its closure type. An inlined call's attributes (call site, pc range) are
//   read in one `dwarf_getattrs` pass. Inlined calls are kept in DIE pre-order with the end of
//   each call's subtree, so a lookup skips the calls nested in one that does not hold the address;
//   a function with more than 32 of them gets, on its first lookup, a tree of its calls (bounding
//   range per call, long child lists sorted by start) that finds the same calls in the same order
//   by binary search. The walk itself reads the DIE bytes through `DieReader`
//   (`dwarf_die_reader`: the unit's abbreviations in a table by code, libdw's sibling/child
//   rules, an inlined call's call site and pc range decoded in place); a unit with a form or
//   structure it does not know is walked through libdw instead, with nothing of the failed
//   attempt kept; calls with `DW_AT_ranges` or `addrx` forms take their pc ranges from libdw.
//   Lines: per CU, the row addresses of libdw's line table copied into an array on first use,
//   searched as `dwarf_getsrc_die` searches (the CU still from `.debug_aranges`, then CU ranges).
//   `frame_refs_at`/`Module::symbolize_refs` return frames whose strings stay in the module
//   (`FrameRef`), for callers that intern names; `frames_at`/`symbolize` copy them.
//   Names are resolved on first use and cached per abstract origin (one demangling per function,
//   not per inlined call). Namespaces and classes are recorded as DIE-offset intervals; a function
//   without a linkage name (GCC: internal linkage, a coroutine's `.actor`/`.destroy` parts, lambda
//   bodies) is named from the symbol at its entry when it has code of its own and that symbol names
//   it (`ns::(anonymous namespace)::f(int)`, GCC's `[clone .isra.0]`/`.cold` suffixes dropped),
//   else by DWARF's name qualified by those intervals (`ns::(anonymous namespace)::f` when
//   inlined). A coroutine's actor keeps DWARF's name: its symbol spells the frame type, not the
//   function. Single-threaded on purpose: elfutils does not promise libdw is safe to use from
//   several threads on one `Dwarf` (its locking is an experimental build option; the 0.188 library
//   here does take locks in its abbreviation lookups, seen in perf, but we did not audit the lazily
//   filled per-CU state such as line tables), so the walk is not split over threads.
// - `Module` / `ModuleCache`: the object, its debug file and its DWARF, keyed by file identity
//   (device, inode, size, mtime) and by build-id, so a library mapped by many processes or at
//   another path is parsed once. Code that DWARF covers by lines but by no function (thunks) takes
//   its name from the symbol table. The index keeps libdw's own file-name pointers for inlined call
//   sites (one string per inlined call made indexing allocation-bound);
//   `tools/bench/symbolize-bench` measures it against llvm-symbolizer (docs/BENCHMARKS.md,
//   "symbolize").

#include "symbolizer/dwarf_info.h"

#include <dwarf.h>
#include <gelf.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <utility>

#include "symbolizer/demangle.h"

namespace asyncprobe::symbolizer {

namespace {

constexpr int kMaxTypeHops = 16;   // typedef/const/volatile chains
constexpr int kMaxIndexDepth = 6;  // CU -> namespace/class/subprogram nesting we index
constexpr size_t kMaxIndexedDies = 50'000'000;

bool ends_with(const std::string& s, const char* suffix) {
  size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

bool is_frame_type_name(const std::string& name) {
  return ends_with(name, ".Frame") || ends_with(name, ".frame") ||
         ends_with(name, ".coro_frame_ty");
}

// Follows DW_AT_abstract_origin / DW_AT_specification from `die` to the linkage name (returned,
// libdw's string) or, without one, leaves `die` at the last DIE of the chain, the declaration
// that carries the name and sits in the function's namespace or class.
const char* linkage_name(Dwarf_Die* die) {
  for (int hop = 0; hop < 8; ++hop) {
    Dwarf_Attribute attr;
    for (int at : {DW_AT_linkage_name, DW_AT_MIPS_linkage_name}) {
      if (dwarf_attr(die, at, &attr) != nullptr) {
        const char* s = dwarf_formstring(&attr);
        if (s != nullptr) return s;
      }
    }
    Dwarf_Die next;
    if ((dwarf_attr(die, DW_AT_abstract_origin, &attr) == nullptr &&
         dwarf_attr(die, DW_AT_specification, &attr) == nullptr) ||
        dwarf_formref_die(&attr, &next) == nullptr) {
      return nullptr;
    }
    *die = next;
  }
  return nullptr;
}

// Drops GCC's " [clone .isra.0]" / " [clone .cold]" suffixes of a demangled symbol name; false
// for a coroutine's ".actor"/".destroy" part, whose symbol spells the frame type, not the
// function the user wrote.
bool strip_clone_suffixes(std::string* name) {
  while (!name->empty() && name->back() == ']') {
    const size_t at = name->rfind(" [clone .");
    if (at == std::string::npos) break;
    if (name->compare(at + 9, 5, "actor") == 0 || name->compare(at + 9, 7, "destroy") == 0) {
      return false;
    }
    name->erase(at);
  }
  return true;
}

// True when the demangled `symbol` names `qualified`: the name (after a return type or more
// scopes, e.g. a local class's or lambda's, which DWARF's scopes here leave out) followed by its
// template arguments or parameters.
bool symbol_names(const std::string& symbol, const std::string& qualified) {
  for (size_t at = symbol.find(qualified); at != std::string::npos;
       at = symbol.find(qualified, at + 1)) {
    const size_t after = at + qualified.size();
    const bool starts = at == 0 || symbol[at - 1] == ' ' ||
                        (at >= 2 && symbol[at - 1] == ':' && symbol[at - 2] == ':');
    if (starts && after < symbol.size() && (symbol[after] == '(' || symbol[after] == '<')) {
      return true;
    }
  }
  return false;
}

// Strips typedefs and cv-qualifiers; returns false on a broken or cyclic chain.
bool strip_type(Dwarf_Die* die) {
  for (int i = 0; i < kMaxTypeHops; ++i) {
    int tag = dwarf_tag(die);
    if (tag != DW_TAG_typedef && tag != DW_TAG_const_type && tag != DW_TAG_volatile_type &&
        tag != DW_TAG_atomic_type) {
      return true;
    }
    Dwarf_Attribute attr;
    if (dwarf_attr_integrate(die, DW_AT_type, &attr) == nullptr) return false;
    if (dwarf_formref_die(&attr, die) == nullptr) return false;
  }
  return false;
}

uint64_t type_size(Dwarf_Die* member) {
  Dwarf_Attribute attr;
  Dwarf_Die type;
  if (dwarf_attr_integrate(member, DW_AT_type, &attr) == nullptr) return 0;
  if (dwarf_formref_die(&attr, &type) == nullptr || !strip_type(&type)) return 0;
  Dwarf_Word size = 0;
  if (dwarf_aggregate_size(&type, &size) != 0) return 0;
  return size;
}

// The type a member or base-class DIE refers to, with typedefs and qualifiers stripped.
bool member_type(Dwarf_Die* member, Dwarf_Die* type) {
  Dwarf_Attribute attr;
  return dwarf_attr_integrate(member, DW_AT_type, &attr) != nullptr &&
         dwarf_formref_die(&attr, type) != nullptr && strip_type(type);
}

// Appends the offsets (from `base`) of every std::exception_ptr inside the class `type`: its
// members and base classes, nested up to a few levels (a promise derives from a library base
// that holds it: Boost.Asio's pending_exception_, cppcoro's m_exception). Bounded by `budget`.
void collect_exception_ptrs(Dwarf_Die* type, uint64_t base, int depth, size_t* budget,
                            std::vector<uint64_t>* out) {
  int tag = dwarf_tag(type);
  if (tag != DW_TAG_structure_type && tag != DW_TAG_class_type) return;
  const char* name = dwarf_diename(type);
  if (name != nullptr && std::strcmp(name, "exception_ptr") == 0) {
    out->push_back(base);
    return;
  }
  Dwarf_Die child;
  if (depth <= 0 || dwarf_child(type, &child) != 0) return;
  do {
    if (*budget == 0) return;
    --*budget;
    int ctag = dwarf_tag(&child);
    if (ctag != DW_TAG_member && ctag != DW_TAG_inheritance) continue;
    Dwarf_Attribute attr;
    Dwarf_Word offset = 0;
    Dwarf_Die sub;
    if (dwarf_attr(&child, DW_AT_data_member_location, &attr) == nullptr ||
        dwarf_formudata(&attr, &offset) != 0 || !member_type(&child, &sub)) {
      continue;
    }
    collect_exception_ptrs(&sub, base + offset, depth - 1, budget, out);
  } while (dwarf_siblingof(&child, &child) == 0);
}

// alignof(type): DW_AT_alignment where the source asked for one (alignas), else the largest
// alignment among members and bases, scalars aligned to their size (x86-64 SysV, at most 16).
// 0 when the chain is broken or the budget runs out.
uint64_t type_alignment(Dwarf_Die* type, int depth, size_t* budget) {
  Dwarf_Attribute attr;
  Dwarf_Word explicit_alignment = 0;
  if (dwarf_attr_integrate(type, DW_AT_alignment, &attr) != nullptr &&
      dwarf_formudata(&attr, &explicit_alignment) == 0 && explicit_alignment > 0) {
    return explicit_alignment;
  }
  const int tag = dwarf_tag(type);
  Dwarf_Die sub;
  if (tag == DW_TAG_array_type) {
    return member_type(type, &sub) && depth > 0 ? type_alignment(&sub, depth - 1, budget) : 0;
  }
  if (tag != DW_TAG_structure_type && tag != DW_TAG_class_type && tag != DW_TAG_union_type) {
    Dwarf_Word size = 0;
    if (dwarf_aggregate_size(type, &size) != 0 || size == 0) return 0;
    return std::min<uint64_t>(std::bit_floor(size), 16);
  }
  uint64_t alignment = 1;
  Dwarf_Die child;
  if (dwarf_child(type, &child) != 0) return alignment;
  do {
    const int ctag = dwarf_tag(&child);
    if (ctag != DW_TAG_member && ctag != DW_TAG_inheritance) continue;
    if (*budget == 0 || depth <= 0) return 0;
    --*budget;
    // Static members have no location and take no room.
    if (ctag == DW_TAG_member && dwarf_attr(&child, DW_AT_data_member_location, &attr) == nullptr)
      continue;
    if (!member_type(&child, &sub)) return 0;
    const uint64_t a = type_alignment(&sub, depth - 1, budget);
    if (a == 0) return 0;
    alignment = std::max(alignment, a);
  } while (dwarf_siblingof(&child, &child) == 0);
  return alignment;
}

// The attributes of an inlined call the index keeps, read in one dwarf_getattrs pass.
struct InlineAttrs {
  Dwarf_Word file = ~Dwarf_Word{0};
  Dwarf_Word line = 0;
  Dwarf_Word column = 0;
  Dwarf_Addr low = 0;
  Dwarf_Attribute high{};
  bool has_low = false;
  bool has_high = false;
  bool has_ranges = false;
};

int collect_inline_attr(Dwarf_Attribute* attr, void* arg) {
  auto* at = static_cast<InlineAttrs*>(arg);
  switch (dwarf_whatattr(attr)) {
    case DW_AT_call_file:
      if (dwarf_formudata(attr, &at->file) != 0) at->file = ~Dwarf_Word{0};
      break;
    case DW_AT_call_line:
      if (dwarf_formudata(attr, &at->line) != 0) at->line = 0;
      break;
    case DW_AT_call_column:
      if (dwarf_formudata(attr, &at->column) != 0) at->column = 0;
      break;
    case DW_AT_low_pc:
      at->has_low = dwarf_formaddr(attr, &at->low) == 0;
      break;
    case DW_AT_high_pc:
      at->high = *attr;
      at->has_high = true;
      break;
    case DW_AT_ranges:
      at->has_ranges = true;
      break;
    default:
      break;
  }
  return DWARF_CB_OK;
}

// DW_AT_high_pc is an address, or (DWARF 4+) an offset from DW_AT_low_pc.
bool inline_high_pc(InlineAttrs& at, uint64_t* high) {
  const unsigned form = dwarf_whatform(&at.high);
  if (form == DW_FORM_addr || form == DW_FORM_addrx || form == DW_FORM_GNU_addr_index ||
      form == DW_FORM_addrx1 || form == DW_FORM_addrx2 || form == DW_FORM_addrx3 ||
      form == DW_FORM_addrx4) {
    Dwarf_Addr a = 0;
    if (dwarf_formaddr(&at.high, &a) != 0) return false;
    *high = a;
    return true;
  }
  Dwarf_Word offset = 0;
  if (dwarf_formudata(&at.high, &offset) != 0) return false;
  *high = at.low + offset;
  return *high >= at.low;
}

int udata_attr_integrate(Dwarf_Die* die, int at) {
  Dwarf_Attribute attr;
  Dwarf_Word v = 0;
  if (dwarf_attr_integrate(die, at, &attr) == nullptr || dwarf_formudata(&attr, &v) != 0) return 0;
  return v > 0x7fffffff ? 0 : static_cast<int>(v);
}

}  // namespace

const StructMember* StructLayout::find(const std::string& member) const {
  for (const auto& m : members) {
    if (m.name == member) return &m;
  }
  return nullptr;
}

std::unique_ptr<DwarfInfo> DwarfInfo::open(const ElfObject& object) {
  if (!object.has_debug_info()) return nullptr;
  Dwarf* dw = dwarf_begin_elf(object.elf(), DWARF_C_READ, nullptr);
  if (dw == nullptr) return nullptr;
  std::unique_ptr<DwarfInfo> info(new DwarfInfo());
  info->dwarf_ = dw;
  info->object_ = &object;
  return info;
}

DwarfInfo::~DwarfInfo() {
  if (dwarf_ != nullptr) dwarf_end(dwarf_);
}

DwarfInfo::CuLines* DwarfInfo::cu_lines(Dwarf_Off cu) const {
  auto [it, inserted] = cu_lines_.try_emplace(cu);
  if (inserted) {
    Dwarf_Die die;
    it->second.valid = dwarf_offdie(dwarf_, cu, &die) != nullptr;
    it->second.cu = cu;
  }
  return &it->second;
}

DwarfInfo::CuLines* DwarfInfo::find_cu_lines(uint64_t vaddr) const {
  // dwarf_addrdie's steps, keeping the CU's offset instead of re-reading its DIE each time.
  if (!aranges_read_) {
    aranges_read_ = true;
    size_t n = 0;
    if (dwarf_getaranges(dwarf_, &aranges_, &n) != 0) aranges_ = nullptr;
  }
  Dwarf_Off off = 0;
  if (aranges_ != nullptr &&
      dwarf_getarangeinfo(dwarf_getarange_addr(aranges_, vaddr), nullptr, nullptr, &off) == 0) {
    CuLines* cu = cu_lines(off);
    if (cu->valid) return cu;
  }
  if (!cu_ranges_built_) {
    cu_ranges_built_ = true;
    Dwarf_Off unit = 0;
    Dwarf_Off next = 0;
    size_t header = 0;
    size_t guard = 0;
    while (dwarf_nextcu(dwarf_, unit, &next, &header, nullptr, nullptr, nullptr) == 0 &&
           ++guard < 10'000'000) {
      Dwarf_Die die;
      if (dwarf_offdie(dwarf_, unit + header, &die) != nullptr) {
        Dwarf_Addr base = 0;
        Dwarf_Addr lo = 0;
        Dwarf_Addr hi = 0;
        ptrdiff_t r = 0;
        int n = 0;
        while ((r = dwarf_ranges(&die, r, &base, &lo, &hi)) > 0 && ++n < 1'000'000) {
          if (hi > lo) cu_ranges_.push_back({lo, hi, unit + header});
        }
      }
      unit = next;
    }
    std::sort(cu_ranges_.begin(), cu_ranges_.end(),
              [](const CuRange& a, const CuRange& b) { return a.lo < b.lo; });
  }
  auto it = std::upper_bound(cu_ranges_.begin(), cu_ranges_.end(), vaddr,
                             [](uint64_t v, const CuRange& r) { return v < r.lo; });
  // Ranges of different CUs do not overlap in sane DWARF; check a few in case they do.
  for (int n = 0; it != cu_ranges_.begin() && n < 8; ++n) {
    --it;
    if (vaddr < it->hi) {
      CuLines* cu = cu_lines(it->cu);
      return cu->valid ? cu : nullptr;
    }
  }
  return nullptr;
}

std::optional<SourceLine> DwarfInfo::line_at(uint64_t vaddr) const {
  FrameRef line;
  if (!line_ref_at(vaddr, &line)) return std::nullopt;
  return SourceLine{std::string(line.file), line.line, line.column};
}

bool DwarfInfo::line_ref_at(uint64_t vaddr, FrameRef* out) const {
  CuLines* cu = find_cu_lines(vaddr);
  if (cu == nullptr) return false;
  if (!cu->loaded) {
    cu->loaded = true;
    Dwarf_Die die;
    size_t n = 0;
    if (dwarf_offdie(dwarf_, cu->cu, &die) == nullptr ||
        dwarf_getsrclines(&die, &cu->lines, &n) != 0) {
      cu->lines = nullptr;
      n = 0;
    }
    cu->addrs.resize(n);
    for (size_t i = 0; i < n; ++i) {
      Dwarf_Addr a = 0;
      dwarf_lineaddr(dwarf_onesrcline(cu->lines, i), &a);
      cu->addrs[i] = a;
    }
  }
  // dwarf_getsrc_die's search: the last row at or below vaddr, unless it ends a sequence.
  const size_t n = cu->addrs.size();
  if (n == 0) return false;
  size_t l = 0;
  size_t u = n - 1;
  while (l < u) {
    const size_t idx = u - (u - l) / 2;
    if (vaddr < cu->addrs[idx]) {
      u = idx - 1;
    } else {
      l = idx;
    }
  }
  Dwarf_Line* line = dwarf_onesrcline(cu->lines, l);
  bool end_sequence = false;
  if (line == nullptr || dwarf_lineendsequence(line, &end_sequence) != 0 || end_sequence ||
      cu->addrs[l] > vaddr) {
    return false;
  }
  const char* file = dwarf_linesrc(line, nullptr, nullptr);
  out->file = file != nullptr ? file : "";
  dwarf_lineno(line, &out->line);
  dwarf_linecol(line, &out->column);
  return true;
}

std::pair<const void*, size_t> DwarfInfo::debug_info_bytes() const {
  Elf* elf = dwarf_getelf(dwarf_);
  size_t shstrndx = 0;
  if (elf == nullptr || elf_getshdrstrndx(elf, &shstrndx) != 0) return {nullptr, 0};
  for (Elf_Scn* scn = elf_nextscn(elf, nullptr); scn != nullptr; scn = elf_nextscn(elf, scn)) {
    GElf_Shdr shdr;
    if (gelf_getshdr(scn, &shdr) == nullptr) continue;
    const char* name = elf_strptr(elf, shstrndx, shdr.sh_name);
    if (name == nullptr || std::strcmp(name, ".debug_info") != 0) continue;
    // The data libdw read (decompressed in place when the section was compressed).
    Elf_Data* data = elf_getdata(scn, nullptr);
    if (data == nullptr || data->d_buf == nullptr) return {nullptr, 0};
    return {data->d_buf, data->d_size};
  }
  return {nullptr, 0};
}

void DwarfInfo::build_index() const {
  indexed_ = true;
  names_.assign(1, "");  // names_[0]: no name
  names_linked_.assign(1, 0);
  size_t budget = kMaxIndexedDies;
  Dwarf_Off off = 0;
  Dwarf_Off next = 0;
  size_t header = 0;
  while (dwarf_nextcu(dwarf_, off, &next, &header, nullptr, nullptr, nullptr) == 0 && budget > 0) {
    Dwarf_Die cu;
    if (dwarf_offdie(dwarf_, off + header, &cu) != nullptr &&
        !index_cu_fast(&cu, off, next, &budget)) {
      index_cu(&cu, next, &budget);
    }
    off = next;
  }
  std::sort(function_ranges_.begin(), function_ranges_.end(),
            [](const FunctionRange& a, const FunctionRange& b) { return a.lo < b.lo; });
}

void DwarfInfo::index_cu(Dwarf_Die* cu, Dwarf_Off cu_end, size_t* budget) const {
  Dwarf_Files* files = nullptr;
  size_t nfiles = 0;
  if (dwarf_getsrcfiles(cu, &files, &nfiles) != 0) files = nullptr;
  // Iterative depth-bounded walk over namespaces, classes and functions: functions with code are
  // indexed (with their inlines, in the same pass over their subtree), namespaces and classes
  // recorded as scopes, and GCC's `<ramp>.Frame` types, which it nests inside the ramp's
  // subprogram, recorded by name. Pre-order, so scopes_ stays sorted by offset.
  std::vector<PendingDie> stack;
  std::vector<PendingDie> nested;
  Dwarf_Die child;
  if (dwarf_child(cu, &child) == 0) stack.push_back({child, 1, -1, cu_end, true});
  while (!stack.empty() && *budget > 0) {
    PendingDie lv = stack.back();
    stack.pop_back();
    --*budget;
    // dwarf_tag first: it caches the DIE's abbreviation in lv.die, which dwarf_siblingof then
    // reuses (each lookup takes a lock in libdw's abbreviation table).
    const int tag = dwarf_tag(&lv.die);
    Dwarf_Die sib;
    Dwarf_Off end = lv.end;
    if (lv.with_siblings && dwarf_siblingof(&lv.die, &sib) == 0) {
      end = dwarf_dieoffset(&sib);
      stack.push_back({sib, lv.depth, lv.scope, lv.end, true});
    }
    if (tag == DW_TAG_subprogram) {
      // Member function declarations (most subprograms of a C++ object) hold no code and no
      // definitions: their definitions are separate DIEs (DW_AT_specification). The check reads
      // the abbreviation only. Classes are still walked: GCC defines a lambda's operator()
      // inside its closure type.
      if (dwarf_hasattr(&lv.die, DW_AT_declaration) != 0) continue;
      nested.clear();
      index_function(cu, lv, files, nfiles, &nested);
      stack.insert(stack.end(), nested.rbegin(), nested.rend());
      continue;
    }
    const bool is_class = tag == DW_TAG_structure_type || tag == DW_TAG_class_type;
    if (!is_class && tag != DW_TAG_namespace) continue;
    const char* name = dwarf_diename(&lv.die);
    if (is_class && name != nullptr && is_frame_type_name(name)) {
      frame_types_.emplace(name, dwarf_dieoffset(&lv.die));
    }
    if (lv.depth < kMaxIndexDepth && dwarf_haschildren(&lv.die) != 0 &&
        dwarf_child(&lv.die, &child) == 0) {
      if (name == nullptr && is_class) name = "";  // an anonymous namespace stays nullptr
      scopes_.push_back({dwarf_dieoffset(&lv.die), end, name, lv.scope});
      stack.push_back({child, lv.depth + 1, static_cast<int32_t>(scopes_.size() - 1), end, true});
    }
  }
}

bool DwarfInfo::index_cu_fast(Dwarf_Die* cu, Dwarf_Off cu_start, Dwarf_Off cu_end,
                              size_t* budget) const {
  const auto [section, section_size] = debug_info_bytes();
  DieReader reader;
  if (!reader.open(cu, cu_start, cu_end, section, section_size)) return false;
  DieReader::Die cu_die;
  if (!reader.read(dwarf_dieoffset(cu), &cu_die) || cu_die.abbrev == nullptr) return false;
  // What this unit adds, to take back if the reader fails half-way.
  const size_t functions_before = functions_.size();
  const size_t ranges_before = function_ranges_.size();
  const size_t scopes_before = scopes_.size();
  const size_t budget_before = *budget;
  std::vector<std::string> frame_types_added;
  auto fail = [&]() {
    functions_.resize(functions_before);
    function_ranges_.resize(ranges_before);
    scopes_.resize(scopes_before);
    for (const auto& name : frame_types_added) frame_types_.erase(name);
    *budget = budget_before;
    return false;
  };
  Dwarf_Files* files = nullptr;
  size_t nfiles = 0;
  if (dwarf_getsrcfiles(cu, &files, &nfiles) != 0) files = nullptr;
  // index_cu's walk, step for step: the same DIEs in the same order.
  std::vector<PendingRawDie> stack;
  std::vector<PendingRawDie> nested;
  DieReader::Die child;
  const int first = reader.child(cu_die, &child);
  if (first < 0) return fail();
  if (first == 0) stack.push_back({child, 1, -1, cu_end, true});
  while (!stack.empty() && *budget > 0) {
    PendingRawDie lv = stack.back();
    stack.pop_back();
    --*budget;
    const unsigned tag = lv.die.abbrev->tag;
    DieReader::Die sib;
    Dwarf_Off end = lv.end;
    if (lv.with_siblings) {
      const int r = reader.sibling(lv.die, &sib);
      if (r < 0) return fail();
      if (r == 0) {
        end = sib.offset;
        stack.push_back({sib, lv.depth, lv.scope, lv.end, true});
      }
    }
    if (tag == DW_TAG_subprogram) {
      if (lv.die.abbrev->declaration) continue;
      nested.clear();
      if (!index_function_fast(reader, cu, lv, files, nfiles, &nested)) return fail();
      stack.insert(stack.end(), nested.rbegin(), nested.rend());
      continue;
    }
    const bool is_class = tag == DW_TAG_structure_type || tag == DW_TAG_class_type;
    if (!is_class && tag != DW_TAG_namespace) continue;
    // Names as libdw gives them (dwarf_diename follows DW_AT_specification).
    Dwarf_Die die;
    if (dwarf_offdie(dwarf_, lv.die.offset, &die) == nullptr) return fail();
    const char* name = dwarf_diename(&die);
    if (is_class && name != nullptr && is_frame_type_name(name)) {
      if (frame_types_.emplace(name, lv.die.offset).second) frame_types_added.push_back(name);
    }
    if (lv.depth < kMaxIndexDepth && lv.die.abbrev->children) {
      const int r = reader.child(lv.die, &child);
      if (r < 0) return fail();
      if (r == 0) {
        if (name == nullptr && is_class) name = "";  // an anonymous namespace stays nullptr
        scopes_.push_back({lv.die.offset, end, name, lv.scope});
        stack.push_back({child, lv.depth + 1, static_cast<int32_t>(scopes_.size() - 1), end, true});
      }
    }
  }
  return true;
}

bool DwarfInfo::add_function(Dwarf_Die* fn, Dwarf_Die* cu) const {
  Dwarf_Addr base = 0;
  Dwarf_Addr lo = 0;
  Dwarf_Addr hi = 0;
  ptrdiff_t r = 0;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  while ((r = dwarf_ranges(fn, r, &base, &lo, &hi)) > 0 && ranges.size() < 4096) {
    if (hi > lo) ranges.emplace_back(lo, hi);
  }
  if (ranges.empty()) return false;
  const size_t index = functions_.size();
  uint64_t entry = ranges.front().first;
  for (const auto& range : ranges) entry = std::min<uint64_t>(entry, range.first);
  functions_.push_back(
      FunctionScope{dwarf_dieoffset(fn), dwarf_dieoffset(cu), entry, -1, {}, nullptr});
  for (const auto& [a, b] : ranges) function_ranges_.push_back({a, b, index});
  return true;
}

bool DwarfInfo::index_function_fast(const DieReader& reader, Dwarf_Die* cu,
                                    const PendingRawDie& pending, Dwarf_Files* files, size_t nfiles,
                                    std::vector<PendingRawDie>* nested) const {
  Dwarf_Die fn;
  if (dwarf_offdie(dwarf_, pending.die.offset, &fn) == nullptr) return false;
  const size_t index = functions_.size();
  const bool has_code = add_function(&fn, cu);
  // index_function's walk of the subtree, step for step.
  struct Level {
    DieReader::Die die;
    int depth;
    int lexical;
    bool in_inline;
  };
  std::vector<Level> stack;
  DieReader::Die child;
  const int first = reader.child(pending.die, &child);
  if (first < 0) return false;
  if (first == 0) stack.push_back({child, 1, 0, false});
  size_t budget = 1'000'000;
  while (!stack.empty() && --budget > 0) {
    Level lv = stack.back();
    stack.pop_back();
    const unsigned tag = lv.die.abbrev->tag;
    DieReader::Die sib;
    const int s = reader.sibling(lv.die, &sib);
    if (s < 0) return false;
    if (s == 0) stack.push_back({sib, lv.depth, lv.lexical, lv.in_inline});
    if (tag == DW_TAG_inlined_subroutine && has_code) {
      DieReader::InlineValues at;
      if (!reader.inline_values(lv.die, &at)) return false;
      uint64_t high = at.high_is_offset ? at.low + at.high : at.high;
      const bool simple =
          !at.needs_libdw && at.has_low && at.has_high && (!at.high_is_offset || high >= at.low);
      const char* file = at.file < nfiles && files != nullptr
                             ? dwarf_filesrc(files, at.file, nullptr, nullptr)
                             : nullptr;
      const int line = at.line > 0x7fffffff ? 0 : static_cast<int>(at.line);
      const int column = at.column > 0x7fffffff ? 0 : static_cast<int>(at.column);
      if (simple) {
        if (high > at.low) {
          auto& inlines = functions_[index].inlines;
          inlines.push_back({at.low, high, lv.die.offset, file, lv.depth, line, column, -1, 1, 0});
        }
      } else {
        Dwarf_Die die;
        if (dwarf_offdie(dwarf_, lv.die.offset, &die) == nullptr) return false;
        if (at.has_ranges && !at.site_needs_libdw) {
          // With DW_AT_ranges libdw's path takes the ranges whatever low/high say: only
          // those from libdw, the call site as decoded here.
          add_inline_ranges(&die, index, lv.depth, file, line, column);
        } else {
          add_inline_from_libdw(&die, index, lv.depth, files, nfiles);
        }
      }
    }
    if ((tag == DW_TAG_inlined_subroutine || tag == DW_TAG_lexical_block) && lv.depth < 256 &&
        lv.die.abbrev->children) {
      const int c = reader.child(lv.die, &child);
      if (c < 0) return false;
      if (c == 0) {
        const bool inlined = tag == DW_TAG_inlined_subroutine;
        stack.push_back({child, inlined ? lv.depth + 1 : lv.depth,
                         inlined ? lv.lexical : lv.lexical + 1, lv.in_inline || inlined});
        continue;
      }
    }
    if (!lv.in_inline && pending.depth + lv.lexical < kMaxIndexDepth &&
        (tag == DW_TAG_subprogram || tag == DW_TAG_structure_type || tag == DW_TAG_class_type ||
         tag == DW_TAG_namespace)) {
      nested->push_back({lv.die, pending.depth + 1 + lv.lexical, pending.scope, 0, false});
    }
  }
  if (has_code) close_inline_subtrees(&functions_[index].inlines);
  return true;
}

void DwarfInfo::index_function(Dwarf_Die* cu, const PendingDie& pending, Dwarf_Files* files,
                               size_t nfiles, std::vector<PendingDie>* nested) const {
  Dwarf_Die fn = pending.die;
  const size_t index = functions_.size();
  const bool has_code = add_function(&fn, cu);
  // One walk of the subtree: the inlined calls under this function with their nesting depth
  // (when it has code), and, outside inlined calls, the nested subprograms and types the CU
  // walk visits next.
  struct Level {
    Dwarf_Die die;
    int depth;    // inline nesting
    int lexical;  // lexical block nesting
    bool in_inline;
  };
  std::vector<Level> stack;
  Dwarf_Die child;
  if (dwarf_haschildren(&fn) != 0 && dwarf_child(&fn, &child) == 0) {
    stack.push_back({child, 1, 0, false});
  }
  size_t budget = 1'000'000;
  while (!stack.empty() && --budget > 0) {
    Level lv = stack.back();
    stack.pop_back();
    const int tag = dwarf_tag(&lv.die);  // first, as in index_cu
    Dwarf_Die sib;
    if (dwarf_siblingof(&lv.die, &sib) == 0) {
      stack.push_back({sib, lv.depth, lv.lexical, lv.in_inline});
    }
    if (tag == DW_TAG_inlined_subroutine && has_code) {
      add_inline_from_libdw(&lv.die, index, lv.depth, files, nfiles);
    }
    if ((tag == DW_TAG_inlined_subroutine || tag == DW_TAG_lexical_block) && lv.depth < 256 &&
        dwarf_haschildren(&lv.die) != 0 && dwarf_child(&lv.die, &child) == 0) {
      const bool inlined = tag == DW_TAG_inlined_subroutine;
      stack.push_back({child, inlined ? lv.depth + 1 : lv.depth,
                       inlined ? lv.lexical : lv.lexical + 1, lv.in_inline || inlined});
    } else if (!lv.in_inline && pending.depth + lv.lexical < kMaxIndexDepth &&
               (tag == DW_TAG_subprogram || tag == DW_TAG_structure_type ||
                tag == DW_TAG_class_type || tag == DW_TAG_namespace)) {
      nested->push_back({lv.die, pending.depth + 1 + lv.lexical, pending.scope, 0, false});
    }
  }
  if (has_code) close_inline_subtrees(&functions_[index].inlines);
}

void DwarfInfo::add_inline_from_libdw(Dwarf_Die* die, size_t function, int depth,
                                      Dwarf_Files* files, size_t nfiles) const {
  // One pass over the DIE's attributes instead of one search per attribute.
  InlineAttrs at;
  dwarf_getattrs(die, collect_inline_attr, &at, 0);
  const char* file = at.file < nfiles && files != nullptr
                         ? dwarf_filesrc(files, at.file, nullptr, nullptr)
                         : nullptr;
  const int line = at.line > 0x7fffffff ? 0 : static_cast<int>(at.line);
  const int column = at.column > 0x7fffffff ? 0 : static_cast<int>(at.column);
  auto& inlines = functions_[function].inlines;
  const size_t first = inlines.size();
  const Dwarf_Off die_off = dwarf_dieoffset(die);
  uint64_t high = 0;
  if (!at.has_ranges && at.has_low && at.has_high && inline_high_pc(at, &high)) {
    if (high > at.low) {
      inlines.push_back({at.low, high, die_off, file, depth, line, column, -1, 0, 0});
    }
    if (inlines.size() > first) inlines[first].ranges = inlines.size() - first;
  } else {
    add_inline_ranges(die, function, depth, file, line, column);
  }
}

void DwarfInfo::add_inline_ranges(Dwarf_Die* die, size_t function, int depth, const char* file,
                                  int line, int column) const {
  auto& inlines = functions_[function].inlines;
  const size_t first = inlines.size();
  const Dwarf_Off die_off = dwarf_dieoffset(die);
  Dwarf_Addr base = 0;
  Dwarf_Addr lo = 0;
  Dwarf_Addr hi = 0;
  ptrdiff_t ir = 0;
  int n = 0;
  while ((ir = dwarf_ranges(die, ir, &base, &lo, &hi)) > 0 && ++n < 4096) {
    if (hi > lo) inlines.push_back({lo, hi, die_off, file, depth, line, column, -1, 0, 0});
  }
  if (inlines.size() > first) inlines[first].ranges = inlines.size() - first;
}

void DwarfInfo::close_inline_subtrees(std::vector<InlineScope>* list) {
  // Subtree ends: the next DIE at the same or a smaller inline depth.
  auto& inlines = *list;
  std::vector<uint32_t> open;  // first entries whose subtree is still open
  for (uint32_t i = 0; i <= inlines.size(); ++i) {
    const int depth = i < inlines.size() ? inlines[i].depth : 0;
    if (i < inlines.size() && inlines[i].ranges == 0) continue;
    while (!open.empty() && inlines[open.back()].depth >= depth) {
      inlines[open.back()].subtree_end = i;
      open.pop_back();
    }
    if (i < inlines.size()) open.push_back(i);
  }
}

const DwarfInfo::FunctionScope* DwarfInfo::function_at(uint64_t vaddr) const {
  if (!indexed_) build_index();
  auto it = std::upper_bound(function_ranges_.begin(), function_ranges_.end(), vaddr,
                             [](uint64_t v, const FunctionRange& r) { return v < r.lo; });
  // Top-level function ranges do not nest; look back a little in case of odd overlaps.
  for (int n = 0; it != function_ranges_.begin() && n < 8; ++n) {
    --it;
    if (vaddr < it->hi) return &functions_[it->function];
  }
  return nullptr;
}

const std::string& DwarfInfo::name_of(Dwarf_Off off, int32_t* cached, uint64_t entry) const {
  if (*cached >= 0) return names_[*cached];
  Dwarf_Die die;
  if (dwarf_offdie(dwarf_, off, &die) == nullptr) {
    *cached = 0;  // names_[0] is ""
    return names_[0];
  }
  // Inlined calls and out-of-line copies of one function share its abstract origin: one
  // demangling for all of them.
  Dwarf_Off key = off;
  Dwarf_Attribute attr;
  Dwarf_Die origin;
  if (dwarf_attr(&die, DW_AT_abstract_origin, &attr) != nullptr &&
      dwarf_formref_die(&attr, &origin) != nullptr) {
    key = dwarf_dieoffset(&origin);
  }
  if (auto it = name_by_origin_.find(key); it != name_by_origin_.end()) {
    // A function of its own without linkage name may be named from its symbol instead.
    if (entry == 0 || names_linked_[it->second] != 0) {
      *cached = it->second;
      return names_[it->second];
    }
  }
  std::string name;
  bool shared = true;
  const char* linkage = linkage_name(&die);
  if (linkage != nullptr) {
    // The same function in several CUs has one abstract origin per CU but one linkage string
    // (.debug_str is merged): one demangling for all of them.
    auto [it, inserted] = name_by_linkage_.try_emplace(linkage, -1);
    if (!inserted) {
      *cached = it->second;
      name_by_origin_.emplace(key, *cached);
      return names_[*cached];
    }
    it->second = static_cast<int32_t>(names_.size());
    name = demangle(linkage);
    // Manglings newer than the C++ runtime's demangler (clang 19 writes `Tk` for constrained
    // template parameters, which GCC 12's does not know): DWARF's qualified name instead of the
    // mangled string, which no reader wants to see.
    if (name == linkage) {
      if (std::string qualified = qualified_name(&die); !qualified.empty()) name = qualified;
    }
  } else {
    // No linkage name (GCC's coroutine actor/destroy parts, internal linkage): DWARF's name
    // qualified by its namespaces and classes; for code of its own, the symbol at its entry
    // when that symbol names it, which adds the parameters.
    name = qualified_name(&die);
    if (entry != 0 && !name.empty() && object_ != nullptr) {
      const ElfSymbol* sym = object_->function_at(entry);
      if (sym != nullptr && sym->value == entry) {
        std::string symbol = demangle(sym->name);
        if (symbol != sym->name && strip_clone_suffixes(&symbol) && symbol_names(symbol, name)) {
          name = std::move(symbol);
          shared = false;
        }
      }
    }
  }
  names_.push_back(std::move(name));
  names_linked_.push_back(linkage != nullptr ? 1 : 0);
  *cached = static_cast<int32_t>(names_.size() - 1);
  if (shared) name_by_origin_.emplace(key, *cached);
  return names_.back();
}

std::string DwarfInfo::qualified_name(Dwarf_Die* die) const {
  const char* base = dwarf_diename(die);
  if (base == nullptr) return "";
  std::string name = base;
  // Only DIEs of this file's .debug_info have scopes here (not a supplementary file's).
  Dwarf_Die check;
  const Dwarf_Off off = dwarf_dieoffset(die);
  if (dwarf_offdie(dwarf_, off, &check) == nullptr || check.addr != die->addr) return name;
  auto it = std::upper_bound(scopes_.begin(), scopes_.end(), off,
                             [](Dwarf_Off v, const Scope& s) { return v < s.start; });
  if (it == scopes_.begin()) return name;
  int32_t s = static_cast<int32_t>(it - scopes_.begin()) - 1;
  while (s >= 0 && off >= scopes_[s].end) s = scopes_[s].parent;
  for (int hops = 0; s >= 0 && hops < 64; ++hops, s = scopes_[s].parent) {
    const char* scope = scopes_[s].name;
    if (scope == nullptr) {
      name.insert(0, "(anonymous namespace)::");
    } else if (*scope != '\0') {
      name.insert(0, std::string(scope) + "::");
    }
  }
  return name;
}

void DwarfInfo::build_inline_tree(const FunctionScope& fn) const {
  const auto& inlines = fn.inlines;
  const uint32_t root = static_cast<uint32_t>(inlines.size());
  auto tree = std::make_unique<InlineTree>();
  // Parent of each group: the nearest earlier group whose subtree holds it, which is where the
  // scan (next sibling = subtree end) reaches it from.
  std::vector<uint32_t> parent(inlines.size(), root);
  std::vector<uint32_t> open;
  tree->nodes.assign(inlines.size() + 1, InlineTree::Node{0, 0, 0, 0});
  for (uint32_t i = 0; i < root; ++i) {
    if (inlines[i].ranges == 0) continue;
    while (!open.empty() && inlines[open.back()].subtree_end <= i) open.pop_back();
    parent[i] = open.empty() ? root : open.back();
    ++tree->nodes[parent[i]].child_end;  // a count for now
    open.push_back(i);
  }
  uint32_t at = 0;
  for (auto& node : tree->nodes) {
    const uint32_t count = node.child_end;
    node.child_begin = node.child_end = at;
    at += count;
  }
  tree->children.resize(at);
  for (uint32_t i = 0; i < root; ++i) {
    if (inlines[i].ranges == 0) continue;
    InlineTree::Child c{inlines[i].lo, inlines[i].hi, i, inlines[i].ranges};
    for (uint32_t k = i + 1; k < i + inlines[i].ranges && k < root; ++k) {
      c.lo = std::min(c.lo, inlines[k].lo);
      c.hi = std::max(c.hi, inlines[k].hi);
    }
    tree->children[tree->nodes[parent[i]].child_end++] = c;
  }
  // Sorted ranges for the long child lists only: short ones are scanned.
  constexpr uint32_t kScanLimit = 8;
  for (auto& node : tree->nodes) {
    if (node.child_end - node.child_begin <= kScanLimit) continue;
    const size_t first = tree->spans.size();
    for (uint32_t c = node.child_begin; c < node.child_end; ++c) {
      const uint32_t g = tree->children[c].group;
      for (uint32_t k = g; k < g + inlines[g].ranges && k < root; ++k) {
        tree->spans.push_back({inlines[k].lo, inlines[k].hi, 0, g, inlines[g].ranges});
      }
    }
    std::sort(tree->spans.begin() + first, tree->spans.end(),
              [](const InlineTree::Span& a, const InlineTree::Span& b) { return a.lo < b.lo; });
    uint64_t max_hi = 0;
    for (size_t k = first; k < tree->spans.size(); ++k) {
      max_hi = std::max(max_hi, tree->spans[k].hi);
      tree->spans[k].max_hi = max_hi;
    }
    node.span_begin = static_cast<uint32_t>(first);
    node.span_end = static_cast<uint32_t>(tree->spans.size());
  }
  fn.tree = std::move(tree);
}

void DwarfInfo::visit_inline_tree(const FunctionScope& fn, uint32_t node, uint64_t vaddr,
                                  const InlineScope** chain, size_t* n, size_t cap) const {
  const auto& inlines = fn.inlines;
  const InlineTree& tree = *fn.tree;
  const InlineTree::Node& nd = tree.nodes[node];
  // The last range of group g holding vaddr, as the scan picks it; a group of one range that
  // holds it is its own entry.
  auto hit_in = [&](uint32_t g, uint32_t ranges) -> const InlineScope* {
    if (ranges == 1) return &inlines[g];
    const InlineScope* hit = nullptr;
    for (size_t k = g; k < g + std::max<uint32_t>(ranges, 1) && k < inlines.size(); ++k) {
      if (vaddr >= inlines[k].lo && vaddr < inlines[k].hi) hit = &inlines[k];
    }
    return hit;
  };
  if (nd.span_end > nd.span_begin) {
    // Ranges starting at or below vaddr, walked down while one of them may still reach it.
    std::pair<uint32_t, uint32_t> found[64];  // group, ranges
    size_t nfound = 0;
    bool overflow = false;
    const auto* begin = tree.spans.data() + nd.span_begin;
    const auto* end = tree.spans.data() + nd.span_end;
    const auto* it = std::upper_bound(
        begin, end, vaddr, [](uint64_t v, const InlineTree::Span& s) { return v < s.lo; });
    while (it != begin && (it - 1)->max_hi > vaddr) {
      --it;
      if (vaddr >= it->hi) continue;
      if (nfound == std::size(found)) {
        overflow = true;  // pathological overlap: the scan below
        break;
      }
      found[nfound++] = {it->group, it->ranges};
    }
    if (!overflow) {
      std::sort(found, found + nfound);
      nfound = std::unique(found, found + nfound) - found;
      for (size_t k = 0; k < nfound && *n < cap; ++k) {
        const InlineScope* hit = hit_in(found[k].first, found[k].second);
        if (hit == nullptr) continue;
        chain[(*n)++] = hit;
        visit_inline_tree(fn, found[k].first, vaddr, chain, n, cap);
      }
      return;
    }
  }
  for (uint32_t c = nd.child_begin; c < nd.child_end && *n < cap; ++c) {
    const InlineTree::Child& child = tree.children[c];
    if (vaddr < child.lo || vaddr >= child.hi) continue;
    const InlineScope* hit = hit_in(child.group, child.ranges);
    if (hit == nullptr) continue;
    chain[(*n)++] = hit;
    visit_inline_tree(fn, child.group, vaddr, chain, n, cap);
  }
}

size_t DwarfInfo::inline_chain(const FunctionScope& fn, uint64_t vaddr, const InlineScope** chain,
                               size_t cap) const {
  const auto& inlines = fn.inlines;
  size_t n = 0;
  if (inlines.size() > 32) {
    if (fn.tree == nullptr) build_inline_tree(fn);
    visit_inline_tree(fn, static_cast<uint32_t>(inlines.size()), vaddr, chain, &n, cap);
    return n;
  }
  for (size_t i = 0; i < inlines.size() && n < cap;) {
    const InlineScope& first = inlines[i];
    const size_t group_end = i + std::max<uint32_t>(first.ranges, 1);
    const InlineScope* hit = nullptr;
    for (size_t k = i; k < group_end && k < inlines.size(); ++k) {
      if (vaddr >= inlines[k].lo && vaddr < inlines[k].hi) hit = &inlines[k];
    }
    if (hit != nullptr) {
      chain[n++] = hit;
      i = group_end;  // into the calls nested in this one
    } else {
      i = std::max<size_t>(first.subtree_end, group_end);
    }
  }
  return n;
}

void DwarfInfo::frame_refs_at(uint64_t vaddr, std::vector<FrameRef>* out) const {
  out->clear();
  const FunctionScope* fn = function_at(vaddr);
  // The line from the CU that .debug_aranges names, not the function's CU: where two function
  // DIEs claim the address (one seen at 0x3ad50 of the asyncprobe binary) they disagree.
  FrameRef here;
  line_ref_at(vaddr, &here);
  if (fn == nullptr) {
    if (here.line != 0) out->push_back(here);
    return;
  }
  const InlineScope* chain[256];
  const size_t n = inline_chain(*fn, vaddr, chain, std::size(chain));
  std::sort(chain, chain + n,
            [](const InlineScope* a, const InlineScope* b) { return a->depth > b->depth; });
  for (size_t k = 0; k < n; ++k) {
    const InlineScope* in = chain[k];
    here.function = name_of(in->die, &in->name, 0);
    here.inlined = true;
    out->push_back(here);
    here = FrameRef{
        {}, in->call_file != nullptr ? in->call_file : "", in->call_line, in->call_column, false};
  }
  here.function = name_of(fn->die, &fn->name, fn->entry);
  out->push_back(here);
}

std::vector<InlineFrame> DwarfInfo::frames_at(uint64_t vaddr) const {
  std::vector<FrameRef> refs;
  frame_refs_at(vaddr, &refs);
  std::vector<InlineFrame> frames;
  frames.reserve(refs.size());
  for (const FrameRef& r : refs) {
    frames.push_back(
        {std::string(r.function), SourceLine{std::string(r.file), r.line, r.column}, r.inlined});
  }
  return frames;
}

std::optional<SourceLine> DwarfInfo::function_decl(uint64_t vaddr) const {
  const FunctionScope* fn = function_at(vaddr);
  if (fn == nullptr) return std::nullopt;
  Dwarf_Die die;
  Dwarf_Die cu;
  if (dwarf_offdie(dwarf_, fn->die, &die) == nullptr ||
      dwarf_offdie(dwarf_, fn->cu, &cu) == nullptr) {
    return std::nullopt;
  }
  // decl_file/decl_line often sit on the abstract origin or the declaration (clones, actors).
  int line = udata_attr_integrate(&die, DW_AT_decl_line);
  if (line == 0) return std::nullopt;
  Dwarf_Attribute attr;
  Dwarf_Word idx = 0;
  std::string file;
  Dwarf_Files* files = nullptr;
  size_t nfiles = 0;
  if (dwarf_attr_integrate(&die, DW_AT_decl_file, &attr) != nullptr &&
      dwarf_formudata(&attr, &idx) == 0 && dwarf_getsrcfiles(&cu, &files, &nfiles) == 0 &&
      idx < nfiles) {
    const char* f = dwarf_filesrc(files, idx, nullptr, nullptr);
    if (f != nullptr) file = f;
  }
  return SourceLine{file, line, 0};
}

std::optional<StructLayout> DwarfInfo::coroutine_frame_type(const std::string& name) const {
  if (!indexed_) build_index();
  auto it = frame_types_.find(name);
  if (it == frame_types_.end()) return std::nullopt;
  Dwarf_Die die;
  if (dwarf_offdie(dwarf_, it->second, &die) == nullptr) return std::nullopt;
  return read_struct(&die);
}

bool DwarfInfo::find_variable(uint64_t entry, const std::string& var, Dwarf_Die* out) const {
  const FunctionScope* fn = function_at(entry);
  Dwarf_Die die;
  if (fn == nullptr || dwarf_offdie(dwarf_, fn->die, &die) == nullptr) return false;
  if (dwarf_child(&die, out) != 0) return false;
  for (int k = 0; k < 100000; ++k) {
    int tag = dwarf_tag(out);
    const char* name = dwarf_diename(out);
    if ((tag == DW_TAG_variable || tag == DW_TAG_formal_parameter) && name != nullptr &&
        var == name) {
      return true;
    }
    if (dwarf_siblingof(out, out) != 0) break;
  }
  return false;
}

std::optional<StructLayout> DwarfInfo::pointee_of_variable(uint64_t entry,
                                                           const std::string& var) const {
  Dwarf_Die variable, type;
  Dwarf_Attribute attr;
  if (find_variable(entry, var, &variable) && member_type(&variable, &type) &&
      dwarf_tag(&type) == DW_TAG_pointer_type &&
      dwarf_attr_integrate(&type, DW_AT_type, &attr) != nullptr &&
      dwarf_formref_die(&attr, &type) != nullptr) {
    return read_struct(&type);
  }
  return std::nullopt;
}

std::optional<VariableType> DwarfInfo::class_type_of_variable(uint64_t entry,
                                                              const std::string& var) const {
  Dwarf_Die variable, type;
  if (!find_variable(entry, var, &variable) || !member_type(&variable, &type)) {
    return std::nullopt;
  }
  const int tag = dwarf_tag(&type);
  if (tag != DW_TAG_structure_type && tag != DW_TAG_class_type) return std::nullopt;
  VariableType out;
  if (const char* name = dwarf_diename(&type)) out.type_name = name;
  Dwarf_Word size = 0;
  if (dwarf_aggregate_size(&type, &size) == 0) out.byte_size = size;
  size_t budget = 4096;
  // libc++'s std::optional and std::variant nest a dozen bases deep.
  out.alignment = type_alignment(&type, 24, &budget);
  budget = 4096;
  collect_exception_ptrs(&type, 0, 6, &budget, &out.exception_ptr_offsets);
  return out;
}

std::optional<StructLayout> DwarfInfo::read_struct(Dwarf_Die* die) const {
  if (!strip_type(die)) return std::nullopt;
  int tag = dwarf_tag(die);
  if (tag != DW_TAG_structure_type && tag != DW_TAG_class_type) return std::nullopt;
  StructLayout layout;
  const char* name = dwarf_diename(die);
  if (name != nullptr) layout.name = name;
  Dwarf_Word size = 0;
  if (dwarf_aggregate_size(die, &size) == 0) layout.byte_size = size;
  Dwarf_Die member;
  if (dwarf_child(die, &member) != 0) return layout;
  for (int i = 0; i < 100000; ++i) {
    if (dwarf_tag(&member) == DW_TAG_member) {
      Dwarf_Attribute attr;
      Dwarf_Word offset = 0;
      const char* mname = dwarf_diename(&member);
      if (mname != nullptr && dwarf_attr(&member, DW_AT_data_member_location, &attr) != nullptr &&
          dwarf_formudata(&attr, &offset) == 0) {
        StructMember sm{mname, offset, type_size(&member), {}};
        Dwarf_Die type;
        size_t budget = 4096;
        if (member_type(&member, &type)) {
          collect_exception_ptrs(&type, 0, 6, &budget, &sm.exception_ptr_offsets);
        }
        layout.members.push_back(std::move(sm));
      }
    }
    if (dwarf_siblingof(&member, &member) != 0) break;
  }
  return layout;
}

}  // namespace asyncprobe::symbolizer
