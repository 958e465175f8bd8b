// `asyncprobe top -p PID`: the live terminal view of a process's coroutines (userspace/top/).
#pragma once

namespace asyncprobe::cli {

// argv[0] is "top". Returns the exit code.
int top_main(int argc, char** argv);

}  // namespace asyncprobe::cli
