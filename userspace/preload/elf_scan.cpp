#include "userspace/preload/elf_scan.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "userspace/coro/split_names.h"

namespace asyncprobe::preload {

namespace {

// A read-only mapping of a whole file; every access is bounds-checked.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    struct stat st {};
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
        st.st_size >= static_cast<off_t>(sizeof(Elf64_Ehdr))) {
      void* p = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
      if (p != MAP_FAILED) {
        data_ = static_cast<const unsigned char*>(p);
        size_ = static_cast<size_t>(st.st_size);
      }
    }
    ::close(fd);
  }
  ~MappedFile() {
    if (data_ != nullptr) munmap(const_cast<unsigned char*>(data_), size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  bool ok() const { return data_ != nullptr; }
  template <typename T>
  const T* at(uint64_t off, uint64_t count = 1) const {
    if (off > size_ || count > (size_ - off) / sizeof(T)) return nullptr;
    return reinterpret_cast<const T*>(data_ + off);
  }
  const char* cstr(uint64_t off, uint64_t limit) const {
    if (off >= size_ || off >= limit) return nullptr;
    const void* nul =
        std::memchr(data_ + off, '\0', static_cast<size_t>(std::min<uint64_t>(size_, limit) - off));
    return nul != nullptr ? reinterpret_cast<const char*>(data_ + off) : nullptr;
  }
  size_t size() const { return size_; }

 private:
  const unsigned char* data_ = nullptr;
  size_t size_ = 0;
};

struct Elf {
  const MappedFile& f;
  const Elf64_Ehdr* eh = nullptr;
  const Elf64_Shdr* sh = nullptr;

  explicit Elf(const MappedFile& file) : f(file) {
    if (!f.ok()) return;
    const Elf64_Ehdr* h = f.at<Elf64_Ehdr>(0);
    if (h == nullptr || std::memcmp(h->e_ident, ELFMAG, SELFMAG) != 0 ||
        h->e_ident[EI_CLASS] != ELFCLASS64 || h->e_machine != EM_X86_64 ||
        h->e_shentsize != sizeof(Elf64_Shdr)) {
      return;
    }
    sh = f.at<Elf64_Shdr>(h->e_shoff, h->e_shnum);
    if (sh != nullptr) eh = h;
  }
  bool ok() const { return eh != nullptr; }
  const char* section_name(const Elf64_Shdr& s) const {
    if (eh->e_shstrndx >= eh->e_shnum) return nullptr;
    const Elf64_Shdr& strs = sh[eh->e_shstrndx];
    return f.cstr(strs.sh_offset + s.sh_name, strs.sh_offset + strs.sh_size);
  }
  const Elf64_Shdr* find(uint32_t type, const char* name = nullptr) const {
    for (uint16_t i = 0; i < eh->e_shnum; ++i) {
      if (sh[i].sh_type != type) continue;
      if (name != nullptr) {
        const char* n = section_name(sh[i]);
        if (n == nullptr || std::strcmp(n, name) != 0) continue;
      }
      return &sh[i];
    }
    return nullptr;
  }
  // Calls fn(name, sym) for each symbol of a SHT_SYMTAB/SHT_DYNSYM section.
  template <typename Fn>
  void for_each_symbol(const Elf64_Shdr& tab, Fn fn) const {
    if (tab.sh_entsize != sizeof(Elf64_Sym) || tab.sh_link >= eh->e_shnum) return;
    const Elf64_Shdr& strs = sh[tab.sh_link];
    uint64_t n = tab.sh_size / sizeof(Elf64_Sym);
    const Elf64_Sym* syms = f.at<Elf64_Sym>(tab.sh_offset, n);
    if (syms == nullptr) return;
    for (uint64_t i = 0; i < n; ++i) {
      const char* name = f.cstr(strs.sh_offset + syms[i].st_name, strs.sh_offset + strs.sh_size);
      if (name != nullptr) fn(name, syms[i]);
    }
  }
  std::string build_id() const {
    for (uint16_t i = 0; i < eh->e_shnum; ++i) {
      if (sh[i].sh_type != SHT_NOTE) continue;
      uint64_t at = sh[i].sh_offset, end = sh[i].sh_offset + sh[i].sh_size;
      while (at + sizeof(Elf64_Nhdr) <= end) {
        const Elf64_Nhdr* n = f.at<Elf64_Nhdr>(at);
        if (n == nullptr) break;
        uint64_t name_at = at + sizeof(Elf64_Nhdr);
        uint64_t desc_at = name_at + ((n->n_namesz + 3) & ~3u);
        uint64_t next = desc_at + ((n->n_descsz + 3) & ~3u);
        if (next > end) break;
        const char* nm = f.at<char>(name_at, n->n_namesz);
        const unsigned char* desc = f.at<unsigned char>(desc_at, n->n_descsz);
        if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 && nm != nullptr &&
            std::memcmp(nm, "GNU", 4) == 0 && desc != nullptr && n->n_descsz >= 2 &&
            n->n_descsz <= 64) {
          std::string hex;
          for (uint32_t k = 0; k < n->n_descsz; ++k) {
            hex += "0123456789abcdef"[desc[k] >> 4];
            hex += "0123456789abcdef"[desc[k] & 15];
          }
          return hex;
        }
        at = next;
      }
    }
    return "";
  }
  std::string debuglink() const {
    const Elf64_Shdr* s = find(SHT_PROGBITS, ".gnu_debuglink");
    if (s == nullptr) return "";
    const char* name = f.cstr(s->sh_offset, s->sh_offset + s->sh_size);
    return name != nullptr ? name : "";
  }
};

std::vector<std::string> split_dirs(const std::string& dirs) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < dirs.size()) {
    size_t colon = dirs.find(':', at);
    if (colon == std::string::npos) colon = dirs.size();
    if (colon > at) out.push_back(dirs.substr(at, colon - at));
    at = colon + 1;
  }
  out.push_back("/usr/lib/debug");
  return out;
}

std::vector<ResumeSymbol> collect(const Elf& e) {
  std::vector<ResumeSymbol> out;
  const Elf64_Shdr* tab = e.find(SHT_SYMTAB);
  if (tab == nullptr) tab = e.find(SHT_DYNSYM);
  if (tab == nullptr) return out;
  e.for_each_symbol(*tab, [&](const char* name, const Elf64_Sym& s) {
    if (ELF64_ST_TYPE(s.st_info) != STT_FUNC || s.st_shndx == SHN_UNDEF || s.st_value == 0 ||
        s.st_size == 0)
      return;
    coro::SplitName split = coro::parse_split_name(name);
    if (split.part == coro::SplitPart::kResume) out.push_back({s.st_value, s.st_size, split.gcc});
  });
  return out;
}

}  // namespace

// Calls fn(elf) with the object whose symbols describe `path`: itself, or its separate debug file
// when it is stripped (found by build-id, then .gnu_debuglink), or itself again as a last resort.
template <typename Fn>
void with_symbol_source(const std::string& path, const std::string& debug_dirs, Fn fn) {
  MappedFile file(path);
  Elf e(file);
  if (!e.ok()) return;
  if (e.find(SHT_SYMTAB) != nullptr) {
    fn(e);
    return;
  }
  // Stripped: its separate debug file has the symbols, at the same addresses.
  std::vector<std::string> candidates;
  std::string id = e.build_id();
  for (const auto& root : split_dirs(debug_dirs)) {
    if (id.size() > 2)
      candidates.push_back(root + "/.build-id/" + id.substr(0, 2) + "/" + id.substr(2) + ".debug");
  }
  std::string link = e.debuglink();
  if (!link.empty() && link.find('/') == std::string::npos) {
    std::string dir = path.substr(0, path.rfind('/') + 1);
    candidates.push_back(dir + link);
    candidates.push_back(dir + ".debug/" + link);
    for (const auto& root : split_dirs(debug_dirs)) {
      std::string path = root;
      path += dir;
      path += link;
      candidates.push_back(std::move(path));
    }
  }
  for (const auto& c : candidates) {
    if (c == path) continue;
    MappedFile df(c);
    Elf d(df);
    if (!d.ok() || d.find(SHT_SYMTAB) == nullptr) continue;
    if (!id.empty() && d.build_id() != id) continue;
    fn(d);
    return;
  }
  fn(e);
}

std::vector<ResumeSymbol> scan_resume_functions(const std::string& path,
                                                const std::string& debug_dirs) {
  std::vector<ResumeSymbol> out;
  with_symbol_source(path, debug_dirs, [&](const Elf& e) { out = collect(e); });
  return out;
}

std::vector<SymbolCoroutine> scan_coroutines(const std::string& path,
                                             const std::string& debug_dirs) {
  std::vector<SymbolCoroutine> out;
  with_symbol_source(path, debug_dirs, [&](const Elf& e) {
    const Elf64_Shdr* tab = e.find(SHT_SYMTAB);
    if (tab == nullptr) tab = e.find(SHT_DYNSYM);
    if (tab == nullptr) return;
    std::unordered_map<std::string, SymbolCoroutine> by_key;
    e.for_each_symbol(*tab, [&](const char* name, const Elf64_Sym& s) {
      if (ELF64_ST_TYPE(s.st_info) != STT_FUNC || s.st_shndx == SHN_UNDEF || s.st_value == 0)
        return;
      coro::SplitName split = coro::parse_split_name(name);
      if (split.part == coro::SplitPart::kNone) return;
      SymbolCoroutine& c = by_key[std::string(split.key)];
      switch (split.part) {
        case coro::SplitPart::kResume:
          c.resume = s.st_value;
          c.resume_size = s.st_size;
          c.gcc = split.gcc;
          break;
        case coro::SplitPart::kDestroy:
          c.destroy = s.st_value;
          break;
        case coro::SplitPart::kCleanup:
          c.cleanup = s.st_value;
          break;
        case coro::SplitPart::kNone:
          break;
      }
    });
    for (const auto& [key, c] : by_key) {
      if (c.resume != 0 && c.destroy != 0 && c.resume_size != 0) out.push_back(c);
    }
  });
  std::sort(out.begin(), out.end(),
            [](const SymbolCoroutine& a, const SymbolCoroutine& b) { return a.resume < b.resume; });
  return out;
}

}  // namespace asyncprobe::preload
