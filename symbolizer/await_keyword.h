// Moves a suspend point placed by GCC to the line of its `co_await` keyword. GCC records a
// co_await's index store and await_suspend call on the last line of the co_await expression
// (`co_await f(a,\n b);` is placed on the `b);` line, `int v =\n co_await\n g();` on `g();`),
// and for a value-returning co_await the keyword's line appears nowhere in its line table; Clang
// places the keyword's line. The keyword's line is then only in the source file: when that file
// is readable here, the nearest `co_await` / `co_yield` at or above the placed line, within the
// same statement, is the keyword. Without the file the placed line stays.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace asyncprobe::symbolizer {

class AwaitKeywordFinder {
 public:
  // The line of the co_await / co_yield keyword of the expression GCC placed at `line` of `path`,
  // never above `lowest_line` (the function's declaration); `line` when the file cannot be read
  // or no keyword is found before the statement's start.
  int keyword_line(const std::string& path, int line, int lowest_line);

 private:
  const std::vector<std::string>* source(const std::string& path);

  std::map<std::string, std::vector<std::string>> files_;  // path -> lines (empty: unreadable)
};

// True when `text` (one source line) holds the token co_await or co_yield outside a // comment.
bool has_await_keyword(const std::string& text);

}  // namespace asyncprobe::symbolizer
