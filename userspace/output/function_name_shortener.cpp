#include "userspace/output/function_name_shortener.h"

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace asyncprobe::output {
namespace {

constexpr std::string_view kAnonymous = "(anonymous namespace)";
constexpr std::string_view kOperator = "operator";

bool is_open(char c) { return c == '<' || c == '(' || c == '['; }
bool is_close(char c) { return c == '>' || c == ')' || c == ']'; }

// The operators whose names are punctuation, longest first so that "operator&&<T>" ends at
// "&&" and its '<' opens the template argument list.
constexpr std::string_view kOperatorTokens[] = {
    "<<=", ">>=", "<=>", "->*", "()", "[]", "<<", ">>", "<=", ">=", "==", "!=", "&&",
    "||",  "++",  "--",  "->",  "+=", "-=", "*=", "/=", "%=", "^=", "&=", "|=", "<",
    ">",   "=",   "!",   "+",   "-",  "*",  "/",  "%",  "^",  "&",  "|",  "~",  ","};

// Where the characters of an operator's name end, when `at` starts "operator" followed by
// punctuation ("operator<<", "operator()", "operator&&"): those brackets are not brackets.
size_t skip_operator(std::string_view s, size_t at) {
  if (s.substr(at, kOperator.size()) != kOperator) return at;
  size_t i = at + kOperator.size();
  for (std::string_view token : kOperatorTokens) {
    if (s.substr(i, token.size()) == token) return i + token.size();
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

// The parts of a name around the function's own template argument list:
// "<prefix><args>(params)<suffix>", e.g. "ns::f" "<A, B>" "(int) const". nullopt when the name
// has no such list (the last thing before the parameter list is not a '>').
struct OwnTemplateList {
  std::string_view prefix;
  std::vector<std::string_view> args;
  std::string_view params;  // from the parameter list's '(' to the end
};

std::optional<OwnTemplateList> own_template_list(std::string_view s) {
  int depth = 0;
  size_t paren = std::string_view::npos;
  for (size_t i = 0; i < s.size();) {
    size_t skip =
        s.substr(i, kAnonymous.size()) == kAnonymous ? i + kAnonymous.size() : skip_operator(s, i);
    if (skip != i) {
      i = skip;
      continue;
    }
    if (depth == 0 && s[i] == '(') {
      paren = i;
      break;
    }
    if (is_open(s[i])) ++depth;
    if (is_close(s[i])) --depth;
    ++i;
  }
  if (paren == std::string_view::npos || paren == 0 || s[paren - 1] != '>') return std::nullopt;
  // Back from the '>' to the '<' that opens the list; the commas at its depth split arguments.
  OwnTemplateList out;
  std::vector<size_t> commas;
  depth = 0;
  size_t open = std::string_view::npos;
  for (size_t i = paren; i-- > 0;) {
    if (is_close(s[i])) ++depth;
    if (is_open(s[i]) && --depth == 0) {
      open = i;
      break;
    }
    if (depth == 1 && s[i] == ',') commas.push_back(i);
  }
  if (open == std::string_view::npos || open == 0) return std::nullopt;
  out.prefix = s.substr(0, open);
  out.params = s.substr(paren);
  size_t from = open + 1;
  for (auto it = commas.rbegin(); it != commas.rend(); ++it) {
    out.args.push_back(s.substr(from, *it - from));
    from = *it + 1;
  }
  out.args.push_back(s.substr(from, paren - 1 - from));
  return out;
}

// A template argument as a reader tells it apart: its own brackets folded, its qualifiers
// dropped ("ns::socket<...>::initiate_async_receive" -> "initiate_async_receive").
std::optional<std::string> unqualified(std::string_view arg) {
  while (!arg.empty() && arg.front() == ' ') arg.remove_prefix(1);
  while (!arg.empty() && arg.back() == ' ') arg.remove_suffix(1);
  std::optional<std::string> folded = fold_groups(arg, '<', '>', false);
  if (folded) folded = fold_groups(*folded, '(', ')', true);
  if (!folded) return std::nullopt;
  std::string_view f = *folded;
  int depth = 0;
  size_t last = std::string_view::npos;
  for (size_t i = 0; i < f.size();) {
    size_t skip =
        f.substr(i, kAnonymous.size()) == kAnonymous ? i + kAnonymous.size() : skip_operator(f, i);
    if (skip != i) {
      i = skip;
      continue;
    }
    if (is_open(f[i])) ++depth;
    if (is_close(f[i])) --depth;
    if (depth == 0 && f.substr(i, 2) == "::") last = i + 2;
    ++i;
  }
  return last == std::string_view::npos ? *folded : std::string(f.substr(last));
}

// The name with every template argument list folded except the function's own, whose
// arguments keep their unqualified names: what tells `initiate<initiate_async_receive, ...>`
// from `initiate<initiate_async_write<...>, ...>`. `max_args` 2 keeps the first and the last
// (Asio's co_spawn_entry_point differs in its last, the handler), 1 the first; "..." stands for
// the rest. `fold_params` folds the parameter list too.
std::optional<std::string> keep_own_arguments(std::string_view s, bool fold_params,
                                              size_t max_args = SIZE_MAX) {
  std::optional<OwnTemplateList> own = own_template_list(s);
  if (!own) return std::nullopt;
  std::optional<std::string> prefix = fold_groups(own->prefix, '<', '>', false);
  std::optional<std::string> params = fold_groups(own->params, '<', '>', false);
  if (params && fold_params) params = fold_groups(*params, '(', ')', true);
  if (!prefix || !params) return std::nullopt;
  std::string out = *prefix + "<";
  const size_t n = own->args.size();
  for (size_t k = 0; k < n; ++k) {
    const bool kept = max_args == 2 ? k == 0 || k + 1 == n : k < max_args;
    if (!kept) {
      if (k == 1) out += ", ...";
      continue;
    }
    std::optional<std::string> arg = unqualified(own->args[k]);
    if (!arg) return std::nullopt;
    out += (k == 0 ? "" : ", ") + *arg;
  }
  return out + ">" + *params;
}

}  // namespace

std::string shorten_function_name(const std::string& name, size_t max_len) {
  if (name.size() <= max_len) return name;
  std::optional<std::string> no_return = drop_return_type(name);
  if (!no_return) return name;
  if (no_return->size() <= max_len) return *no_return;
  std::optional<std::string> own_kept = keep_own_arguments(*no_return, false);
  if (own_kept && own_kept->size() <= max_len) return *own_kept;
  std::optional<std::string> no_templates = fold_groups(*no_return, '<', '>', false);
  if (!no_templates) return *no_return;
  if (no_templates->size() <= max_len) return *no_templates;
  for (size_t max_args : {SIZE_MAX, size_t{2}, size_t{1}}) {
    std::optional<std::string> own_kept_no_params = keep_own_arguments(*no_return, true, max_args);
    if (own_kept_no_params && own_kept_no_params->size() <= max_len) return *own_kept_no_params;
  }
  std::optional<std::string> no_params = fold_groups(*no_templates, '(', ')', true);
  return no_params ? *no_params : *no_templates;
}

}  // namespace asyncprobe::output
