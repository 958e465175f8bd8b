// The exit reports of `asyncprobe run --trace-out/--blocking-out`. The library does not render
// them: it sends its records in the socket protocol's binary form (protocol.h, ExitReportHeader)
// to asyncprobe-preload-helper, which renders them with the same writers as asyncprobe. JSON and
// the report code stay out of the target.
#pragma once

#include <cstdint>

namespace asyncprobe::preload {

// Writes the report of `kind` (preload_proto::ExitKind) to `path` ("": the program's stderr)
// through the helper and waits for it to finish. `start_ns`: when the library started. Normal
// context (the atexit handler). False, with a one-line warning on stderr, when it could not.
bool write_exit_report(uint16_t kind, const char* path, uint64_t start_ns);

}  // namespace asyncprobe::preload
