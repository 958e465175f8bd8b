// A fast reader of one unit's DIEs, for the index walk only: tags, children, the offset past a
// subtree and the few attribute values of an inlined call, decoded straight from the bytes libdw
// mapped, with the unit's abbreviations in a table indexed by code. libdw's generic calls
// (dwarf_tag, dwarf_siblingof, dwarf_getattrs) decode the same bytes with a locked hash lookup
// per abbreviation and made the walk most of the index time. The reader follows libdw's rules
// for siblings and children; any form or structure it does not know makes it fail, and the
// caller then walks that unit through libdw, so both give the same index.
#pragma once

#include <elfutils/libdw.h>

#include <cstdint>
#include <vector>

namespace asyncprobe::symbolizer {

class DieReader {
 public:
  struct Abbrev {
    unsigned tag = 0;
    bool children = false;
    bool declaration = false;  // has DW_AT_declaration
    struct Attr {
      unsigned name, form;
      int64_t implicit;  // DW_FORM_implicit_const's value
      int size;          // of the value when fixed, else -1
    };
    std::vector<Attr> attrs;
    int fixed_size = -1;   // bytes of all attribute values when every form has a fixed size
    bool sibling = false;  // has DW_AT_sibling
  };
  // One DIE: where it starts, its abbreviation (nullptr: a null entry) and its attribute bytes.
  struct Die {
    Dwarf_Off offset = 0;
    const Abbrev* abbrev = nullptr;
    const uint8_t* attrs = nullptr;
  };
  // An inlined call's attributes, as the index reads them (see DwarfInfo::index_function).
  struct InlineValues {
    uint64_t file = ~uint64_t{0};
    uint64_t line = 0;
    uint64_t column = 0;
    uint64_t low = 0, high = 0;
    bool has_low = false, has_high = false, high_is_offset = false;
    // A form the reader does not decode here (addrx, ranges, ...): ask libdw for this DIE.
    bool needs_libdw = false;
    bool has_ranges = false;        // DW_AT_ranges: the pc ranges come from libdw
    bool site_needs_libdw = false;  // call file/line/column in a form not decoded here
  };

  // Prepares the unit of `cu` (libdw's DIE of the unit), which spans section offsets
  // [unit_start, unit_end) of `section` (the .debug_info bytes libdw reads, `section_size` of
  // them). False when the unit lies elsewhere or holds something the reader does not know.
  bool open(Dwarf_Die* cu, Dwarf_Off unit_start, Dwarf_Off unit_end, const void* section,
            size_t section_size);
  // The DIE at `offset`; false on bad data.
  bool read(Dwarf_Off offset, Die* die) const;
  // dwarf_child: 0 with the first child in `child`, 1 without children, -1 on bad data.
  int child(const Die& die, Die* child) const;
  // dwarf_siblingof: 0 with the next sibling, 1 at the end of the siblings, -1 on bad data.
  int sibling(const Die& die, Die* sibling) const;
  // False on bad data or a form this reader does not know.
  bool inline_values(const Die& die, InlineValues* out) const;

 private:
  // The end of `die`'s attribute values (its size when the abbreviation is of fixed size);
  // `sibling` gets DW_AT_sibling's unit offset when present (else 0). nullptr on bad data.
  const uint8_t* skip_attrs(const Die& die, bool* has_sibling, uint64_t* sibling) const;
  // Skips one value of `form` at `p`; nullptr on bad data or an unknown form.
  const uint8_t* skip_form(unsigned form, const uint8_t* p) const;

  const uint8_t* section_ = nullptr;  // the unit's section as libdw holds it, offset 0
  Dwarf_Off unit_start_ = 0, unit_end_ = 0;
  uint8_t address_size_ = 0, offset_size_ = 0;
  unsigned version_ = 0;
  std::vector<Abbrev> abbrevs_;  // by code
};

}  // namespace asyncprobe::symbolizer
