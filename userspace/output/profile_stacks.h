// Helpers every profile format shares: checking a Profile before writing it, the weight a
// format draws (samples for CPU, suspended nanoseconds for await), and frame annotations.
#pragma once

#include <cstdint>
#include <string>

#include "userspace/model/profile_model.h"

namespace asyncprobe::output {

// False with a one-line *error when a sample names a frame index outside Profile::frames, so no
// writer ever indexes out of range.
bool check_profile(const model::Profile& p, std::string* error);

// The weight flame graphs draw: the sample count of a CPU profile, the suspended wall time (ns)
// of an await profile.
int64_t profile_weight(const model::Profile& p, const model::ProfileSample& s);

// "samples" or "ns", the unit of profile_weight().
const char* profile_weight_unit(const model::Profile& p);

// A weight as a reader takes it: "12 samples" (CPU) or "3.25 ms" (await).
std::string profile_weight_text(const model::Profile& p, int64_t w);

// "cpu" or "await".
const char* profile_type_name(model::Profile::Type t);

// "native", "coroutine", "async", "kernel".
const char* frame_kind_name(model::ProfileFrame::Kind k);

// "file:line", "file" when the line is unknown, "" when the file is unknown.
std::string frame_location(const model::ProfileFrame& f);

}  // namespace asyncprobe::output
