#include "userspace/output/function_name_shortener.h"

#include <optional>
#include <string_view>

namespace asyncprobe::output {
namespace {

constexpr std::string_view kAnonymous = "(anonymous namespace)";
constexpr std::string_view kOperator = "operator";

bool is_open(char c) { return c == '<' || c == '(' || c == '['; }
bool is_close(char c) { return c == '>' || c == ')' || c == ']'; }

// Where the characters of an operator's name end, when `at` starts "operator" followed by
// punctuation ("operator<<", "operator()", "operator->"): those brackets are not brackets.
size_t skip_operator(std::string_view s, size_t at) {
  if (s.substr(at, kOperator.size()) != kOperator) return at;
  size_t i = at + kOperator.size();
  if (s.substr(i, 2) == "()" || s.substr(i, 2) == "[]") return i + 2;
  while (i < s.size() && std::string_view("<>=!+-*/%^&|~,").find(s[i]) != std::string_view::npos) {
    ++i;
  }
  return i;
}

// Rewrites `s` with every bracket group that opens with `open` (at depth 0 only, or at any
// depth) replaced by open + "..." + close; everything else is copied. nullopt when brackets do
// not balance.
std::optional<std::string> fold_groups(std::string_view s, char open, char close,
                                       bool top_level_only) {
  std::string out;
  int depth = 0;
  bool folding = false;  // inside a group being folded: copy nothing
  int fold_depth = 0;    // the depth the folded group opened at
  for (size_t i = 0; i < s.size();) {
    size_t skip =
        s.substr(i, kAnonymous.size()) == kAnonymous ? i + kAnonymous.size() : skip_operator(s, i);
    if (skip != i) {
      if (!folding) out += s.substr(i, skip - i);
      i = skip;
      continue;
    }
    char c = s[i++];
    if (is_open(c)) {
      // An empty list ("()") says as much as a folded one and is shorter.
      bool empty = i < s.size() && s[i] == close;
      if (!folding && !empty && c == open && (depth == 0 || !top_level_only)) {
        folding = true;
        fold_depth = depth;
        out += std::string(1, open) + "..." + std::string(1, close);
      } else if (!folding) {
        out += c;
      }
      ++depth;
    } else if (is_close(c)) {
      if (--depth < 0) return std::nullopt;
      if (!folding) {
        out += c;
      } else if (depth == fold_depth) {
        folding = false;
      }
    } else if (!folding) {
      out += c;
    }
  }
  if (depth != 0) return std::nullopt;
  return out;
}

// Drops "ReturnType " before the qualified name: the last space at depth 0 that comes before
// the first depth-0 '(' other than "(anonymous namespace)", unless it follows an operator's
// name ("operator bool()", "operator<< <T>(...)"). nullopt when brackets do not balance.
std::optional<std::string> drop_return_type(std::string_view s) {
  int depth = 0;
  size_t last_space = std::string_view::npos;
  size_t operator_end = std::string_view::npos;  // where the last operator name ended
  for (size_t i = 0; i < s.size();) {
    size_t op_end = skip_operator(s, i);
    if (op_end != i) operator_end = op_end;
    size_t skip = s.substr(i, kAnonymous.size()) == kAnonymous ? i + kAnonymous.size() : op_end;
    if (skip != i) {
      i = skip;
      continue;
    }
    char c = s[i];
    if (depth == 0 && c == '(') break;
    if (is_open(c)) ++depth;
    if (is_close(c) && --depth < 0) return std::nullopt;
    if (depth == 0 && c == ' ' && i != operator_end) last_space = i;
    ++i;
  }
  if (last_space == std::string_view::npos) return std::string(s);
  return std::string(s.substr(last_space + 1));
}

}  // namespace

std::string shorten_function_name(const std::string& name, size_t max_len) {
  if (name.size() <= max_len) return name;
  std::optional<std::string> no_return = drop_return_type(name);
  if (!no_return) return name;
  if (no_return->size() <= max_len) return *no_return;
  std::optional<std::string> no_templates = fold_groups(*no_return, '<', '>', false);
  if (!no_templates) return *no_return;
  if (no_templates->size() <= max_len) return *no_templates;
  std::optional<std::string> no_params = fold_groups(*no_templates, '(', ')', true);
  return no_params ? *no_params : *no_templates;
}

}  // namespace asyncprobe::output
