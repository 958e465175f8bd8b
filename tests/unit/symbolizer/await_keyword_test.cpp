// AwaitKeywordFinder on source text written here: where GCC places a multi-line co_await (its
// last line) and where the keyword is.
#include "symbolizer/await_keyword.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>

namespace asyncprobe::symbolizer {
namespace {

// A source file in a fresh temporary directory, removed with the object.
class TempSource {
 public:
  explicit TempSource(const std::string& text) {
    char dir[] = "/tmp/await_keyword_testXXXXXX";
    if (mkdtemp(dir) == nullptr) throw std::runtime_error("mkdtemp");
    dir_ = dir;
    path_ = dir_ + "/source.cpp";
    std::ofstream(path_) << text;
  }
  ~TempSource() {
    std::remove(path_.c_str());
    rmdir(dir_.c_str());
  }
  const std::string& path() const { return path_; }

 private:
  std::string dir_, path_;
};

TEST(AwaitKeyword, TokenOutsideComments) {
  EXPECT_TRUE(has_await_keyword("  co_await x;"));
  EXPECT_TRUE(has_await_keyword("int v = co_await(f());"));
  EXPECT_TRUE(has_await_keyword("  co_yield 3;"));
  EXPECT_FALSE(has_await_keyword("  my_co_await(x);"));
  EXPECT_FALSE(has_await_keyword("  co_awaiter x;"));
  EXPECT_FALSE(has_await_keyword("  f(x);  // then co_await"));
}

TEST(AwaitKeyword, WalksUpToTheKeywordWithinTheStatement) {
  TempSource src(
      "task<void> f() {\n"      // 1
      "  g();\n"                // 2
      "  co_await sleep(1,\n"   // 3
      "                 2);\n"  // 4
      "  int v =\n"             // 5
      "      co_await\n"        // 6
      "      h();\n"            // 7
      "  k(1,\n"                // 8
      "    2);\n"               // 9
      "}\n");                   // 10
  AwaitKeywordFinder finder;
  EXPECT_EQ(finder.keyword_line(src.path(), 4, 1), 3);
  EXPECT_EQ(finder.keyword_line(src.path(), 3, 1), 3);
  EXPECT_EQ(finder.keyword_line(src.path(), 7, 1), 6);
  // No keyword in the statement: the line stays (the walk stops at the previous `;`).
  EXPECT_EQ(finder.keyword_line(src.path(), 9, 1), 9);
  EXPECT_EQ(finder.keyword_line(src.path(), 2, 1), 2);
  // Never above the function's declaration.
  EXPECT_EQ(finder.keyword_line(src.path(), 4, 4), 4);
  // Out of the file, or no file: unchanged.
  EXPECT_EQ(finder.keyword_line(src.path(), 40, 1), 40);
  EXPECT_EQ(finder.keyword_line(src.path() + ".missing", 4, 1), 4);
  EXPECT_EQ(finder.keyword_line("", 4, 1), 4);
}

// The path comes from the target's DWARF: a FIFO (whose open or read would block) or a device
// that never ends a line (/dev/zero) is not read, and the placed line stays.
TEST(AwaitKeyword, HostilePathsAreNotRead) {
  char dir[] = "/tmp/await-keyword-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string fifo = std::string(dir) + "/source.cpp";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  AwaitKeywordFinder finder;
  EXPECT_EQ(finder.keyword_line(fifo, 12, 1), 12);
  EXPECT_EQ(finder.keyword_line("/dev/zero", 7, 1), 7);
  EXPECT_EQ(finder.keyword_line(dir, 5, 1), 5);
  ::unlink(fifo.c_str());
  ::rmdir(dir);
}

}  // namespace
}  // namespace asyncprobe::symbolizer
