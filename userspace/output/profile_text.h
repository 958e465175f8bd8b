// The terminal summary of a profile: a header (target, duration, totals, warnings), the hottest
// functions by self and total weight, and the heaviest stacks leaf first with file:line and the
// frame kind, so the async parents of a hot coroutine are visible without opening a viewer.
// Stacks with the same frames are one entry there (22 requests waiting at the same line are one
// line of the answer, "22 coroutines"); the other formats keep them apart, labelled.
#pragma once

#include <cstddef>
#include <ostream>

#include "userspace/model/profile_model.h"

namespace asyncprobe::output {

struct ProfileTextOptions {
  size_t top_functions = 10;
  size_t top_stacks = 10;
  size_t max_frames = 40;  // per stack; the rest is summarised as "... N more frames"
  // Function names longer than this are shortened (shorten_function_name); 0 = print them whole.
  size_t max_name_chars = 100;
};

// Expects a checked profile (check_profile).
void write_profile_text(std::ostream& out, const model::Profile& p,
                        const ProfileTextOptions& opts = {});

}  // namespace asyncprobe::output
