// How compilers name the functions a coroutine is split into: GCC `<X>.Frame.actor` (resume) and
// `<X>.Frame.destroy`, where <X> is the mangled actor whose parameter type `<ramp>.Frame` ends the
// encoding; Clang `<ramp>.resume`, `<ramp>.destroy`, `<ramp>.cleanup`, the ramp's own (dot-free)
// linkage name in front. The symbolizer's catalog and the in-target library's symbol scan both
// recognise names here; no allocation, so the in-target library may call it anywhere.
#pragma once

#include <cstdint>
#include <string_view>

namespace asyncprobe::coro {

enum class SplitPart : uint8_t { kNone, kResume, kDestroy, kCleanup };

struct SplitName {
  SplitPart part = SplitPart::kNone;
  bool gcc = false;
  // The name without the part's suffix: the parts of one coroutine share it. GCC: `<X>.Frame`
  // (the ramp is inside it); Clang: the ramp's linkage name.
  std::string_view key;
};

namespace detail {

constexpr bool strip_suffix(std::string_view* s, std::string_view suffix) {
  if (s->size() <= suffix.size() || s->substr(s->size() - suffix.size()) != suffix) return false;
  s->remove_suffix(suffix.size());
  return true;
}

constexpr bool names_gcc_frame(std::string_view key) {
  return key.size() > 6 &&
         (key.substr(key.size() - 6) == ".Frame" || key.substr(key.size() - 6) == ".frame");
}

}  // namespace detail

// Which part of a split coroutine `symbol` names, if any. GCC has no cleanup part and its actor
// always names a frame type; a Clang key is a whole linkage name, which has no dots.
constexpr SplitName parse_split_name(std::string_view symbol) {
  std::string_view key = symbol;
  SplitPart part = SplitPart::kNone;
  bool gcc_suffix = false;
  if (detail::strip_suffix(&key, ".actor")) {
    part = SplitPart::kResume;
    gcc_suffix = true;
  } else if (detail::strip_suffix(&key, ".destroy")) {
    part = SplitPart::kDestroy;
  } else if (detail::strip_suffix(&key, ".resume")) {
    part = SplitPart::kResume;
  } else if (detail::strip_suffix(&key, ".cleanup")) {
    part = SplitPart::kCleanup;
  } else {
    return {};
  }
  const bool gcc_frame = detail::names_gcc_frame(key);
  if (gcc_frame && (gcc_suffix || part == SplitPart::kDestroy)) return {part, true, key};
  if (gcc_suffix || key.find('.') != std::string_view::npos) return {};
  return {part, false, key};
}

}  // namespace asyncprobe::coro
