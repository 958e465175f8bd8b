// Folded stacks ("collapsed" format of flamegraph.pl, inferno and speedscope's importer): one
// line per distinct stack, frames root first separated by ';', then a space and the weight
// (samples for CPU, suspended nanoseconds for await). Frame kinds travel as name suffixes in the
// `_[x]` style those tools already use: _[k] kernel, _[i] inlined, _[coro] running coroutine
// body, _[async] awaiting parent joined from the async stack, _[async?] the same in a stack
// whose join is a best guess. docs/PROFILE_FORMATS.md has the details.
#pragma once

#include <istream>
#include <ostream>
#include <string>

#include "userspace/model/profile_model.h"

namespace asyncprobe::output {

// The folded name of a frame: function (never empty, no ';' or line breaks) plus its suffix.
std::string folded_frame_name(const model::ProfileFrame& f, bool async_uncertain);

// Lines sorted by stack; identical stacks (e.g. from different threads) are merged; stacks of
// weight 0 are left out. Expects a checked profile (check_profile).
void write_folded(std::ostream& out, const model::Profile& p);

// Reads folded stacks back into a profile of type `type`: frames interned by name and suffix
// (the suffix gives kind/inlined; the address, file and line are not in the format), weights
// into count (CPU) or value_ns (await), async_uncertain from _[async?]. Blank lines are
// skipped. False with a one-line *error naming the line on malformed input.
bool read_folded(std::istream& in, model::Profile::Type type, model::Profile* out,
                 std::string* error);

}  // namespace asyncprobe::output
