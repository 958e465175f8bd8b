// The profile model as one JSON document, schema "asyncprobe.profile/1", documented field by
// field in docs/PROFILE_FORMATS.md. Fields are only ever added within a schema version.
#pragma once

#include <ostream>

#include <nlohmann/json_fwd.hpp>

#include "userspace/model/profile_model.h"

namespace asyncprobe::output {

inline constexpr const char* kProfileSchema = "asyncprobe.profile/1";

// The document as a value, keys in schema order. Expects a checked profile (check_profile).
nlohmann::ordered_json profile_to_json(const model::Profile& p);

// Writes the document (indent 2) and a newline. Invalid UTF-8 is replaced (U+FFFD).
void write_profile_json(std::ostream& out, const model::Profile& p);

}  // namespace asyncprobe::output
