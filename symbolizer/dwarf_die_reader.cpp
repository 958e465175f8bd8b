#include "symbolizer/dwarf_die_reader.h"

#include <dwarf.h>

#include <cstring>

namespace asyncprobe::symbolizer {

namespace {

constexpr unsigned kMaxAbbrevCode = 1 << 16;  // larger codes: the unit goes through libdw
constexpr size_t kMaxAbbrevs = 1 << 16;
constexpr size_t kMaxAttrs = 4096;  // per abbreviation

// LEB128 within [p, end); nullptr when it runs past the end or past 64 bits.
const uint8_t* read_uleb(const uint8_t* p, const uint8_t* end, uint64_t* v) {
  uint64_t out = 0;
  for (unsigned shift = 0; p < end && shift < 64; shift += 7) {
    const uint8_t b = *p++;
    out |= uint64_t{b & 0x7fu} << shift;
    if ((b & 0x80) == 0) {
      *v = out;
      return p;
    }
  }
  return nullptr;
}

const uint8_t* skip_leb(const uint8_t* p, const uint8_t* end) {
  for (int n = 0; p < end && n < 10; ++n) {
    if ((*p++ & 0x80) == 0) return p;
  }
  return nullptr;
}

uint64_t read_le(const uint8_t* p, unsigned n) {
  uint64_t v = 0;
  for (unsigned i = 0; i < n; ++i) v |= uint64_t{p[i]} << (8 * i);
  return v;
}

// Bytes of a value of `form` when fixed (0 for flag_present and implicit_const), -1 when the
// size depends on the value, -2 for a form the reader does not know.
int fixed_form_size(unsigned form, unsigned version, uint8_t address_size, uint8_t offset_size) {
  switch (form) {
    case DW_FORM_flag_present:
    case DW_FORM_implicit_const:
      return 0;
    case DW_FORM_data1:
    case DW_FORM_ref1:
    case DW_FORM_flag:
    case DW_FORM_strx1:
    case DW_FORM_addrx1:
      return 1;
    case DW_FORM_data2:
    case DW_FORM_ref2:
    case DW_FORM_strx2:
    case DW_FORM_addrx2:
      return 2;
    case DW_FORM_strx3:
    case DW_FORM_addrx3:
      return 3;
    case DW_FORM_data4:
    case DW_FORM_ref4:
    case DW_FORM_strx4:
    case DW_FORM_addrx4:
    case DW_FORM_ref_sup4:
      return 4;
    case DW_FORM_data8:
    case DW_FORM_ref8:
    case DW_FORM_ref_sig8:
    case DW_FORM_ref_sup8:
      return 8;
    case DW_FORM_data16:
      return 16;
    case DW_FORM_addr:
      return address_size;
    case DW_FORM_strp:
    case DW_FORM_line_strp:
    case DW_FORM_sec_offset:
    case DW_FORM_strp_sup:
    case DW_FORM_GNU_ref_alt:
    case DW_FORM_GNU_strp_alt:
      return offset_size;
    case DW_FORM_ref_addr:
      return version <= 2 ? address_size : offset_size;
    case DW_FORM_udata:
    case DW_FORM_sdata:
    case DW_FORM_ref_udata:
    case DW_FORM_strx:
    case DW_FORM_addrx:
    case DW_FORM_rnglistx:
    case DW_FORM_loclistx:
    case DW_FORM_GNU_addr_index:
    case DW_FORM_GNU_str_index:
    case DW_FORM_string:
    case DW_FORM_block1:
    case DW_FORM_block2:
    case DW_FORM_block4:
    case DW_FORM_block:
    case DW_FORM_exprloc:
      return -1;
    default:
      return -2;  // DW_FORM_indirect and unknown forms
  }
}

// A bit for each attribute whose value the reader decodes, -1 for the others.
int decoded_attr_bit(unsigned name) {
  switch (name) {
    case DW_AT_sibling:
      return 0;
    case DW_AT_low_pc:
      return 1;
    case DW_AT_high_pc:
      return 2;
    case DW_AT_ranges:
      return 3;
    case DW_AT_call_file:
      return 4;
    case DW_AT_call_line:
      return 5;
    case DW_AT_call_column:
      return 6;
    default:
      return -1;
  }
}

}  // namespace

bool DieReader::open(Dwarf_Die* cu, Dwarf_Off unit_start, Dwarf_Off unit_end, const void* section,
                     size_t section_size) {
  abbrevs_.clear();
  // libdw hands out a unit whose length runs past the section ("return the CU anyway"): the
  // reader stays inside the section libdw reads, and only that one.
  if (section == nullptr || unit_end > section_size || unit_start >= unit_end) return false;
  Dwarf_Half version = 0;
  uint8_t unit_type = 0;
  if (dwarf_cu_info(cu->cu, &version, &unit_type, nullptr, nullptr, nullptr, &address_size_,
                    &offset_size_) != 0) {
    return false;
  }
  if (version < 2 || version > 5 || (address_size_ != 4 && address_size_ != 8) ||
      (offset_size_ != 4 && offset_size_ != 8)) {
    return false;
  }
  version_ = version;
  const Dwarf_Off cu_offset = dwarf_dieoffset(cu);
  if (cu->addr == nullptr || cu_offset < unit_start || cu_offset >= unit_end) return false;
  section_ = static_cast<const uint8_t*>(section);
  if (static_cast<const uint8_t*>(cu->addr) != section_ + cu_offset) return false;
  unit_start_ = unit_start;
  unit_end_ = unit_end;
  // The unit's abbreviations, through libdw (which validated them), into a table by code.
  size_t offset = 0;
  for (size_t n = 0; n < kMaxAbbrevs; ++n) {
    size_t length = 0;
    Dwarf_Abbrev* a = dwarf_getabbrev(cu, offset, &length);
    if (a == nullptr || a == DWARF_END_ABBREV) break;
    if (length == 0) return false;
    offset += length;
    const unsigned code = dwarf_getabbrevcode(a);
    if (code == 0 || code >= kMaxAbbrevCode) return false;
    if (code >= abbrevs_.size()) abbrevs_.resize(code + 1);
    Abbrev& out = abbrevs_[code];
    if (out.tag != 0) return false;  // the same code twice
    out.tag = dwarf_getabbrevtag(a);
    if (out.tag == 0) return false;
    out.children = dwarf_abbrevhaschildren(a) != 0;
    // Attributes until libdw reports the end (dwarf_getattrcnt of elfutils 0.188 counts one
    // too many after a DW_FORM_implicit_const).
    int fixed = 0;
    unsigned decoded = 0;  // decoded_attr_bit()s seen in this abbreviation
    for (size_t i = 0;; ++i) {
      if (i == kMaxAttrs) return false;  // a list this long is left to libdw, not cut short
      unsigned name = 0;
      unsigned form = 0;
      Dwarf_Sword implicit = 0;
      Dwarf_Off attr_offset = 0;
      if (dwarf_getabbrevattr_data(a, i, &name, &form, &implicit, &attr_offset) != 0) break;
      const int size = fixed_form_size(form, version_, address_size_, offset_size_);
      if (size == -2) return false;
      // One of them twice (hostile DWARF): dwarf_attr and dwarf_siblingof take the first,
      // dwarf_getattrs (the index's libdw path) sees both; the unit is left to libdw.
      if (const int bit = decoded_attr_bit(name); bit >= 0) {
        if ((decoded & (1u << bit)) != 0) return false;
        decoded |= 1u << bit;
      }
      fixed = size < 0 || fixed < 0 ? -1 : fixed + size;
      if (name == DW_AT_declaration) out.declaration = true;
      if (name == DW_AT_sibling) out.sibling = true;
      out.attrs.push_back({name, form, implicit, size < 0 ? -1 : size});
    }
    out.fixed_size = fixed;
  }
  return true;
}

bool DieReader::read(Dwarf_Off offset, Die* die) const {
  if (offset < unit_start_ || offset >= unit_end_) return false;
  const uint8_t* end = section_ + unit_end_;
  uint64_t code = 0;
  const uint8_t* p = read_uleb(section_ + offset, end, &code);
  if (p == nullptr) return false;
  die->offset = offset;
  die->attrs = p;
  if (code == 0) {
    die->abbrev = nullptr;
    return true;
  }
  if (code >= abbrevs_.size() || abbrevs_[code].tag == 0) return false;
  die->abbrev = &abbrevs_[code];
  return true;
}

const uint8_t* DieReader::skip_form(unsigned form, const uint8_t* p) const {
  const uint8_t* end = section_ + unit_end_;
  const int size = fixed_form_size(form, version_, address_size_, offset_size_);
  if (size >= 0) return end - p >= size ? p + size : nullptr;
  uint64_t length = 0;
  switch (form) {
    case DW_FORM_string: {
      const void* nul = std::memchr(p, 0, end - p);
      return nul == nullptr ? nullptr : static_cast<const uint8_t*>(nul) + 1;
    }
    case DW_FORM_block1:
      if (end - p < 1) return nullptr;
      length = p[0];
      p += 1;
      break;
    case DW_FORM_block2:
      if (end - p < 2) return nullptr;
      length = read_le(p, 2);
      p += 2;
      break;
    case DW_FORM_block4:
      if (end - p < 4) return nullptr;
      length = read_le(p, 4);
      p += 4;
      break;
    case DW_FORM_block:
    case DW_FORM_exprloc:
      p = read_uleb(p, end, &length);
      if (p == nullptr) return nullptr;
      break;
    default:
      return size == -1 ? skip_leb(p, end) : nullptr;
  }
  return static_cast<uint64_t>(end - p) >= length ? p + length : nullptr;
}

const uint8_t* DieReader::skip_attrs(const Die& die, bool* has_sibling, uint64_t* sibling) const {
  *has_sibling = false;
  const Abbrev& a = *die.abbrev;
  const uint8_t* end = section_ + unit_end_;
  const uint8_t* p = die.attrs;
  if (a.fixed_size >= 0 && !a.sibling) return end - p >= a.fixed_size ? p + a.fixed_size : nullptr;
  for (const Abbrev::Attr& attr : a.attrs) {
    if (attr.name == DW_AT_sibling) {
      // Unit-relative references only, as libdw follows them.
      if (attr.form == DW_FORM_ref_udata) {
        if (read_uleb(p, end, sibling) == nullptr) return nullptr;
      } else if ((attr.form == DW_FORM_ref1 || attr.form == DW_FORM_ref2 ||
                  attr.form == DW_FORM_ref4 || attr.form == DW_FORM_ref8) &&
                 end - p >= attr.size) {
        *sibling = read_le(p, attr.size);
      } else {
        return nullptr;
      }
      *has_sibling = true;
    }
    if (attr.size >= 0) {
      if (end - p < attr.size) return nullptr;
      p += attr.size;
    } else {
      p = skip_form(attr.form, p);
      if (p == nullptr) return nullptr;
    }
  }
  return p;
}

int DieReader::child(const Die& die, Die* child) const {
  if (die.abbrev == nullptr) return -1;
  if (!die.abbrev->children) return 1;
  bool has_sibling = false;
  uint64_t sibling = 0;
  const uint8_t* p = skip_attrs(die, &has_sibling, &sibling);
  if (p == nullptr) return -1;
  const uint8_t* end = section_ + unit_end_;
  if (p >= end || *p == 0) return 1;
  if (!read(p - section_, child)) return -1;
  return child->abbrev == nullptr ? 1 : 0;  // a null entry (a zero code, maybe padded)
}

int DieReader::sibling(const Die& die, Die* sibling) const {
  if (die.abbrev == nullptr) return -1;
  const uint8_t* end = section_ + unit_end_;
  Die at = die;
  int level = 0;
  // As dwarf_siblingof: past each DIE (or to its DW_AT_sibling), null entries close levels.
  for (size_t guard = 0; guard < (size_t{1} << 32); ++guard) {
    bool has_sibling = false;
    uint64_t sib = 0;
    const uint8_t* p = skip_attrs(at, &has_sibling, &sib);
    if (p == nullptr) return -1;
    if (has_sibling) {
      if (sib >= unit_end_ - unit_start_ || sib <= at.offset - unit_start_) return -1;
      p = section_ + unit_start_ + sib;
    } else if (at.abbrev->children) {
      ++level;
    }
    while (true) {
      if (p >= end) return 1;
      if (*p != 0) break;
      if (level-- == 0) return 1;
      ++p;
    }
    if (!read(p - section_, &at) || at.abbrev == nullptr) return -1;
    if (level == 0) {
      *sibling = at;
      return 0;
    }
  }
  return -1;
}

bool DieReader::inline_values(const Die& die, InlineValues* out) const {
  if (die.abbrev == nullptr || out == nullptr) return false;
  const uint8_t* end = section_ + unit_end_;
  const uint8_t* p = die.attrs;
  for (const Abbrev::Attr& attr : die.abbrev->attrs) {
    const unsigned form = attr.form;
    uint64_t* udata = nullptr;
    switch (attr.name) {
      case DW_AT_call_file:
        udata = &out->file;
        break;
      case DW_AT_call_line:
        udata = &out->line;
        break;
      case DW_AT_call_column:
        udata = &out->column;
        break;
      case DW_AT_low_pc:
        if (form != DW_FORM_addr) {
          out->needs_libdw = true;
        } else if (end - p >= address_size_) {
          out->low = read_le(p, address_size_);
          out->has_low = true;
        }
        break;
      case DW_AT_high_pc:
        if (form == DW_FORM_addr && end - p >= address_size_) {
          out->high = read_le(p, address_size_);
          out->high_is_offset = false;
        } else if ((form == DW_FORM_data1 || form == DW_FORM_data2 || form == DW_FORM_data4 ||
                    form == DW_FORM_data8) &&
                   end - p >= fixed_form_size(form, version_, address_size_, offset_size_)) {
          out->high = read_le(p, fixed_form_size(form, version_, address_size_, offset_size_));
          out->high_is_offset = true;
        } else {
          out->needs_libdw = true;
        }
        out->has_high = true;
        break;
      case DW_AT_ranges:
        out->needs_libdw = true;
        out->has_ranges = true;
        break;
      default:
        break;
    }
    if (udata != nullptr) {
      // dwarf_formudata's forms for these; anything else is left to libdw.
      const int size = fixed_form_size(form, version_, address_size_, offset_size_);
      if ((form == DW_FORM_data1 || form == DW_FORM_data2 || form == DW_FORM_data4 ||
           form == DW_FORM_data8) &&
          end - p >= size) {
        *udata = read_le(p, size);
      } else if (form == DW_FORM_udata) {
        if (read_uleb(p, end, udata) == nullptr) return false;
      } else if (form == DW_FORM_implicit_const) {
        *udata = static_cast<uint64_t>(attr.implicit);
      } else {
        out->needs_libdw = true;
        out->site_needs_libdw = true;
      }
    }
    p = skip_form(form, p);
    if (p == nullptr) return false;
  }
  return true;
}

}  // namespace asyncprobe::symbolizer
