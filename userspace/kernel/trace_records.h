// The records of bpf/trace.bpf.c's ring buffer, checked and translated into trace::TraceEvent:
// the one reader of bpf/trace.h's event layouts. A record too short for its kind, of an unknown
// kind, or whose stack length exceeds what it holds is refused (the session counts it in
// ProbeStats::malformed_records): the ring buffer describes a process we do not trust.
#pragma once

#include <cstddef>
#include <optional>

#include "userspace/trace/trace_events.h"

namespace asyncprobe::kernel {

std::optional<trace::TraceEvent> decode_trace_record(const void* data, size_t size);

}  // namespace asyncprobe::kernel
