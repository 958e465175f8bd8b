#include "userspace/output/profile_export.h"

#include <algorithm>
#include <cctype>

#include "userspace/output/profile_folded.h"
#include "userspace/output/profile_json.h"
#include "userspace/output/profile_pprof.h"
#include "userspace/output/profile_speedscope.h"
#include "userspace/output/profile_stacks.h"
#include "userspace/output/profile_svg.h"
#include "userspace/output/profile_text.h"

namespace asyncprobe::output {

namespace {

struct FormatName {
  ProfileFormat format;
  const char* name;
};

constexpr FormatName kFormatNames[] = {
    {ProfileFormat::kText, "text"},   {ProfileFormat::kFolded, "folded"},
    {ProfileFormat::kSvg, "svg"},     {ProfileFormat::kSpeedscope, "speedscope"},
    {ProfileFormat::kPprof, "pprof"}, {ProfileFormat::kJson, "json"},
};

bool has_suffix(const std::string& s, const std::string& suffix) {
  return s.size() > suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

bool parse_profile_format(const std::string& name, ProfileFormat* out) {
  for (const FormatName& f : kFormatNames) {
    if (name == f.name) {
      *out = f.format;
      return true;
    }
  }
  return false;
}

const char* profile_format_name(ProfileFormat format) {
  for (const FormatName& f : kFormatNames) {
    if (f.format == format) return f.name;
  }
  return "text";
}

ProfileFormat profile_format_for_path(const std::string& path, ProfileFormat fallback) {
  std::string lower = path;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  // Longest suffixes first: ".speedscope.json" before ".json".
  if (has_suffix(lower, ".speedscope.json")) return ProfileFormat::kSpeedscope;
  if (has_suffix(lower, ".pb.gz") || has_suffix(lower, ".pb") || has_suffix(lower, ".pprof")) {
    return ProfileFormat::kPprof;
  }
  if (has_suffix(lower, ".folded") || has_suffix(lower, ".collapsed"))
    return ProfileFormat::kFolded;
  if (has_suffix(lower, ".svg")) return ProfileFormat::kSvg;
  if (has_suffix(lower, ".json")) return ProfileFormat::kJson;
  if (has_suffix(lower, ".txt")) return ProfileFormat::kText;
  return fallback;
}

bool write_profile(std::ostream& out, const model::Profile& p, ProfileFormat f, std::string* error,
                   const ProfileTextOptions& text) {
  if (!check_profile(p, error)) return false;
  switch (f) {
    case ProfileFormat::kText:
      write_profile_text(out, p, text);
      break;
    case ProfileFormat::kFolded:
      write_folded(out, p);
      break;
    case ProfileFormat::kJson:
      write_profile_json(out, p);
      break;
    case ProfileFormat::kSvg:
      write_flame_svg(out, p);
      break;
    case ProfileFormat::kSpeedscope:
      write_speedscope(out, p);
      break;
    case ProfileFormat::kPprof:
      if (!write_pprof(out, p, error)) return false;
      break;
  }
  out.flush();
  if (!out) {
    if (error != nullptr) *error = "writing the profile failed";
    return false;
  }
  return true;
}

}  // namespace asyncprobe::output
