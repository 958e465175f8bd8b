// The symbolizer's fast paths against libdw's own answers on objects the real compilers build:
// DieReader walks every DIE as dwarf_child/dwarf_siblingof do and reads inlined calls' attributes
// as libdw does; inline chains (including the tree used for functions with many inlined calls)
// match dwarf_getscopes; lines match dwarf_getsrc_die; symbolize_refs matches symbolize.
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <fcntl.h>
#include <gelf.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "symbolizer/dwarf_die_reader.h"
#include "symbolizer/module.h"
#include "tests/integration/fixture_process.h"
#include "tests/unit/die_reader_compare.h"

namespace asyncprobe::symbolizer {
namespace {

using asyncprobe::symbolizer::testing::compare_die_walk;
using asyncprobe::symbolizer::testing::debug_info_section;
using asyncprobe::symbolizer::testing::die_udata;
using asyncprobe::symbolizer::testing::DieWalkCounts;
using asyncprobe::symbolizer::testing::DieWalkLimits;
using asyncprobe::testing::fixture_path;

// A function with 40 inlined calls at its top level, each with nested inlined calls (so the
// lookup tree is used and has long and short child lists), a member function and a lambda.
std::string write_source(const std::string& dir) {
  std::string calls;
  for (int i = 1; i <= 40; ++i) calls += "  x = deep::top<" + std::to_string(i) + ">(x);\n";
  const std::string src = dir + "/inlines.cpp";
  std::ofstream(src) << R"(namespace deep {
template <int N>
__attribute__((always_inline)) inline int leaf(int x) {
  asm volatile("" : "+r"(x));
  return x + N;
}
template <int N>
__attribute__((always_inline)) inline int mid(int x) {
  x = leaf<N>(x);
  asm volatile("" : "+r"(x));
  return leaf<N + 100>(x) * 3;
}
template <int N>
__attribute__((always_inline)) inline int top(int x) {
  x = mid<N>(x);
  asm volatile("" : "+r"(x));
  return mid<N + 1000>(x) - 1;
}
}  // namespace deep
__attribute__((noinline)) int many(int x) {
)" + calls + R"(  return x;
}
struct Widget {
  __attribute__((noinline)) int twice(int v) { return deep::top<77>(v) * 2; }
};
int main(int argc, char**) {
  Widget w;
  auto lambda = [](int v) __attribute__((noinline)) { return deep::mid<5>(v); };
  return many(argc) + w.twice(argc) + lambda(argc);
}
)";
  return src;
}

struct Built {
  std::string label, path;
};

// g++-12 and clang++-14 at -O2, DWARF 4 and 5.
std::vector<Built> build_objects(const std::string& dir) {
  const std::string src = write_source(dir);
  std::vector<Built> out;
  for (const std::string compiler : {"g++-12", "clang++-14"}) {
    for (const std::string version : {"4", "5"}) {
      const std::string path = dir + "/inlines-" + compiler + "-dwarf" + version;
      const std::string cmd = compiler + " -O2 -gdwarf-" + version + " -o " + path + " " + src;
      EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
      out.push_back({compiler + " DWARF " + version, path});
    }
  }
  return out;
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/symbolizer-index-XXXXXX";
    path_ = mkdtemp(tmpl) != nullptr ? tmpl : "";
  }
  ~TempDir() {
    if (!path_.empty()) std::filesystem::remove_all(path_);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// libdw on its own, for the reference answers.
class LibdwFile {
 public:
  explicit LibdwFile(const std::string& path) : fd_(::open(path.c_str(), O_RDONLY)) {
    if (fd_ >= 0) dwarf_ = dwarf_begin(fd_, DWARF_C_READ);
  }
  ~LibdwFile() {
    if (dwarf_ != nullptr) dwarf_end(dwarf_);
    if (fd_ >= 0) ::close(fd_);
  }
  Dwarf* get() const { return dwarf_; }

 private:
  int fd_ = -1;
  Dwarf* dwarf_ = nullptr;
};

DieWalkCounts compare_walk(const std::string& path, const std::string& label) {
  DieWalkCounts n;
  LibdwFile file(path);
  EXPECT_NE(file.get(), nullptr) << label;
  if (file.get() == nullptr) return n;
  Dwarf_Off off = 0;
  Dwarf_Off next = 0;
  size_t header = 0;
  size_t units = 0;
  while (dwarf_nextcu(file.get(), off, &next, &header, nullptr, nullptr, nullptr) == 0) {
    Dwarf_Die cu;
    EXPECT_NE(dwarf_offdie(file.get(), off + header, &cu), nullptr) << label;
    DieReader reader;
    // Every unit of these objects is one the reader knows: the fast path is what is tested.
    const auto [section, size] = debug_info_section(file.get());
    EXPECT_TRUE(reader.open(&cu, off, next, section, size)) << label << " unit at " << off;
    DieReader::Die raw;
    EXPECT_TRUE(reader.read(off + header, &raw)) << label;
    EXPECT_EQ(compare_die_walk(cu, reader, raw, DieWalkLimits{}, &n), "") << label;
    ++units;
    off = next;
  }
  EXPECT_GT(units, 0u) << label;
  return n;
}

TEST(DieReader, WalksAndReadsInlinedCallsAsLibdw) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  for (const Built& b : build_objects(dir.path())) {
    const DieWalkCounts n = compare_walk(b.path, b.label);
    EXPECT_GT(n.dies, 200u) << b.label;
    // 40 x (1 + 2 + 4) inlined calls in `many` alone, most read without libdw.
    EXPECT_GE(n.inlines, 280u) << b.label;
    // clang's DWARF 5 gives an inlined call's low_pc as addrx: those go through libdw.
    if (b.label != "clang++-14 DWARF 5") {
      EXPECT_GT(n.inlines_read, 0u) << b.label;
    }
  }
  // Large objects with Boost.Asio's DWARF, from both compiler families.
  for (const std::string variant : {"gcc12-O2", "clang19-O2"}) {
    const DieWalkCounts n = compare_walk(fixture_path(variant, "asio_server"), variant);
    EXPECT_GT(n.dies, 20'000u) << variant;
    EXPECT_GT(n.inlines, 1'000u) << variant;
  }
}

// A copy of `path` (at `out`) whose first DW_TAG_inlined_subroutine abbreviation of the first
// unit names DW_AT_call_file where it named DW_AT_call_line: one decoded attribute twice, as
// fuzz_die_reader made it (tests/fuzz/corpus/die_reader/found-duplicate-call-file). False when
// there is no such abbreviation.
bool write_duplicate_call_file(const std::string& path, const std::string& out) {
  LibdwFile file(path);
  Dwarf_Off abbrev_offset = 0;
  Dwarf_Off next = 0;
  size_t header = 0;
  if (file.get() == nullptr ||
      dwarf_nextcu(file.get(), 0, &next, &header, &abbrev_offset, nullptr, nullptr) != 0) {
    return false;
  }
  Elf* elf = dwarf_getelf(file.get());
  size_t shstrndx = 0;
  GElf_Shdr abbrev{};
  if (elf_getshdrstrndx(elf, &shstrndx) != 0) return false;
  for (Elf_Scn* scn = elf_nextscn(elf, nullptr); scn != nullptr; scn = elf_nextscn(elf, scn)) {
    GElf_Shdr shdr;
    const char* name =
        gelf_getshdr(scn, &shdr) != nullptr ? elf_strptr(elf, shstrndx, shdr.sh_name) : nullptr;
    if (name != nullptr && std::string(name) == ".debug_abbrev") abbrev = shdr;
  }
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t pos = abbrev.sh_offset + abbrev_offset;
  const size_t end = std::min<size_t>(bytes.size(), abbrev.sh_offset + abbrev.sh_size);
  const auto uleb = [&]() {
    uint64_t v = 0;
    for (unsigned shift = 0; pos < end && shift < 64; shift += 7) {
      const auto b = static_cast<uint8_t>(bytes[pos++]);
      v |= uint64_t{b & 0x7fu} << shift;
      if ((b & 0x80) == 0) break;
    }
    return v;
  };
  while (pos < end && uleb() != 0) {
    const uint64_t tag = uleb();
    ++pos;  // DW_CHILDREN_*
    bool has_file = false;
    size_t call_line_at = 0;
    for (;;) {
      const size_t name_at = pos;
      const uint64_t name = uleb();
      const uint64_t form = uleb();
      if (name == 0 && form == 0) break;
      if (form == DW_FORM_implicit_const) uleb();  // its SLEB128 value, as long as a ULEB128
      if (name == DW_AT_call_file) has_file = true;
      if (name == DW_AT_call_line) call_line_at = name_at;  // 0x59: one byte
    }
    if (tag == DW_TAG_inlined_subroutine && has_file && call_line_at != 0) {
      bytes[call_line_at] = static_cast<char>(DW_AT_call_file);  // both one-byte names
      std::ofstream(out, std::ios::binary) << bytes;
      return true;
    }
  }
  return false;
}

// libdw's dwarf_attr takes the first of two equal attributes and the index's libdw path
// (dwarf_getattrs) sees both: the reader declines the unit, which the index then walks through
// libdw, instead of answering with the second.
TEST(DieReader, DeclinesAUnitWithADecodedAttributeTwice) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  for (const Built& b : build_objects(dir.path())) {
    const std::string patched = b.path + "-duplicate";
    ASSERT_TRUE(write_duplicate_call_file(b.path, patched)) << b.label;
    for (const std::string& path : {b.path, patched}) {
      LibdwFile file(path);
      ASSERT_NE(file.get(), nullptr) << path;
      Dwarf_Off next = 0;
      size_t header = 0;
      ASSERT_EQ(dwarf_nextcu(file.get(), 0, &next, &header, nullptr, nullptr, nullptr), 0);
      Dwarf_Die cu;
      ASSERT_NE(dwarf_offdie(file.get(), header, &cu), nullptr) << path;
      const auto [section, size] = debug_info_section(file.get());
      DieReader reader;
      EXPECT_EQ(reader.open(&cu, 0, next, section, size), path == b.path) << path;
    }
  }
}

std::shared_ptr<Module> load(const std::string& path) {
  std::string err;
  auto m = Module::load(path, path, {}, &err);
  EXPECT_NE(m, nullptr) << err;
  return std::shared_ptr<Module>(std::move(m));
}

const ElfSymbol* symbol_starting(const Module& m, const std::string& prefix) {
  for (const auto& s : m.object().symbols()) {
    if (s.is_function && s.size > 0 && s.name.rfind(prefix, 0) == 0) return &s;
  }
  return nullptr;
}

// The reference inline chain, straight from libdw: the inlined calls holding `pc` below `die`,
// each entered only when it holds it (lexical blocks always), outermost first. (dwarf_getscopes
// is no reference: at the entry of `many`, where llvm-symbolizer and we see three inlined calls,
// it reports one.)
void reference_chain(Dwarf_Die* die, uint64_t pc, std::vector<Dwarf_Die>* chain) {
  Dwarf_Die child;
  if (dwarf_child(die, &child) != 0) return;
  do {
    const int tag = dwarf_tag(&child);
    if (tag == DW_TAG_inlined_subroutine && dwarf_haspc(&child, pc) == 1) {
      chain->push_back(child);
      reference_chain(&child, pc, chain);
    } else if (tag == DW_TAG_lexical_block) {
      reference_chain(&child, pc, chain);
    }
  } while (dwarf_siblingof(&child, &child) == 0);
}

// The CU with code at `pc`: .debug_aranges, else each CU's ranges (clang emits no aranges).
bool cu_at(Dwarf* dw, uint64_t pc, Dwarf_Die* cu) {
  if (dwarf_addrdie(dw, pc, cu) != nullptr) return true;
  Dwarf_Off off = 0;
  Dwarf_Off next = 0;
  size_t header = 0;
  for (; dwarf_nextcu(dw, off, &next, &header, nullptr, nullptr, nullptr) == 0; off = next) {
    if (dwarf_offdie(dw, off + header, cu) != nullptr && dwarf_haspc(cu, pc) == 1) return true;
  }
  return false;
}

// The subprogram DIE with code at `pc`, searched through namespaces and classes.
bool function_die(Dwarf_Die* parent, uint64_t pc, Dwarf_Die* out) {
  Dwarf_Die child;
  if (dwarf_child(parent, &child) != 0) return false;
  do {
    const int tag = dwarf_tag(&child);
    if (tag == DW_TAG_subprogram && dwarf_haspc(&child, pc) == 1) {
      *out = child;
      return true;
    }
    if ((tag == DW_TAG_namespace || tag == DW_TAG_structure_type || tag == DW_TAG_class_type) &&
        function_die(&child, pc, out)) {
      return true;
    }
  } while (dwarf_siblingof(&child, &child) == 0);
  return false;
}

// Every address of `many` (40 inlined calls at its top level, so looked up through the tree)
// and of the other functions: the inlined frames are libdw's inlined calls holding the address,
// innermost first, each frame's caller line the call's DW_AT_call_line; and the innermost line
// is dwarf_getsrc_die's.
TEST(DwarfIndex, InlineChainsAndLinesMatchLibdw) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  for (const Built& b : build_objects(dir.path())) {
    auto m = load(b.path);
    ASSERT_NE(m, nullptr);
    ASSERT_NE(m->dwarf(), nullptr) << b.label;
    LibdwFile file(b.path);
    ASSERT_NE(file.get(), nullptr);
    size_t addresses = 0;
    size_t deepest = 0;
    for (const std::string prefix : {"_Z4manyi", "_ZN6Widget5twiceEi", "main"}) {
      const ElfSymbol* fn = symbol_starting(*m, prefix);
      ASSERT_NE(fn, nullptr) << b.label << " " << prefix;
      std::vector<FrameRef> frames;
      for (uint64_t a = fn->value; a < fn->value + fn->size; ++a) {
        m->dwarf()->frame_refs_at(a, &frames);
        ASSERT_FALSE(frames.empty()) << b.label << " " << std::hex << a;
        Dwarf_Die cu;
        Dwarf_Die function;
        ASSERT_TRUE(cu_at(file.get(), a, &cu)) << b.label << " " << std::hex << a;
        ASSERT_TRUE(function_die(&cu, a, &function)) << b.label << " " << std::hex << a;
        std::vector<Dwarf_Die> chain;
        reference_chain(&function, a, &chain);
        std::vector<int> call_lines;
        for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
          call_lines.push_back(static_cast<int>(die_udata(&*it, DW_AT_call_line, 0)));
        }
        ASSERT_EQ(frames.size(), call_lines.size() + 1) << b.label << " " << std::hex << a;
        for (size_t k = 0; k < call_lines.size(); ++k) {
          EXPECT_TRUE(frames[k].inlined) << b.label;
          EXPECT_EQ(frames[k + 1].line, call_lines[k]) << b.label << " " << std::hex << a;
        }
        EXPECT_FALSE(frames.back().inlined) << b.label;
        deepest = std::max(deepest, call_lines.size());
        Dwarf_Line* line = dwarf_getsrc_die(&cu, a);
        ASSERT_NE(line, nullptr) << b.label;
        int lineno = 0;
        int column = 0;
        dwarf_lineno(line, &lineno);
        dwarf_linecol(line, &column);
        EXPECT_EQ(frames.front().line, lineno) << b.label << " " << std::hex << a;
        EXPECT_EQ(frames.front().column, column) << b.label << " " << std::hex << a;
        EXPECT_EQ(frames.front().file, dwarf_linesrc(line, nullptr, nullptr)) << b.label;
        ++addresses;
      }
    }
    EXPECT_GT(addresses, 100u) << b.label;
    EXPECT_EQ(deepest, 3u) << b.label;  // top -> mid -> leaf
  }
}

// symbolize_refs gives symbolize's frames, field by field, over every function of a fixture.
TEST(Module, SymbolizeRefsEqualsSymbolize) {
  auto m = load(fixture_path("gcc12-O2", "asio_server"));
  ASSERT_NE(m, nullptr);
  size_t frames_seen = 0;
  std::vector<FrameRef> refs;
  for (const auto& s : m->object().symbols()) {
    if (!s.is_function || s.size == 0) continue;
    for (uint64_t a = s.value; a < s.value + s.size; a += 7) {
      const auto frames = m->symbolize(a);
      m->symbolize_refs(a, &refs);
      ASSERT_EQ(refs.size(), frames.size()) << std::hex << a;
      for (size_t k = 0; k < frames.size(); ++k) {
        EXPECT_EQ(refs[k].function, frames[k].function);
        EXPECT_EQ(refs[k].file, frames[k].location.file);
        EXPECT_EQ(refs[k].line, frames[k].location.line);
        EXPECT_EQ(refs[k].column, frames[k].location.column);
        EXPECT_EQ(refs[k].inlined, frames[k].inlined);
        ++frames_seen;
      }
    }
  }
  EXPECT_GT(frames_seen, 10'000u);
}

}  // namespace
}  // namespace asyncprobe::symbolizer
