#include "userspace/output/profile_folded.h"

#include <cerrno>
#include <cstdlib>
#include <map>
#include <utility>
#include <vector>

#include "userspace/output/profile_stacks.h"

namespace asyncprobe::output {

namespace {

constexpr const char* kKernelSuffix = "_[k]";
constexpr const char* kInlinedSuffix = "_[i]";
constexpr const char* kCoroutineSuffix = "_[coro]";
constexpr const char* kAsyncSuffix = "_[async]";
constexpr const char* kUncertainAsyncSuffix = "_[async?]";

// ';' separates frames and a line break ends the stack: neither may appear inside a name.
std::string folded_function(const std::string& name) {
  if (name.empty()) return "[unknown]";
  std::string out = name;
  for (char& c : out) {
    if (c == ';') c = ':';
    if (c == '\n' || c == '\r') c = ' ';
  }
  return out;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Splits "name_[x]" into the frame it stands for; `uncertain` is set for _[async?].
model::ProfileFrame frame_from_folded(const std::string& text, bool* uncertain) {
  model::ProfileFrame f;
  f.function = text;
  const std::pair<const char*, model::ProfileFrame::Kind> kinds[] = {
      {kKernelSuffix, model::ProfileFrame::Kind::kKernel},
      {kCoroutineSuffix, model::ProfileFrame::Kind::kCoroutine},
      {kAsyncSuffix, model::ProfileFrame::Kind::kAsync},
      {kUncertainAsyncSuffix, model::ProfileFrame::Kind::kAsync},
  };
  for (const auto& [suffix, kind] : kinds) {
    const std::string sfx = suffix;
    if (ends_with(text, sfx) && text.size() > sfx.size()) {
      f.kind = kind;
      f.function = text.substr(0, text.size() - sfx.size());
      if (sfx == kUncertainAsyncSuffix) *uncertain = true;
      return f;
    }
  }
  const std::string inl = kInlinedSuffix;
  if (ends_with(text, inl) && text.size() > inl.size()) {
    f.inlined = true;
    f.function = text.substr(0, text.size() - inl.size());
  }
  return f;
}

}  // namespace

std::string folded_frame_name(const model::ProfileFrame& f, bool async_uncertain) {
  std::string name = folded_function(f.function);
  switch (f.kind) {
    case model::ProfileFrame::Kind::kKernel:
      return name + kKernelSuffix;
    case model::ProfileFrame::Kind::kAsync:
      return name + (async_uncertain ? kUncertainAsyncSuffix : kAsyncSuffix);
    case model::ProfileFrame::Kind::kCoroutine:
      return name + kCoroutineSuffix;
    case model::ProfileFrame::Kind::kNative:
      break;
  }
  return f.inlined ? name + kInlinedSuffix : name;
}

void write_folded(std::ostream& out, const model::Profile& p) {
  std::map<std::string, int64_t> stacks;  // sorted output, identical stacks merged
  for (const model::ProfileSample& s : p.samples) {
    const int64_t w = profile_weight(p, s);
    if (w <= 0 || s.frames.empty()) continue;
    std::string line;
    for (auto it = s.frames.rbegin(); it != s.frames.rend(); ++it) {
      if (!line.empty()) line += ';';
      line += folded_frame_name(p.frames[*it], s.async_uncertain);
    }
    stacks[line] += w;
  }
  for (const auto& [stack, weight] : stacks) out << stack << ' ' << weight << '\n';
}

bool read_folded(std::istream& in, model::Profile::Type type, model::Profile* out,
                 std::string* error) {
  model::Profile p;
  p.type = type;
  std::map<std::string, uint32_t> interned;
  std::string line;
  int line_no = 0;
  auto fail = [&](const std::string& why) {
    if (error != nullptr) *error = "folded stacks line " + std::to_string(line_no) + ": " + why;
    return false;
  };
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const size_t space = line.rfind(' ');
    if (space == std::string::npos || space == 0) return fail("no ' COUNT' after the stack");
    const std::string count_text = line.substr(space + 1);
    if (count_text.empty() || count_text.find_first_not_of("0123456789") != std::string::npos) {
      return fail("count '" + count_text + "' is not a non-negative integer");
    }
    errno = 0;
    const long long weight = std::strtoll(count_text.c_str(), nullptr, 10);
    if (errno == ERANGE) return fail("count '" + count_text + "' is too large");
    model::ProfileSample s;
    size_t start = 0;
    const std::string stack = line.substr(0, space);
    std::vector<uint32_t> root_first;
    while (true) {
      const size_t semi = stack.find(';', start);
      const std::string text = stack.substr(start, semi == std::string::npos ? semi : semi - start);
      if (text.empty()) return fail("empty frame name");
      auto [it, added] = interned.emplace(text, static_cast<uint32_t>(p.frames.size()));
      if (added) p.frames.push_back(frame_from_folded(text, &s.async_uncertain));
      if (!added && ends_with(text, kUncertainAsyncSuffix)) s.async_uncertain = true;
      root_first.push_back(it->second);
      if (semi == std::string::npos) break;
      start = semi + 1;
    }
    s.frames.assign(root_first.rbegin(), root_first.rend());
    if (type == model::Profile::Type::kCpu) {
      s.count = weight;
    } else {
      s.value_ns = weight;
    }
    p.samples.push_back(std::move(s));
  }
  if (in.bad()) return fail("read error");
  *out = std::move(p);
  return true;
}

}  // namespace asyncprobe::output
