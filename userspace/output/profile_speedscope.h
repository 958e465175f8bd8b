// speedscope's JSON file format (https://www.speedscope.app/file-format-schema.json, draft-07):
// one "sampled" profile per thread (samples merged across threads form one "all threads"
// profile), stacks root first as speedscope expects, frames with name/file/line. speedscope has
// no frame kinds, so coroutine frames carry the kind in their name: "f [coroutine]",
// "f [async]", "f [async?]" (join uncertain), "f [kernel]", "f [inlined]".
#pragma once

#include <ostream>

#include <nlohmann/json_fwd.hpp>

#include "userspace/model/profile_model.h"

namespace asyncprobe::output {

// Expects a checked profile (check_profile).
nlohmann::ordered_json profile_to_speedscope(const model::Profile& p);

void write_speedscope(std::ostream& out, const model::Profile& p);

}  // namespace asyncprobe::output
