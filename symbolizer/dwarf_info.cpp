#include "symbolizer/dwarf_info.h"

#include <dwarf.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "symbolizer/demangle.h"

namespace asyncprobe::sym {

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

std::string die_function_name(Dwarf_Die* die) {
  Dwarf_Attribute attr;
  for (int at : {DW_AT_linkage_name, DW_AT_MIPS_linkage_name}) {
    if (dwarf_attr_integrate(die, at, &attr) != nullptr) {
      const char* s = dwarf_formstring(&attr);
      if (s != nullptr) return demangle(s);
    }
  }
  const char* name = dwarf_diename(die);
  if (name == nullptr && dwarf_attr_integrate(die, DW_AT_name, &attr) != nullptr) {
    name = dwarf_formstring(&attr);
  }
  return name != nullptr ? name : "";
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

const char* call_file(Dwarf_Files* files, size_t nfiles, Dwarf_Die* inlined) {
  Dwarf_Attribute attr;
  Dwarf_Word idx = 0;
  if (files == nullptr || dwarf_attr(inlined, DW_AT_call_file, &attr) == nullptr ||
      dwarf_formudata(&attr, &idx) != 0 || idx >= nfiles) {
    return nullptr;
  }
  return dwarf_filesrc(files, idx, nullptr, nullptr);
}

int udata_attr(Dwarf_Die* die, int at) {
  Dwarf_Attribute attr;
  Dwarf_Word v = 0;
  if (dwarf_attr(die, at, &attr) == nullptr || dwarf_formudata(&attr, &v) != 0) return 0;
  return v > 0x7fffffff ? 0 : static_cast<int>(v);
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
  return info;
}

DwarfInfo::~DwarfInfo() {
  if (dwarf_ != nullptr) dwarf_end(dwarf_);
}

bool DwarfInfo::find_cu(uint64_t vaddr, Dwarf_Die* cu) const {
  if (dwarf_addrdie(dwarf_, vaddr, cu) != nullptr) return true;
  if (!cu_ranges_built_) {
    cu_ranges_built_ = true;
    Dwarf_Off off = 0;
    Dwarf_Off next = 0;
    size_t header = 0;
    size_t guard = 0;
    while (dwarf_nextcu(dwarf_, off, &next, &header, nullptr, nullptr, nullptr) == 0 &&
           ++guard < 10'000'000) {
      Dwarf_Die die;
      if (dwarf_offdie(dwarf_, off + header, &die) != nullptr) {
        Dwarf_Addr base = 0;
        Dwarf_Addr lo = 0;
        Dwarf_Addr hi = 0;
        ptrdiff_t r = 0;
        int n = 0;
        while ((r = dwarf_ranges(&die, r, &base, &lo, &hi)) > 0 && ++n < 1'000'000) {
          if (hi > lo) cu_ranges_.push_back({lo, hi, off + header});
        }
      }
      off = next;
    }
    std::sort(cu_ranges_.begin(), cu_ranges_.end(),
              [](const CuRange& a, const CuRange& b) { return a.lo < b.lo; });
  }
  auto it = std::upper_bound(cu_ranges_.begin(), cu_ranges_.end(), vaddr,
                             [](uint64_t v, const CuRange& r) { return v < r.lo; });
  // Ranges of different CUs do not overlap in sane DWARF; check a few in case they do.
  for (int n = 0; it != cu_ranges_.begin() && n < 8; ++n) {
    --it;
    if (vaddr < it->hi) return dwarf_offdie(dwarf_, it->cu, cu) != nullptr;
  }
  return false;
}

std::optional<SourceLine> DwarfInfo::line_at(uint64_t vaddr) const {
  Dwarf_Die cu;
  if (!find_cu(vaddr, &cu)) return std::nullopt;
  Dwarf_Line* line = dwarf_getsrc_die(&cu, vaddr);
  if (line == nullptr) return std::nullopt;
  SourceLine out;
  const char* file = dwarf_linesrc(line, nullptr, nullptr);
  if (file != nullptr) out.file = file;
  dwarf_lineno(line, &out.line);
  dwarf_linecol(line, &out.column);
  return out;
}

void DwarfInfo::build_index() const {
  indexed_ = true;
  size_t budget = kMaxIndexedDies;
  Dwarf_Off off = 0;
  Dwarf_Off next = 0;
  size_t header = 0;
  while (dwarf_nextcu(dwarf_, off, &next, &header, nullptr, nullptr, nullptr) == 0 && budget > 0) {
    Dwarf_Die cu;
    if (dwarf_offdie(dwarf_, off + header, &cu) != nullptr) {
      Dwarf_Files* files = nullptr;
      size_t nfiles = 0;
      if (dwarf_getsrcfiles(&cu, &files, &nfiles) != 0) files = nullptr;
      // Iterative depth-bounded walk over namespaces, classes and functions: functions with code
      // are indexed (with their inlines) and GCC's `<ramp>.Frame` types, which it nests inside
      // the ramp's subprogram, are recorded by name.
      struct Level {
        Dwarf_Die die;
        int depth;
      };
      std::vector<Level> stack;
      Dwarf_Die child;
      if (dwarf_child(&cu, &child) == 0) stack.push_back({child, 1});
      while (!stack.empty() && budget > 0) {
        Level lv = stack.back();
        stack.pop_back();
        --budget;
        Dwarf_Die sib;
        if (dwarf_siblingof(&lv.die, &sib) == 0) stack.push_back({sib, lv.depth});
        int tag = dwarf_tag(&lv.die);
        if (tag == DW_TAG_structure_type || tag == DW_TAG_class_type) {
          const char* name = dwarf_diename(&lv.die);
          if (name != nullptr && is_frame_type_name(name)) {
            frame_types_.emplace(name, dwarf_dieoffset(&lv.die));
          }
        }
        if (tag == DW_TAG_subprogram) index_function(&cu, &lv.die, files, nfiles);
        bool descend = tag == DW_TAG_namespace || tag == DW_TAG_subprogram ||
                       tag == DW_TAG_structure_type || tag == DW_TAG_class_type ||
                       tag == DW_TAG_lexical_block;
        if (descend && lv.depth < kMaxIndexDepth && dwarf_haschildren(&lv.die) != 0 &&
            dwarf_child(&lv.die, &child) == 0) {
          stack.push_back({child, lv.depth + 1});
        }
      }
    }
    off = next;
  }
  std::sort(function_ranges_.begin(), function_ranges_.end(),
            [](const FunctionRange& a, const FunctionRange& b) { return a.lo < b.lo; });
}

void DwarfInfo::index_function(Dwarf_Die* cu, Dwarf_Die* fn, Dwarf_Files* files,
                               size_t nfiles) const {
  Dwarf_Addr base = 0;
  Dwarf_Addr lo = 0;
  Dwarf_Addr hi = 0;
  ptrdiff_t r = 0;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  while ((r = dwarf_ranges(fn, r, &base, &lo, &hi)) > 0 && ranges.size() < 4096) {
    if (hi > lo) ranges.emplace_back(lo, hi);
  }
  if (ranges.empty()) return;
  size_t index = functions_.size();
  functions_.push_back(FunctionScope{dwarf_dieoffset(fn), dwarf_dieoffset(cu), {}});
  for (const auto& [a, b] : ranges) function_ranges_.push_back({a, b, index});
  // The inlined calls under this function, with their nesting depth.
  struct Level {
    Dwarf_Die die;
    int depth;
  };
  std::vector<Level> stack;
  Dwarf_Die child;
  if (dwarf_child(fn, &child) == 0) stack.push_back({child, 1});
  size_t budget = 1'000'000;
  while (!stack.empty() && --budget > 0) {
    Level lv = stack.back();
    stack.pop_back();
    Dwarf_Die sib;
    if (dwarf_siblingof(&lv.die, &sib) == 0) stack.push_back({sib, lv.depth});
    int tag = dwarf_tag(&lv.die);
    int depth = lv.depth;
    if (tag == DW_TAG_inlined_subroutine) {
      const char* file = call_file(files, nfiles, &lv.die);
      const int line = udata_attr(&lv.die, DW_AT_call_line);
      const int column = udata_attr(&lv.die, DW_AT_call_column);
      ptrdiff_t ir = 0;
      int n = 0;
      while ((ir = dwarf_ranges(&lv.die, ir, &base, &lo, &hi)) > 0 && ++n < 4096) {
        if (hi > lo) {
          functions_[index].inlines.push_back(
              {lo, hi, depth, dwarf_dieoffset(&lv.die), file, line, column});
        }
      }
    }
    if ((tag == DW_TAG_inlined_subroutine || tag == DW_TAG_lexical_block) && depth < 256 &&
        dwarf_haschildren(&lv.die) != 0 && dwarf_child(&lv.die, &child) == 0) {
      stack.push_back({child, tag == DW_TAG_inlined_subroutine ? depth + 1 : depth});
    }
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

std::string DwarfInfo::name_of(Dwarf_Off off) const {
  auto it = names_.find(off);
  if (it != names_.end()) return it->second;
  Dwarf_Die die;
  std::string name;
  if (dwarf_offdie(dwarf_, off, &die) != nullptr) name = die_function_name(&die);
  names_.emplace(off, name);
  return name;
}

std::vector<InlineFrame> DwarfInfo::frames_at(uint64_t vaddr) const {
  std::vector<InlineFrame> frames;
  const FunctionScope* fn = function_at(vaddr);
  SourceLine here = line_at(vaddr).value_or(SourceLine{});
  if (fn == nullptr) {
    if (here.line != 0) frames.push_back({"", here, false});
    return frames;
  }
  std::vector<const InlineScope*> chain;
  for (const auto& in : fn->inlines) {
    if (vaddr >= in.lo && vaddr < in.hi) chain.push_back(&in);
  }
  std::sort(chain.begin(), chain.end(),
            [](const InlineScope* a, const InlineScope* b) { return a->depth > b->depth; });
  frames.reserve(chain.size() + 1);
  for (const InlineScope* in : chain) {
    frames.push_back({name_of(in->die), std::move(here), true});
    here =
        SourceLine{in->call_file != nullptr ? in->call_file : "", in->call_line, in->call_column};
  }
  frames.push_back({name_of(fn->die), std::move(here), false});
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

std::optional<StructLayout> DwarfInfo::pointee_of_variable(uint64_t entry,
                                                           const std::string& var) const {
  const FunctionScope* fn = function_at(entry);
  Dwarf_Die die;
  if (fn == nullptr || dwarf_offdie(dwarf_, fn->die, &die) == nullptr) return std::nullopt;
  Dwarf_Die child;
  if (dwarf_child(&die, &child) != 0) return std::nullopt;
  for (int k = 0; k < 100000; ++k) {
    int tag = dwarf_tag(&child);
    const char* name = dwarf_diename(&child);
    if ((tag == DW_TAG_variable || tag == DW_TAG_formal_parameter) && name != nullptr &&
        var == name) {
      Dwarf_Attribute attr;
      Dwarf_Die type;
      if (dwarf_attr_integrate(&child, DW_AT_type, &attr) != nullptr &&
          dwarf_formref_die(&attr, &type) != nullptr && strip_type(&type) &&
          dwarf_tag(&type) == DW_TAG_pointer_type &&
          dwarf_attr_integrate(&type, DW_AT_type, &attr) != nullptr &&
          dwarf_formref_die(&attr, &type) != nullptr) {
        return read_struct(&type);
      }
      return std::nullopt;
    }
    if (dwarf_siblingof(&child, &child) != 0) break;
  }
  return std::nullopt;
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
        layout.members.push_back({mname, offset, type_size(&member)});
      }
    }
    if (dwarf_siblingof(&member, &member) != 0) break;
  }
  return layout;
}

}  // namespace asyncprobe::sym
