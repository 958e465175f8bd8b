// `asyncprobe profile`: async-aware CPU profiles (perf_event sampling, DWARF unwinding, the
// running coroutine's async parents joined above its resume frame) and await profiles (where
// coroutines wait, from periodic snapshots). See docs/PROFILE.md.
#pragma once

namespace asyncprobe::cli {

// argv[0] is "profile". Parses its own options, writes the profile, returns an ExitCode.
int profile_main(int argc, char** argv);

// The usage text of `asyncprobe profile`.
const char* profile_usage_text();

}  // namespace asyncprobe::cli
