// Profile export: chooses a format (by name or by output path) and writes a Profile in it. One
// file per format (profile_text, profile_folded, profile_svg, profile_speedscope, profile_pprof,
// profile_json); docs/PROFILE_FORMATS.md describes each.
#pragma once

#include <ostream>
#include <string>

#include "userspace/model/profile_model.h"
#include "userspace/output/profile_text.h"

namespace asyncprobe::output {

enum class ProfileFormat { kText, kFolded, kSvg, kSpeedscope, kPprof, kJson };

// "text", "folded", "svg", "speedscope", "pprof", "json". False (and *out untouched) otherwise.
bool parse_profile_format(const std::string& name, ProfileFormat* out);

// The format an output file name asks for (case-insensitive): .folded/.collapsed -> folded,
// .txt -> text, .svg -> svg, .speedscope.json -> speedscope, .pb.gz/.pb/.pprof -> pprof, any
// other .json -> json; anything else (or "-") -> fallback.
ProfileFormat profile_format_for_path(const std::string& path, ProfileFormat fallback);

// The canonical name of a format ("folded", ...), for messages.
const char* profile_format_name(ProfileFormat f);

// Writes `p` in format `f` (`text` options apply to the text format only). False with a one-line
// *error when the profile cannot be written (an out-of-range frame index, a stream failure);
// never throws.
bool write_profile(std::ostream& out, const model::Profile& p, ProfileFormat f, std::string* error,
                   const ProfileTextOptions& text = {});

}  // namespace asyncprobe::output
