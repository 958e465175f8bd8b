#include "symbolizer/elf_object.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace asyncprobe::symbolizer {

namespace {

// libelf needs its version set once per process before any elf_begin.
bool init_libelf() {
  static const bool ok = elf_version(EV_CURRENT) != EV_NONE;
  return ok;
}

std::string hex(const unsigned char* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  s.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    s.push_back(digits[p[i] >> 4]);
    s.push_back(digits[p[i] & 15]);
  }
  return s;
}

}  // namespace

std::unique_ptr<ElfObject> ElfObject::open(const std::string& path, std::string* error) {
  std::unique_ptr<ElfObject> obj(new ElfObject());
  obj->path_ = path;
  if (!obj->load(error)) return nullptr;
  return obj;
}

std::unique_ptr<ElfObject> ElfObject::from_memory(const std::string& name,
                                                  std::vector<uint8_t> image, std::string* error) {
  if (image.empty()) {
    if (error != nullptr) *error = name + ": not an ELF file";
    return nullptr;
  }
  std::unique_ptr<ElfObject> obj(new ElfObject());
  obj->path_ = name;
  obj->image_ = std::move(image);
  if (!obj->load(error)) return nullptr;
  return obj;
}

ElfObject::~ElfObject() {
  if (elf_ != nullptr) elf_end(elf_);
  if (fd_ >= 0) ::close(fd_);
}

bool ElfObject::load(std::string* error) {
  auto fail = [&](const std::string& why) {
    if (error != nullptr) *error = path_ + ": " + why;
    return false;
  };
  if (!init_libelf()) return fail("libelf initialisation failed");
  if (image_.empty()) {
    fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) return fail(std::string("cannot open: ") + std::strerror(errno));
    elf_ = elf_begin(fd_, ELF_C_READ_MMAP, nullptr);
  } else {
    // elf_memory may convert data in place; the image is our own copy.
    elf_ = elf_memory(reinterpret_cast<char*>(image_.data()), image_.size());
  }
  if (elf_ == nullptr || elf_kind(elf_) != ELF_K_ELF) return fail("not an ELF file");
  GElf_Ehdr ehdr;
  if (gelf_getehdr(elf_, &ehdr) == nullptr) return fail("unreadable ELF header");
  x86_64_ = ehdr.e_ident[EI_CLASS] == ELFCLASS64 && ehdr.e_machine == EM_X86_64;

  size_t phnum = 0;
  if (elf_getphdrnum(elf_, &phnum) == 0) {
    for (size_t i = 0; i < phnum && i < 4096; ++i) {
      GElf_Phdr ph;
      if (gelf_getphdr(elf_, static_cast<int>(i), &ph) == nullptr) continue;
      if (ph.p_type != PT_LOAD) continue;
      segments_.push_back({ph.p_vaddr, ph.p_offset, ph.p_filesz, ph.p_memsz, ph.p_flags});
    }
  }

  size_t shstrndx = 0;
  if (elf_getshdrstrndx(elf_, &shstrndx) != 0) return true;  // no sections: nothing more to read
  Elf_Scn* scn = nullptr;
  size_t guard = 0;
  while ((scn = elf_nextscn(elf_, scn)) != nullptr && ++guard < 65536) {
    GElf_Shdr shdr;
    if (gelf_getshdr(scn, &shdr) == nullptr) continue;
    const char* name = elf_strptr(elf_, shstrndx, shdr.sh_name);
    std::string sname = name != nullptr ? name : "";
    sections_.push_back({sname, shdr.sh_addr, shdr.sh_offset, shdr.sh_size, shdr.sh_type});
    if (shdr.sh_type == SHT_SYMTAB || shdr.sh_type == SHT_DYNSYM) {
      if (shdr.sh_type == SHT_SYMTAB) has_symtab_ = true;
      load_symbols(scn, shdr);
    } else if (shdr.sh_type == SHT_RELA && sname == ".rela.plt") {
      load_plt_relocations(scn, shdr);
    } else if (shdr.sh_type == SHT_NOTE) {
      load_notes(scn, shdr);
    } else if (sname == ".debug_info" && shdr.sh_type != SHT_NOBITS && shdr.sh_size > 0) {
      has_debug_info_ = true;
    } else if (sname == ".gnu_debuglink" && shdr.sh_type != SHT_NOBITS) {
      Elf_Data* data = elf_getdata(scn, nullptr);
      if (data != nullptr && data->d_buf != nullptr && data->d_size >= 8) {
        const char* p = static_cast<const char*>(data->d_buf);
        size_t n = strnlen(p, data->d_size);
        if (n < data->d_size) {
          debuglink_.assign(p, n);
          size_t crc_at = (n + 4) & ~size_t{3};
          if (crc_at + 4 <= data->d_size) std::memcpy(&debuglink_crc_, p + crc_at, 4);
        }
      }
    }
  }

  std::sort(symbols_.begin(), symbols_.end(), [](const ElfSymbol& a, const ElfSymbol& b) {
    return a.value != b.value ? a.value < b.value : a.name < b.name;
  });
  symbols_.erase(std::unique(symbols_.begin(), symbols_.end(),
                             [](const ElfSymbol& a, const ElfSymbol& b) {
                               return a.value == b.value && a.name == b.name;
                             }),
                 symbols_.end());
  for (size_t i = 0; i < symbols_.size(); ++i) {
    if (symbols_[i].is_function) function_index_.push_back(i);
  }
  return true;
}

void ElfObject::load_symbols(Elf_Scn* scn, const GElf_Shdr& shdr) {
  Elf_Data* data = elf_getdata(scn, nullptr);
  if (data == nullptr || shdr.sh_entsize == 0) return;
  size_t count = std::min<size_t>(shdr.sh_size / shdr.sh_entsize, 50'000'000);
  for (size_t i = 0; i < count; ++i) {
    GElf_Sym sym;
    if (gelf_getsym(data, static_cast<int>(i), &sym) == nullptr) break;
    int type = GELF_ST_TYPE(sym.st_info);
    if (type != STT_FUNC && type != STT_OBJECT && type != STT_GNU_IFUNC) continue;
    if (sym.st_shndx == SHN_UNDEF) continue;
    const char* name = elf_strptr(elf_, shdr.sh_link, sym.st_name);
    if (name == nullptr || *name == '\0') continue;
    ElfSymbol s;
    s.name = name;
    s.value = sym.st_value;
    s.size = sym.st_size;
    s.is_function = type != STT_OBJECT;
    s.is_local = GELF_ST_BIND(sym.st_info) == STB_LOCAL;
    symbols_.push_back(std::move(s));
  }
}

void ElfObject::load_notes(Elf_Scn* scn, const GElf_Shdr& shdr) {
  (void)shdr;
  Elf_Data* data = elf_getdata(scn, nullptr);
  if (data == nullptr) return;
  size_t offset = 0;
  GElf_Nhdr nhdr;
  size_t name_off = 0;
  size_t desc_off = 0;
  size_t guard = 0;
  while (offset < data->d_size && ++guard < 1024 &&
         (offset = gelf_getnote(data, offset, &nhdr, &name_off, &desc_off)) > 0) {
    if (nhdr.n_type == NT_GNU_BUILD_ID && nhdr.n_namesz == 4 &&
        std::memcmp(static_cast<const char*>(data->d_buf) + name_off, "GNU", 4) == 0 &&
        nhdr.n_descsz > 0 && nhdr.n_descsz <= 64) {
      build_id_ = hex(static_cast<const unsigned char*>(data->d_buf) + desc_off, nhdr.n_descsz);
    }
  }
}

void ElfObject::load_plt_relocations(Elf_Scn* scn, const GElf_Shdr& shdr) {
  Elf_Data* data = elf_getdata(scn, nullptr);
  Elf_Scn* symscn = elf_getscn(elf_, shdr.sh_link);
  GElf_Shdr symhdr;
  if (data == nullptr || symscn == nullptr || gelf_getshdr(symscn, &symhdr) == nullptr ||
      shdr.sh_entsize == 0) {
    return;
  }
  Elf_Data* symdata = elf_getdata(symscn, nullptr);
  if (symdata == nullptr) return;
  size_t count = std::min<size_t>(shdr.sh_size / shdr.sh_entsize, 1'000'000);
  for (size_t i = 0; i < count; ++i) {
    GElf_Rela rela;
    GElf_Sym sym;
    if (gelf_getrela(data, static_cast<int>(i), &rela) == nullptr) break;
    if (gelf_getsym(symdata, static_cast<int>(GELF_R_SYM(rela.r_info)), &sym) == nullptr) continue;
    const char* name = elf_strptr(elf_, symhdr.sh_link, sym.st_name);
    if (name != nullptr && *name != '\0') plt_slots_.emplace_back(rela.r_offset, name);
  }
  std::sort(plt_slots_.begin(), plt_slots_.end());
}

std::string ElfObject::plt_target(uint64_t vaddr) const {
  if (plt_slots_.empty()) return "";
  // A PLT stub starts with `jmp *slot(%rip)` (ff 25 disp32), perhaps after endbr64 (f3 0f 1e fa)
  // and a bnd prefix (f2).
  std::vector<uint8_t> code;
  if (!read_code(vaddr, 16, &code) || code.size() < 6) return "";
  size_t at = 0;
  if (code.size() >= 4 && code[0] == 0xf3 && code[1] == 0x0f && code[2] == 0x1e &&
      code[3] == 0xfa) {
    at = 4;
  }
  if (at < code.size() && code[at] == 0xf2) ++at;
  if (at + 6 > code.size() || code[at] != 0xff || code[at + 1] != 0x25) return "";
  int32_t disp = 0;
  std::memcpy(&disp, &code[at + 2], 4);
  uint64_t slot = vaddr + at + 6 + static_cast<int64_t>(disp);
  auto it =
      std::lower_bound(plt_slots_.begin(), plt_slots_.end(), std::make_pair(slot, std::string()));
  return it != plt_slots_.end() && it->first == slot ? it->second : "";
}

const ElfSymbol* ElfObject::function_at(uint64_t vaddr) const {
  auto it = std::upper_bound(function_index_.begin(), function_index_.end(), vaddr,
                             [this](uint64_t v, size_t i) { return v < symbols_[i].value; });
  if (it == function_index_.begin()) return nullptr;
  // Prefer a sized symbol that covers vaddr; an unsized one counts only if it is the nearest.
  const ElfSymbol* nearest = &symbols_[*(it - 1)];
  for (int n = 0; it != function_index_.begin() && n < 16; ++n) {
    --it;
    const ElfSymbol& s = symbols_[*it];
    if (s.size != 0 && vaddr < s.value + s.size) return &s;
  }
  if (nearest->size == 0) return nearest;
  return nullptr;
}

std::optional<uint64_t> ElfObject::vaddr_to_offset(uint64_t vaddr) const {
  for (const auto& seg : segments_) {
    if (vaddr >= seg.vaddr && vaddr < seg.vaddr + seg.filesz)
      return seg.offset + (vaddr - seg.vaddr);
  }
  return std::nullopt;
}

bool ElfObject::read_code(uint64_t vaddr, size_t len, std::vector<uint8_t>* out) const {
  for (const auto& sec : sections_) {
    if (sec.type != SHT_PROGBITS || sec.addr == 0) continue;
    if (vaddr < sec.addr || vaddr >= sec.addr + sec.size) continue;
    len = std::min<uint64_t>(len, sec.addr + sec.size - vaddr);
    out->resize(len);
    size_t got = read_file(sec.offset + (vaddr - sec.addr), out->data(), len);
    if (got == 0) return false;
    out->resize(got);
    return true;
  }
  return false;
}

size_t ElfObject::read_file(uint64_t offset, void* out, size_t len) const {
  if (fd_ < 0) {
    if (offset >= image_.size()) return 0;
    len = std::min<uint64_t>(len, image_.size() - offset);
    std::memcpy(out, image_.data() + offset, len);
    return len;
  }
  if (offset > static_cast<uint64_t>(INT64_MAX)) return 0;
  ssize_t got = ::pread(fd_, out, len, static_cast<off_t>(offset));
  return got > 0 ? static_cast<size_t>(got) : 0;
}

}  // namespace asyncprobe::symbolizer
