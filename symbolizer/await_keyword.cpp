#include "symbolizer/await_keyword.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>

namespace asyncprobe::symbolizer {

namespace {

// A statement spans at most this many lines; a longer walk means the placed line was not inside a
// co_await expression.
constexpr int kMaxStatementLines = 32;
constexpr size_t kMaxSourceBytes = 16 << 20;

bool is_ident(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_'; }

// The line without a trailing // comment (string literals are not parsed: a "//" inside one only
// hides what follows it on that line, which errs towards keeping the compiler's line).
std::string code_part(const std::string& text) {
  size_t c = text.find("//");
  return c == std::string::npos ? text : text.substr(0, c);
}

// The last character of the code on a line, or 0 when it has none.
char last_code_char(const std::string& text) {
  std::string code = code_part(text);
  size_t e = code.find_last_not_of(" \t\r");
  return e == std::string::npos ? 0 : code[e];
}

}  // namespace

bool has_await_keyword(const std::string& text) {
  const std::string code = code_part(text);
  for (const char* kw : {"co_await", "co_yield"}) {
    const std::string k = kw;
    for (size_t at = code.find(k); at != std::string::npos; at = code.find(k, at + 1)) {
      bool left = at == 0 || !is_ident(code[at - 1]);
      bool right = at + k.size() >= code.size() || !is_ident(code[at + k.size()]);
      if (left && right) return true;
    }
  }
  return false;
}

namespace {

// The path comes from the target's DWARF: hostile input. Only a regular file of at most
// kMaxSourceBytes is read (a FIFO would block, /dev/zero would never end a line), without
// blocking on open.
bool read_source_file(const std::string& path, std::string* out) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return false;
  struct stat st {};
  bool ok = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 0 &&
            static_cast<uint64_t>(st.st_size) <= kMaxSourceBytes;
  if (ok) {
    out->resize(static_cast<size_t>(st.st_size));
    size_t got = 0;
    while (got < out->size()) {
      const ssize_t n = ::read(fd, out->data() + got, out->size() - got);
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    out->resize(got);
  }
  ::close(fd);
  return ok;
}

}  // namespace

const std::vector<std::string>* AwaitKeywordFinder::source(const std::string& path) {
  auto it = files_.find(path);
  if (it == files_.end()) {
    std::vector<std::string> lines;
    std::string text;
    if (read_source_file(path, &text)) {
      for (size_t at = 0; at < text.size();) {
        size_t end = text.find('\n', at);
        if (end == std::string::npos) end = text.size();
        lines.emplace_back(text, at, end - at);
        at = end + 1;
      }
    }
    it = files_.emplace(path, std::move(lines)).first;
  }
  return it->second.empty() ? nullptr : &it->second;
}

int AwaitKeywordFinder::keyword_line(const std::string& path, int line, int lowest_line) {
  if (path.empty() || line <= 0) return line;
  const std::vector<std::string>* lines = source(path);
  if (lines == nullptr || static_cast<size_t>(line) > lines->size()) return line;
  const int floor = std::max(1, lowest_line);
  for (int l = line; l >= floor && line - l < kMaxStatementLines; --l) {
    const std::string& text = (*lines)[static_cast<size_t>(l - 1)];
    if (has_await_keyword(text)) return l;
    // A line above the placed one that ends a statement or opens/closes a block belongs to code
    // before this co_await expression: the keyword is not above it.
    if (l != line) {
      char last = last_code_char(text);
      if (last == ';' || last == '{' || last == '}') break;
    }
  }
  return line;
}

}  // namespace asyncprobe::symbolizer
