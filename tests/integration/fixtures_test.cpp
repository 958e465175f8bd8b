// Checks the fixture programs themselves (not asyncprobe): every built fixture starts, says READY
// with the promised tokens, maps what it should, and its ELF files carry (or lack) the symbols and
// debug info its variant promises. Also checks the await markers the other tests rely on.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/fixture_process.h"
#include "tests/integration/source_markers.h"

namespace asyncprobe::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Section names from `readelf -SW`, the real ELF reader, not our own parser.
std::set<std::string> elf_sections(const std::string& path) {
  RunResult r = run_command({"readelf", "-SW", path}, seconds(30));
  EXPECT_EQ(r.exit.exit_code, 0) << r.err;
  std::set<std::string> names;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    const std::size_t bracket = line.find("] ");
    if (line.find("  [") != 0 || bracket == std::string::npos) continue;
    std::istringstream rest(line.substr(bracket + 2));
    std::string name;
    rest >> name;
    names.insert(name);
  }
  return names;
}

std::string build_id(const std::string& path) {
  RunResult r = run_command({"readelf", "-n", path}, seconds(30));
  const std::size_t at = r.out.find("Build ID: ");
  if (at == std::string::npos) return {};
  std::istringstream rest(r.out.substr(at + 10));
  std::string id;
  rest >> id;
  return id;
}

int occurrences(const std::string& text, const std::string& word) {
  int count = 0;
  for (std::size_t at = text.find(word); at != std::string::npos; at = text.find(word, at + 1))
    ++count;
  return count;
}

std::string canonical(const std::string& path) { return fs::canonical(path).string(); }

// Whether the process maps a file with exactly this path (the sixth column of /proc/PID/maps).
bool maps_file(pid_t pid, const std::string& path) {
  std::istringstream maps(read_text("/proc/" + std::to_string(pid) + "/maps"));
  for (std::string line; std::getline(maps, line);) {
    if (line.size() >= path.size() &&
        line.compare(line.size() - path.size(), path.size(), path) == 0)
      return true;
  }
  return false;
}

std::string test_name(const std::string& variant, const std::string& file) {
  std::string name = variant + "_" + file;
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return name;
}

// The manifest read at test registration; empty (and reported by ManifestListsEveryVariant) when
// the fixtures are not built.
std::vector<std::pair<std::string, std::string>> manifest_or_empty() {
  try {
    return fixture_manifest();
  } catch (const std::exception&) {
    return {};
  }
}

TEST(FixtureManifest, ListsEveryVariant) {
  const std::vector<std::string> variants = fixture_variants();
  // clang14libcxx: clang++-14 -stdlib=libc++, for the failed-coroutine reader only.
  const std::vector<std::string> expected = {
      "gcc12-O0",   "gcc12-O2",   "gcc12-O3",   "clang14-O0",       "clang14-O2",      "clang14-O3",
      "clang19-O0", "clang19-O2", "clang19-O3", "clang14libcxx-O0", "clang14libcxx-O2"};
  EXPECT_EQ(std::set<std::string>(variants.begin(), variants.end()),
            std::set<std::string>(expected.begin(), expected.end()));
  EXPECT_EQ(fixture_variants_with("asio_server"),
            (std::vector<std::string>{"gcc12-O2", "clang19-O2"}));
  EXPECT_EQ(fixture_variants_with("chain").size(), 9u);
  EXPECT_EQ(fixture_variants_with("many").size(), 6u);
}

class EveryFixture : public ::testing::TestWithParam<std::pair<std::string, std::string>> {};

// Starts one built file of the manifest and checks what its variant and program promise.
TEST_P(EveryFixture, StartsAndShowsWhatItPromises) {
  const auto& [variant, file] = GetParam();
  const std::string path = fixture_path(variant, file);
  ASSERT_TRUE(fs::exists(path)) << path;
  const std::string program = fs::path(file).filename().string();
  const std::set<std::string> sections = elf_sections(path);

  if (program == "libcorolib.so") {
    RunResult syms = run_command({"readelf", "--dyn-syms", "-W", "-C", path}, seconds(30));
    EXPECT_NE(syms.out.find("lib_serve(int, int)"), std::string::npos);
    EXPECT_TRUE(sections.count(".debug_info"));
    return;
  }

  // Symbols and DWARF: which of them each form of the binary carries.
  const std::string form = fs::path(file).parent_path().string();
  if (form.empty()) {
    EXPECT_TRUE(sections.count(".symtab")) << path;
    EXPECT_TRUE(sections.count(".debug_info")) << path;
  } else if (form == "nodwarf") {
    EXPECT_TRUE(sections.count(".symtab")) << path;
    EXPECT_FALSE(sections.count(".debug_info")) << path;
  } else {
    EXPECT_FALSE(sections.count(".symtab")) << path;
    EXPECT_FALSE(sections.count(".debug_info")) << path;
    EXPECT_EQ(sections.count(".gnu_debuglink"), form == "stripped" ? 1u : 0u) << path;
    const std::string dir = fs::path(path).parent_path().string();
    if (form == "stripped") {
      const std::set<std::string> debug = elf_sections(dir + "/chain.debug");
      EXPECT_TRUE(debug.count(".symtab"));
      EXPECT_TRUE(debug.count(".debug_info"));
    } else if (form == "stripped-buildid") {
      const std::string id = build_id(path);
      ASSERT_GT(id.size(), 2u);
      const std::string debug_file =
          dir + "/debug/.build-id/" + id.substr(0, 2) + "/" + id.substr(2) + ".debug";
      ASSERT_TRUE(fs::exists(debug_file)) << debug_file;
      EXPECT_EQ(build_id(debug_file), id);
      EXPECT_TRUE(elf_sections(debug_file).count(".debug_info"));
    } else {
      ASSERT_EQ(form, "stripped-nodebug");
      for (const auto& entry : fs::recursive_directory_iterator(dir)) {
        EXPECT_EQ(entry.path().filename(), "chain") << "unexpected " << entry.path();
      }
    }
  }

  std::vector<std::string> argv = {path};
  if (program == "chain") argv.insert(argv.end(), {"--depth", "10", "--count", "2"});
  if (program == "exits") argv.insert(argv.end(), {"--after-ms", "100"});
  if (program == "busy") argv.insert(argv.end(), {"--seconds", "1"});
  if (program == "asio_server") argv.insert(argv.end(), {"--clients", "3"});
  if (program == "lock_waits") argv.push_back("mutex2");
  FixtureProcess fixture(argv);

  ASSERT_GT(fixture.pid(), 0);
  EXPECT_EQ(fs::read_symlink("/proc/" + std::to_string(fixture.pid()) + "/exe"), canonical(path));
  EXPECT_TRUE(maps_file(fixture.pid(), canonical(path)));

  if (program == "chain") {
    EXPECT_EQ(fixture.token_int("depth"), 10);
    EXPECT_EQ(fixture.token_int("count"), 2);
    EXPECT_EQ(fixture.token_int("coroutines"), 21);
  } else if (program == "many") {
    EXPECT_EQ(fixture.token_int("chains"), 25000);
    EXPECT_EQ(fixture.token_int("coroutines"), 100000);
  } else if (program == "generator") {
    EXPECT_EQ(fixture.token_int("consumer_took"), 3);
    EXPECT_EQ(fixture.token_int("two_phase_took"), 2);
  } else if (program == "threw") {
    EXPECT_EQ(fixture.token_int("done"), 2);
    EXPECT_EQ(fixture.token_int("parked"), 1);
  } else if (program == "nocoro") {
    EXPECT_TRUE(fixture.tokens().empty());
    RunResult syms = run_command({"readelf", "-sW", path}, seconds(30));
    EXPECT_EQ(syms.out.find(".actor"), std::string::npos);
    EXPECT_EQ(syms.out.find(".resume"), std::string::npos);
  } else if (program == "uses_lib") {
    EXPECT_EQ(fixture.token_int("coroutines"), 2 * 5 + 2);
    EXPECT_TRUE(maps_file(fixture.pid(), canonical(fixture_path(variant, "libcorolib.so"))));
  } else if (program == "exits") {
    std::optional<ProcessExit> ended = fixture.wait_exit(seconds(10));
    ASSERT_TRUE(ended.has_value());
    EXPECT_EQ(ended->exit_code, 0);
  } else if (program == "busy") {
    std::optional<std::string> last = fixture.read_line(seconds(10));
    ASSERT_TRUE(last.has_value());
    EXPECT_EQ(last->rfind("resumes=", 0), 0u) << *last;
    EXPECT_GT(std::stoll(last->substr(8)), 1000);
    std::optional<ProcessExit> ended = fixture.wait_exit(seconds(10));
    ASSERT_TRUE(ended.has_value());
    EXPECT_EQ(ended->exit_code, 0);
  } else if (program == "threads") {
    const std::string task = "/proc/" + std::to_string(fixture.pid()) + "/task/";
    const std::pair<const char*, const char*> threads[] = {
        {"futex_tid", "futex-waiter"}, {"epoll_tid", "epoll-loop"}, {"sleeper_tid", "sleeper"}};
    for (const auto& [token, name] : threads) {
      EXPECT_EQ(read_text(task + fixture.token(token) + "/comm"), std::string(name) + "\n");
      EXPECT_NE(read_text(task + fixture.token(token) + "/syscall").rfind("running", 0), 0u);
    }
  } else if (program == "lock_waits") {
    // Both threads blocked in futex (the fixture waited for it before READY).
    const std::string task = "/proc/" + std::to_string(fixture.pid()) + "/task/";
    for (const char* t : {"a", "b"}) {
      EXPECT_EQ(read_text(task + fixture.token(t) + "/syscall").rfind("202 ", 0), 0u);
    }
  } else if (program == "fan_out") {
    EXPECT_EQ(fixture.token_int("children"), 8);
  } else if (program == "asio_parallel") {
    EXPECT_EQ(fixture.token_int("waiting"), 4);
  } else if (program == "orphans") {
    EXPECT_EQ(fixture.token_int("orphans"), 5);
    EXPECT_EQ(fixture.token_int("held"), 3);
  } else if (program == "asio_server") {
    EXPECT_GT(fixture.token_int("port"), 0);
    EXPECT_EQ(fixture.token_int("clients"), 3);
    int sockets = 0;
    for (const auto& fd :
         fs::directory_iterator("/proc/" + std::to_string(fixture.pid()) + "/fd")) {
      if (fs::read_symlink(fd.path()).string().rfind("socket:", 0) == 0) ++sockets;
    }
    // The acceptor plus both ends of each client connection.
    EXPECT_GE(sockets, 1 + 2 * 3);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, EveryFixture, ::testing::ValuesIn(manifest_or_empty()),
                         [](const auto& info) {
                           return test_name(info.param.first, info.param.second);
                         });
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(EveryFixture);

TEST(FixtureProcess, ReportsAProgramThatDiesBeforeReady) {
  EXPECT_THROW(FixtureProcess({"/bin/sh", "-c", "echo starting; exit 3"}), std::runtime_error);
  EXPECT_THROW(FixtureProcess({"/nonexistent/program"}), std::runtime_error);
}

TEST(FixtureProcess, TimesOutWithoutReady) {
  EXPECT_THROW(FixtureProcess({"/bin/sleep", "30"}, milliseconds(300)), std::runtime_error);
}

TEST(FixtureProcess, KillsAndReapsOnDestruction) {
  pid_t pid;
  {
    FixtureProcess fixture({fixture_path("gcc12-O0", "nocoro")});
    pid = fixture.pid();
    EXPECT_TRUE(fixture.running());
  }
  EXPECT_FALSE(fs::exists("/proc/" + std::to_string(pid)));
}

TEST(RunCommand, CapturesOutputAndStatus) {
  RunResult r = run_command({"/bin/sh", "-c", "echo out; echo err >&2; exit 7"});
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
  EXPECT_EQ(r.exit.exit_code, 7);
  EXPECT_FALSE(r.timed_out);
}

TEST(RunCommand, KillsOnTimeout) {
  RunResult r = run_command({"/bin/sleep", "30"}, milliseconds(200));
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.exit.term_signal, SIGKILL);
}

// Every fixture source (and the demo) keeps one co_await/co_yield per line, each with a unique
// marker, so expected suspend lines always come from the source.
TEST(SourceMarkers, EveryAwaitLineHasAUniqueMarker) {
  std::vector<std::string> sources;
  for (const auto& entry : fs::directory_iterator(source_file("tests/fixtures"))) {
    if (entry.path().extension() == ".cpp") sources.push_back(entry.path().string());
  }
  sources.push_back(source_file("tools/demo/demo_server.cpp"));
  ASSERT_GE(sources.size(), 11u);
  for (const std::string& path : sources) {
    std::map<std::string, int> markers;
    ASSERT_NO_THROW(markers = source_markers(path)) << path;
    std::ifstream in(path);
    int line_number = 0;
    std::set<int> await_lines;
    for (std::string line; std::getline(in, line);) {
      ++line_number;
      std::string code = line.substr(0, line.find("//"));
      // `operator co_await` declares an awaiter; it awaits nothing.
      for (std::size_t at; (at = code.find("operator co_await")) != std::string::npos;) {
        code.erase(at, sizeof "operator co_await" - 1);
      }
      const bool awaits =
          code.find("co_await") != std::string::npos || code.find("co_yield") != std::string::npos;
      if (awaits) await_lines.insert(line_number);
      EXPECT_LE(occurrences(code, "co_await") + occurrences(code, "co_yield"), 1)
          << path << ":" << line_number;
    }
    std::set<int> marked;
    for (const auto& [name, line] : markers) marked.insert(line);
    EXPECT_EQ(await_lines, marked) << path;
  }
}

TEST(SourceMarkers, MarkerLineFindsTheAwait) {
  const int line = marker_line("tests/fixtures/chain.cpp", "descend_park");
  std::ifstream in(source_file("tests/fixtures/chain.cpp"));
  std::string text;
  for (int i = 0; i < line; ++i) std::getline(in, text);
  EXPECT_NE(text.find("co_await park{};"), std::string::npos) << text;
  EXPECT_EQ(marker_location("tests/fixtures/chain.cpp", "descend_park"),
            source_dir() + "/tests/fixtures/chain.cpp:" + std::to_string(line));
  EXPECT_THROW(marker_line("tests/fixtures/chain.cpp", "no_such_marker"), std::runtime_error);
  EXPECT_THROW(marker_line("tests/fixtures/no_such_file.cpp", "descend_park"), std::runtime_error);
}

TEST(SourceMarkers, DuplicatedMarkerThrows) {
  const fs::path dir = fs::temp_directory_path() / ("markers-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "dup.cpp").string();
  std::ofstream(path) << "co_await a;  // @await same\nco_await b;  // @await same\n";
  EXPECT_THROW(source_markers(path), std::runtime_error);
  EXPECT_THROW(marker_line(path, "same"), std::runtime_error);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace asyncprobe::testing
