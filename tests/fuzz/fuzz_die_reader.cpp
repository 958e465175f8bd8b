// The symbolizer's own DIE reader (symbolizer/dwarf_die_reader.h) on hostile .debug_abbrev and
// .debug_info bytes, differentially against libdw: wherever the reader answers (a child, a
// sibling, a tag, an inlined call's values) the answer must be libdw's, else the index would
// differ from the libdw walk it replaces; a declined answer is fine (that unit goes through
// libdw). Input: [u16 LE n][n bytes .debug_abbrev][u16 LE m][m bytes .debug_info][.debug_str],
// wrapped into a minimal ELF64 in memory. Seeds: tests/fuzz/corpus/die_reader/.
#include <dwarf.h>
#include <elf.h>
#include <elfutils/libdw.h>
#include <libelf.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "symbolizer/dwarf_die_reader.h"
#include "tests/unit/die_reader_compare.h"

namespace {

using asyncprobe::symbolizer::DieReader;
namespace cmp = asyncprobe::symbolizer::testing;

constexpr size_t kMaxUnits = 64;
constexpr size_t kMaxDies = 20'000;  // per input, over all units

struct Section {
  const char* name;
  const uint8_t* data;
  size_t size;
};

// The next [u16 LE length][bytes] part of the input, cut short at its end.
Section take_part(const char* name, const uint8_t** p, const uint8_t* end) {
  size_t n = 0;
  if (end - *p >= 2) {
    n = (*p)[0] | size_t{(*p)[1]} << 8;
    *p += 2;
  } else {
    *p = end;
  }
  n = std::min<size_t>(n, end - *p);
  Section s{name, *p, n};
  *p += n;
  return s;
}

// An ELF64 little-endian image holding `sections` (after the null section and .shstrtab).
std::vector<uint8_t> elf_image(const std::vector<Section>& sections) {
  std::string shstrtab(1, '\0');
  std::vector<size_t> names;
  const size_t shstrtab_name = shstrtab.size();
  shstrtab += ".shstrtab";
  shstrtab += '\0';
  for (const Section& s : sections) {
    names.push_back(shstrtab.size());
    shstrtab += s.name;
    shstrtab += '\0';
  }
  std::vector<uint8_t> image(sizeof(Elf64_Ehdr));
  std::vector<Elf64_Shdr> headers(2 + sections.size());
  const auto append = [&image](const void* bytes, size_t size) {
    const size_t at = image.size();
    image.insert(image.end(), static_cast<const uint8_t*>(bytes),
                 static_cast<const uint8_t*>(bytes) + size);
    return at;
  };
  Elf64_Shdr& strtab = headers[1];
  strtab.sh_name = shstrtab_name;
  strtab.sh_type = SHT_STRTAB;
  strtab.sh_offset = append(shstrtab.data(), shstrtab.size());
  strtab.sh_size = shstrtab.size();
  strtab.sh_addralign = 1;
  for (size_t i = 0; i < sections.size(); ++i) {
    Elf64_Shdr& h = headers[2 + i];
    h.sh_name = names[i];
    h.sh_type = SHT_PROGBITS;
    h.sh_offset = append(sections[i].data, sections[i].size);
    h.sh_size = sections[i].size;
    h.sh_addralign = 1;
  }
  image.resize((image.size() + 7) & ~size_t{7});
  Elf64_Ehdr ehdr{};
  std::memcpy(ehdr.e_ident, ELFMAG, SELFMAG);
  ehdr.e_ident[EI_CLASS] = ELFCLASS64;
  ehdr.e_ident[EI_DATA] = ELFDATA2LSB;
  ehdr.e_ident[EI_VERSION] = EV_CURRENT;
  ehdr.e_type = ET_EXEC;
  ehdr.e_machine = EM_X86_64;
  ehdr.e_version = EV_CURRENT;
  ehdr.e_ehsize = sizeof(Elf64_Ehdr);
  ehdr.e_shentsize = sizeof(Elf64_Shdr);
  ehdr.e_shnum = headers.size();
  ehdr.e_shstrndx = 1;
  ehdr.e_shoff = append(headers.data(), headers.size() * sizeof(Elf64_Shdr));
  std::memcpy(image.data(), &ehdr, sizeof(ehdr));
  return image;
}

[[noreturn]] void disagree(Dwarf_Off unit, const std::string& what) {
  std::fprintf(stderr, "DieReader disagrees with libdw in the unit at %llu: %s\n",
               static_cast<unsigned long long>(unit), what.c_str());
  __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  elf_version(EV_CURRENT);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const uint8_t* p = data;
  const uint8_t* end = data + size;
  const Section abbrev = take_part(".debug_abbrev", &p, end);
  const Section info = take_part(".debug_info", &p, end);
  const Section str{".debug_str", p, static_cast<size_t>(end - p)};
  std::vector<uint8_t> image = elf_image({abbrev, info, str});
  Elf* elf = elf_memory(reinterpret_cast<char*>(image.data()), image.size());
  if (elf == nullptr) return 0;
  Dwarf* dw = dwarf_begin_elf(elf, DWARF_C_READ, nullptr);
  if (dw != nullptr) {
    const auto [section, section_size] = cmp::debug_info_section(dw);
    cmp::DieWalkLimits limits;
    limits.reader_must_answer = false;
    limits.max_dies = kMaxDies;
    cmp::DieWalkCounts counts;
    Dwarf_Off off = 0;
    Dwarf_Off next = 0;
    size_t header = 0;
    for (size_t units = 0; units < kMaxUnits && counts.dies < kMaxDies &&
                           dwarf_nextcu(dw, off, &next, &header, nullptr, nullptr, nullptr) == 0;
         ++units, off = next) {
      // As DwarfInfo::index_cu_fast opens a unit; what it declines goes through libdw.
      Dwarf_Die cu;
      if (dwarf_offdie(dw, off + header, &cu) == nullptr) continue;
      DieReader reader;
      if (!reader.open(&cu, off, next, section, section_size)) continue;
      DieReader::Die raw;
      if (!reader.read(off + header, &raw)) continue;
      if (raw.abbrev == nullptr) continue;  // DwarfInfo declines a null unit DIE too
      const std::string mismatch = cmp::compare_die_walk(cu, reader, raw, limits, &counts);
      if (!mismatch.empty()) disagree(off, mismatch);
    }
    // FUZZ_DIE_READER_STATS=1 with seeds as arguments: how much of each input was compared.
    static const bool stats = std::getenv("FUZZ_DIE_READER_STATS") != nullptr;
    if (stats) {
      std::fprintf(stderr, "dies %zu inlines %zu inline pcs read %zu reader declined %zu\n",
                   counts.dies, counts.inlines, counts.inlines_read, counts.reader_failures);
    }
    dwarf_end(dw);
  }
  elf_end(elf);
  return 0;
}
