// DieReader against libdw on one unit, DIE by DIE, without a test framework, for two users: the
// unit test (symbolizer_index_test.cpp) requires the reader to answer on every DIE of real
// objects; the fuzz target (tests/fuzz/fuzz_die_reader.cpp) lets the reader fail (the index then
// walks the unit through libdw) but never disagree where it answers.
#pragma once

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <gelf.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "symbolizer/dwarf_die_reader.h"

namespace asyncprobe::symbolizer::testing {

// .debug_info's bytes as libdw reads them (what DwarfInfo hands to DieReader::open).
inline std::pair<const void*, size_t> debug_info_section(Dwarf* dw) {
  Elf* elf = dwarf_getelf(dw);
  size_t shstrndx = 0;
  if (elf == nullptr || elf_getshdrstrndx(elf, &shstrndx) != 0) return {nullptr, 0};
  for (Elf_Scn* scn = elf_nextscn(elf, nullptr); scn != nullptr; scn = elf_nextscn(elf, scn)) {
    GElf_Shdr shdr;
    const char* name =
        gelf_getshdr(scn, &shdr) != nullptr ? elf_strptr(elf, shstrndx, shdr.sh_name) : nullptr;
    if (name == nullptr || std::strcmp(name, ".debug_info") != 0) continue;
    Elf_Data* data = elf_getdata(scn, nullptr);
    return data != nullptr ? std::make_pair(static_cast<const void*>(data->d_buf), data->d_size)
                           : std::make_pair(nullptr, size_t{0});
  }
  return {nullptr, 0};
}

// dwarf_formudata of attribute `name`, `missing` without one.
inline uint64_t die_udata(Dwarf_Die* die, int name, uint64_t missing) {
  Dwarf_Attribute attr;
  Dwarf_Word v = 0;
  if (dwarf_attr(die, name, &attr) == nullptr || dwarf_formudata(&attr, &v) != 0) return missing;
  return v;
}

struct DieWalkCounts {
  size_t dies = 0;
  size_t inlines = 0;
  size_t inlines_read = 0;     // inlined calls whose pc range the reader decoded itself
  size_t reader_failures = 0;  // answers the reader declined (-1 / false)
};

struct DieWalkLimits {
  bool reader_must_answer = true;  // a declined answer is a mismatch
  size_t max_dies = SIZE_MAX;      // over all walks sharing one DieWalkCounts
};

// Walks the tree under `top` (libdw's DIE) and `raw` (the reader's DIE at the same offset) with
// dwarf_child/dwarf_siblingof and the reader side by side: offsets, tags, DW_AT_declaration,
// and the inlined calls' values wherever the index would take them from the reader. "" when
// they agree, else the first disagreement.
inline std::string compare_die_walk(Dwarf_Die top, const DieReader& reader, DieReader::Die raw,
                                    const DieWalkLimits& limits, DieWalkCounts* n) {
  const auto at = [](const char* what, Dwarf_Off offset) {
    return std::string(what) + " at DIE offset " + std::to_string(offset);
  };
  struct Pending {
    Dwarf_Die die;
    DieReader::Die raw;
  };
  std::vector<Pending> stack{{top, raw}};  // explicit: hostile input nests without bound
  while (!stack.empty() && n->dies < limits.max_dies) {
    Pending p = stack.back();
    stack.pop_back();
    ++n->dies;
    const Dwarf_Off offset = dwarf_dieoffset(&p.die);
    if (offset != p.raw.offset) {
      return at("offsets differ: reader", p.raw.offset) + ", libdw " + std::to_string(offset);
    }
    if (p.raw.abbrev == nullptr) return at("reader gave a null entry as a DIE", offset);
    const int tag = dwarf_tag(&p.die);
    if (static_cast<unsigned>(tag) != p.raw.abbrev->tag) {
      return at("tags differ: reader", offset) + ": " + std::to_string(p.raw.abbrev->tag) +
             ", libdw " + std::to_string(tag);
    }
    if ((dwarf_hasattr(&p.die, DW_AT_declaration) != 0) != p.raw.abbrev->declaration) {
      return at("DW_AT_declaration differs", offset);
    }
    if (tag == DW_TAG_inlined_subroutine) {
      ++n->inlines;
      DieReader::InlineValues v;
      if (!reader.inline_values(p.raw, &v)) {
        if (limits.reader_must_answer) return at("inline_values failed", offset);
        ++n->reader_failures;
      } else {
        // The values DwarfInfo::index_function_fast takes from the reader: the call site
        // unless site_needs_libdw, the pc range when it is "simple".
        if (!v.site_needs_libdw && (v.file != die_udata(&p.die, DW_AT_call_file, ~uint64_t{0}) ||
                                    v.line != die_udata(&p.die, DW_AT_call_line, 0) ||
                                    v.column != die_udata(&p.die, DW_AT_call_column, 0))) {
          return at("call file/line/column differ", offset);
        }
        const uint64_t high = v.high_is_offset ? v.low + v.high : v.high;
        if (!v.needs_libdw && v.has_low && v.has_high && (!v.high_is_offset || high >= v.low)) {
          ++n->inlines_read;
          Dwarf_Addr low_libdw = 0;
          Dwarf_Addr high_libdw = 0;
          if (dwarf_lowpc(&p.die, &low_libdw) != 0 || dwarf_highpc(&p.die, &high_libdw) != 0) {
            return at("libdw has no low/high pc where the reader read them", offset);
          }
          if (low_libdw != v.low || high_libdw != high) return at("pc range differs", offset);
        }
      }
    }
    // A declined answer ends that branch (DwarfInfo walks the whole unit through libdw then);
    // any other answer must be libdw's.
    const auto check = [&](const char* what, int libdw, int mine) -> std::string {
      if (mine < 0) {
        if (limits.reader_must_answer) return at(what, offset) + ": the reader failed";
        ++n->reader_failures;
        return "";
      }
      if (mine != libdw) {
        return at(what, offset) + ": reader " + std::to_string(mine) + ", libdw " +
               std::to_string(libdw);
      }
      return "";
    };
    Pending next;
    const int has_next = dwarf_siblingof(&p.die, &next.die);
    const int raw_next = reader.sibling(p.raw, &next.raw);
    if (std::string e = check("sibling", has_next, raw_next); !e.empty()) return e;
    if (raw_next == 0) stack.push_back(next);
    Pending child;
    const int has_child = dwarf_child(&p.die, &child.die);
    const int raw_child = reader.child(p.raw, &child.raw);
    if (std::string e = check("child", has_child, raw_child); !e.empty()) return e;
    if (raw_child == 0) stack.push_back(child);  // pre-order: the subtree before the sibling
  }
  return "";
}

}  // namespace asyncprobe::symbolizer::testing
