// The symbolizer library on its own, against the fixture binaries the real compilers built: ELF
// symbols and notes, separate debug files, DWARF lines and inline chains, and the coroutine
// catalog with every suspend point placed at the co_await its `// @await` marker names.
#include <gtest/gtest.h>

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "symbolizer/coro_catalog.h"
#include "symbolizer/debug_file_locator.h"
#include "symbolizer/demangle.h"
#include "tests/integration/fixture_process.h"
#include "tests/integration/source_markers.h"

namespace asyncprobe::symbolizer {
namespace {

using asyncprobe::testing::fixture_path;
using asyncprobe::testing::fixture_variants_with;
using asyncprobe::testing::source_file;

std::shared_ptr<Module> load(const std::string& path, const DebugSearchPaths& paths = {}) {
  std::string err;
  auto m = Module::load(path, path, paths, &err);
  EXPECT_NE(m, nullptr) << err;
  return std::shared_ptr<Module>(std::move(m));
}

// The same object from its bytes in memory (Module::from_memory, what the ELF fuzzer uses).
std::shared_ptr<Module> load_from_memory(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> image((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  EXPECT_FALSE(image.empty()) << path;
  std::string err;
  auto m = Module::from_memory(path, std::move(image), &err);
  EXPECT_NE(m, nullptr) << err;
  return std::shared_ptr<Module>(std::move(m));
}

std::string base(const std::string& path) { return path.substr(path.rfind('/') + 1); }

TEST(SplitSymbols, GccAndClangNamesGiveTheRamp) {
  CoroCompiler c{};
  std::string role;
  EXPECT_EQ(ramp_of_split_symbol("_Z7descendPZ7descendiE17_Z7descendi.Frame.actor", &c, &role),
            "_Z7descendi");
  EXPECT_EQ(c, CoroCompiler::kGcc);
  EXPECT_EQ(role, "resume");
  EXPECT_EQ(ramp_of_split_symbol("_Z7descendPZ7descendiE17_Z7descendi.Frame.destroy", &c, &role),
            "_Z7descendi");
  EXPECT_EQ(role, "destroy");
  EXPECT_EQ(ramp_of_split_symbol("_Z7descendi.resume", &c, &role), "_Z7descendi");
  EXPECT_EQ(c, CoroCompiler::kClang);
  EXPECT_EQ(ramp_of_split_symbol("_Z7descendi.cleanup", &c, &role), "_Z7descendi");
  EXPECT_EQ(role, "cleanup");
  // Not split functions: plain names, a GCC-looking resume, cold parts, junk.
  EXPECT_EQ(ramp_of_split_symbol("main", &c, &role), "");
  EXPECT_EQ(ramp_of_split_symbol("_Z7descendi.Frame.resume", &c, &role), "");
  EXPECT_EQ(ramp_of_split_symbol("_Z3fooPZ3foovE9_Z3foov.Frame.actor.cold", &c, &role), "");
  EXPECT_EQ(ramp_of_split_symbol(".resume", &c, &role), "");
  EXPECT_EQ(ramp_of_split_symbol("99_Z.Frame.actor", &c, &role), "");
}

TEST(Demangle, NamesAndNonNames) {
  EXPECT_EQ(demangle("_Z7descendi"), "descend(int)");
  EXPECT_EQ(demangle("main"), "main");
  EXPECT_EQ(demangle("_Zjunk"), "_Zjunk");
}

TEST(ElfObject, SymbolsBuildIdAndDebugLink) {
  std::string err;
  auto full = ElfObject::open(fixture_path("gcc12-O2", "chain"), &err);
  ASSERT_NE(full, nullptr) << err;
  EXPECT_TRUE(full->is_x86_64());
  EXPECT_TRUE(full->has_symtab());
  EXPECT_TRUE(full->has_debug_info());
  EXPECT_EQ(full->build_id().size(), 40u);
  auto stripped = ElfObject::open(fixture_path("gcc12-O2", "stripped/chain"), &err);
  ASSERT_NE(stripped, nullptr) << err;
  EXPECT_FALSE(stripped->has_symtab());
  EXPECT_FALSE(stripped->has_debug_info());
  EXPECT_EQ(stripped->debuglink(), "chain.debug");
  EXPECT_EQ(stripped->build_id(), full->build_id());
  EXPECT_EQ(ElfObject::open("/proc/self/status", &err), nullptr);
  EXPECT_NE(err.find("not an ELF file"), std::string::npos) << err;
}

TEST(DebugFiles, ByDebugLinkBesideTheObjectAndByBuildIdUnderARoot) {
  std::string err;
  auto linked = ElfObject::open(fixture_path("gcc12-O2", "stripped/chain"), &err);
  ASSERT_NE(linked, nullptr);
  EXPECT_EQ(base(find_debug_file(*linked, fixture_path("gcc12-O2", "stripped/chain"), {})),
            "chain.debug");
  auto by_id = ElfObject::open(fixture_path("gcc12-O2", "stripped-buildid/chain"), &err);
  ASSERT_NE(by_id, nullptr);
  DebugSearchPaths paths;
  paths.debug_roots = {fixture_path("gcc12-O2", "stripped-buildid/debug")};
  std::string found =
      find_debug_file(*by_id, fixture_path("gcc12-O2", "stripped-buildid/chain"), paths);
  EXPECT_NE(found.find("/.build-id/" + by_id->build_id().substr(0, 2) + "/"), std::string::npos)
      << found;
  auto none = ElfObject::open(fixture_path("gcc12-O2", "stripped-nodebug/chain"), &err);
  ASSERT_NE(none, nullptr);
  EXPECT_EQ(find_debug_file(*none, fixture_path("gcc12-O2", "stripped-nodebug/chain"), {}), "");
}

TEST(Module, StrippedObjectTakesSymbolsAndLinesFromItsDebugFile) {
  auto m = load(fixture_path("clang19-O2", "stripped/chain"));
  EXPECT_EQ(base(m->debug_file()), "chain.debug");
  EXPECT_TRUE(m->has_symtab());
  ASSERT_NE(m->dwarf(), nullptr);
}

// Every variant, every coroutine of the chain fixture: each co_await's suspend index maps to the
// exact line of its marker.
// Every variant of `program`: each named coroutine has a suspend-index field, and its await
// suspend points sit exactly on the lines of its `// @await` markers in `source`.
void expect_awaits_on_markers(
    const std::string& program, const std::string& source,
    const std::map<std::string, std::vector<std::string>>& awaits,
    std::shared_ptr<Module> (*loader)(const std::string&) = [](const std::string& path) {
      return load(path);
    }) {
  const std::string src = source_file(source);
  const std::string src_base = base(source);
  for (const auto& v : fixture_variants_with(program)) {
    CoroCatalog catalog(loader(fixture_path(v, program)));
    std::map<std::string, const CoroFunction*> by_name;
    for (const auto& fn : catalog.functions()) by_name[fn.name] = &fn;
    for (const auto& [name, markers] : awaits) {
      ASSERT_TRUE(by_name.count(name)) << v << " " << name;
      const CoroFunction& fn = *by_name[name];
      EXPECT_NE(fn.index_width, 0) << v << " " << name;
      std::multiset<int> placed;
      for (const auto& [index, sp] : catalog.suspend_points(fn)) {
        if (sp.kind == SuspendPointInfo::Kind::kAwait && sp.location.line != 0) {
          EXPECT_EQ(base(sp.location.file), src_base) << v << " " << name;
          placed.insert(sp.location.line);
        }
      }
      std::multiset<int> want;
      for (const auto& m : markers) want.insert(asyncprobe::testing::marker_line(src, m));
      EXPECT_EQ(placed, want) << v << " " << name;
    }
  }
}

TEST(CoroCatalog, SuspendPointsSitOnTheirMarkersInEveryVariant) {
  expect_awaits_on_markers(
      "chain", "tests/fixtures/chain.cpp",
      {{"descend(int)", {"descend_park", "descend_calls_descend"}},
       {"query_db(int, int)", {"query_db_park", "query_db_calls_descend"}},
       {"load_user(int, int)", {"load_user_park", "load_user_calls_query_db"}},
       {"handle_request(int, int)", {"handle_request_park", "handle_request_calls_load_user"}},
       {"idle_worker()", {"idle_worker_park"}}});
}

// From memory, the object gives what its file gives: the same check, no file opened.
TEST(Module, FromMemoryPlacesSuspendPointsOnTheirMarkers) {
  expect_awaits_on_markers("chain", "tests/fixtures/chain.cpp",
                           {{"descend(int)", {"descend_park", "descend_calls_descend"}},
                            {"idle_worker()", {"idle_worker_park"}}},
                           load_from_memory);
}

TEST(Module, FromMemoryRefusesWhatIsNotElf) {
  std::string err;
  EXPECT_EQ(Module::from_memory("empty", {}, &err), nullptr);
  EXPECT_EQ(err, "empty: not an ELF file");
  EXPECT_EQ(Module::from_memory("text", {'h', 'i', '\n'}, &err), nullptr);
  EXPECT_EQ(err, "text: not an ELF file");
}

// Clang 14 -O0 reads locals through frame + k pointers before its index dispatch (placed at the
// end of the resume function): the index field must still be the one the dispatch reads.
TEST(CoroCatalog, GeneratorSuspendPointsSitOnTheirMarkersInEveryVariant) {
  expect_awaits_on_markers(
      "generator", "tests/fixtures/generator.cpp",
      {{"counter(int)", {"counter_yield"}},
       {"two_phase()", {"two_phase_first", "two_phase_second"}},
       {"consumer(int*)", {"consumer_park"}},
       {"idle_after_yield()", {"idle_after_yield_yield", "idle_after_yield_park"}}});
}

TEST(DwarfInfo, InlineChainEndsInTheCallingFunction) {
  auto m = load(fixture_path("gcc12-O2", "chain"));
  ASSERT_NE(m->dwarf(), nullptr);
  CoroCatalog catalog(m);
  for (const auto& fn : catalog.functions()) {
    auto frames = m->dwarf()->frames_at(fn.resume);
    ASSERT_FALSE(frames.empty()) << fn.name;
    EXPECT_FALSE(frames.back().inlined);
    EXPECT_EQ(base(frames.back().location.file), "chain.cpp") << fn.name;
  }
}

// GCC names a coroutine's actor (its resume function) in DWARF without a linkage name, and its
// symbol spells the frame type (`descend(descend(int)::_Z7descendi.Frame*) [clone .actor]`):
// the frame keeps DWARF's name, the function the user wrote.
TEST(DwarfNames, GccCoroutineActorKeepsItsDwarfName) {
  auto m = load(fixture_path("gcc12-O2", "chain"));
  ASSERT_NE(m->dwarf(), nullptr);
  CoroCatalog catalog(m);
  int checked = 0;
  for (const auto& fn : catalog.functions()) {
    const auto frames = m->symbolize(fn.resume);
    ASSERT_FALSE(frames.empty()) << fn.name;
    EXPECT_EQ(frames.back().function, fn.name.substr(0, fn.name.find('('))) << fn.name;
    ++checked;
  }
  EXPECT_GE(checked, 5);
}

// A source compiled here by both compilers: functions with internal linkage (GCC gives them no
// DWARF linkage name), one inlined, a lambda. Returns the object's path.
std::string compile_names_object(const std::string& compiler, const std::string& dir) {
  const std::string src = dir + "/names.cpp";
  std::ofstream(src) << R"(namespace outer {
namespace {
__attribute__((noinline)) int hidden(int x) {
  asm volatile("" : "+r"(x));
  return x * 3 + 1;
}
__attribute__((always_inline)) inline int helper(int x) {
  asm volatile("" : "+r"(x));
  return hidden(x) + 7;
}
}  // namespace
struct Box {
  static int twice(int v);
};
__attribute__((noinline)) int Box::twice(int v) { return helper(v) * 2; }
__attribute__((noinline)) int apply(int (*f)(int), int v) { return f(v); }
}  // namespace outer
int main(int argc, char**) {
  auto lambda = [](int v) __attribute__((noinline)) {
    asm volatile("" : "+r"(v));
    return v + 5;
  };
  return outer::Box::twice(argc) + outer::apply(+lambda, argc);
}
)";
  const std::string out = dir + "/names-" + compiler;
  const std::string cmd = compiler + " -O2 -g -o " + out + " " + src;
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  return out;
}

const ElfSymbol* symbol_starting(const Module& m, const std::string& prefix) {
  for (const auto& s : m.object().symbols()) {
    if (s.is_function && s.size > 0 && s.name.rfind(prefix, 0) == 0) return &s;
  }
  return nullptr;
}

// Without a linkage name, a function is named from its symbol (full signature) when it has code
// of its own, and qualified by its namespaces when inlined; with one, as before. The lambda's
// operator() sits inside its closure type and is still indexed.
TEST(DwarfNames, FunctionsWithoutLinkageNameAreQualified) {
  char tmpl[] = "/tmp/symbolizer-names-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  for (const std::string compiler : {"g++-12", "clang++-14"}) {
    const std::string path = compile_names_object(compiler, dir);
    auto m = load(path);
    ASSERT_NE(m, nullptr);
    ASSERT_NE(m->dwarf(), nullptr) << compiler;
    const bool gcc = compiler[0] == 'g';

    const ElfSymbol* hidden = symbol_starting(*m, "_ZN5outer12_GLOBAL__N_16hiddenEi");
    ASSERT_NE(hidden, nullptr) << compiler;
    auto frames = m->symbolize(hidden->value);
    ASSERT_EQ(frames.size(), 1u) << compiler;
    EXPECT_EQ(frames[0].function, "outer::(anonymous namespace)::hidden(int)") << compiler;

    const ElfSymbol* twice = symbol_starting(*m, "_ZN5outer3Box5twiceEi");
    ASSERT_NE(twice, nullptr) << compiler;
    std::string inlined;
    for (uint64_t a = twice->value; a < twice->value + twice->size && inlined.empty(); ++a) {
      frames = m->symbolize(a);
      if (frames.size() == 2 && frames[0].inlined) inlined = frames[0].function;
      if (!frames.empty()) {
        EXPECT_EQ(frames.back().function, "outer::Box::twice(int)");
      }
    }
    EXPECT_EQ(inlined, gcc ? "outer::(anonymous namespace)::helper"
                           : "outer::(anonymous namespace)::helper(int)")
        << compiler;

    const ElfSymbol* op = symbol_starting(*m, gcc ? "_ZZ4mainENKUliE_clEi" : "_ZZ4mainENK3$_0clEi");
    ASSERT_NE(op, nullptr) << compiler;
    frames = m->symbolize(op->value);
    ASSERT_EQ(frames.size(), 1u) << compiler;
    EXPECT_EQ(frames[0].function, gcc ? "main::{lambda(int)#1}::operator()(int) const"
                                      : "main::$_0::operator()(int) const")
        << compiler;
    // From the DWARF index itself (Module::symbolize would fall back to the symbol table).
    const auto dwarf_frames = m->dwarf()->frames_at(op->value);
    ASSERT_EQ(dwarf_frames.size(), 1u) << compiler;
    EXPECT_EQ(dwarf_frames[0].function, frames[0].function) << compiler;
    EXPECT_EQ(dwarf_frames[0].location.line, 21) << compiler;  // the lambda's `return v + 5;`
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace asyncprobe::symbolizer
