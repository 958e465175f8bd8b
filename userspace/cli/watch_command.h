// `asyncprobe watch`: the resident daemon. Watches processes (-p, repeatable) or every coroutine
// process of the host (--all), writes stuck/unchanged/recovered/attached/detached/error events as
// lines (docs/WATCH_FORMAT.md) and serves Prometheus metrics on --listen.
#pragma once

#include <string>
#include <vector>

namespace asyncprobe::cli {

// argv[0] is "watch". Parses its own options (CLI11), runs until SIGTERM/SIGINT (or, with -p,
// until every target has exited), returns an ExitCode.
int watch_main(int argc, char** argv);

// The usage text of `asyncprobe watch`.
const char* watch_usage_text();

}  // namespace asyncprobe::cli
