// Decoding of the preload library's binary records (userspace/preload/protocol.h): the payloads of
// the run socket's replies and the exit reports the library hands to asyncprobe-preload-helper.
// One decoder per payload, shared by the socket client (preload_client) and the helper, so a
// report reads the same whichever way its records came. Every decoder checks sizes and string
// offsets and returns false on a malformed record instead of reading past it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "userspace/model/preload_reports.h"
#include "userspace/preload/protocol.h"

namespace asyncprobe::process {

// One resume function of the target (a kTraceFunctions record).
struct PreloadFunction {
  uint32_t id = 0;
  std::string name;  // "" until the target's tables are ready
  std::string object;
  std::string file;
  int line = 0;
  uint64_t resume = 0;
  bool traced = false;
};

// The kBlockingPoll reply.
struct PreloadBlockingBatch {
  uint64_t next = 0;
  uint64_t threshold_ns = 0;
  uint64_t dropped = 0;
  std::vector<model::PreloadBlockingCall> calls;
};

bool decode_trace_functions(std::string_view body, std::vector<PreloadFunction>* out);
bool decode_blocking_poll(std::string_view body, PreloadBlockingBatch* out);

// A trace report row: the function `count.function` of `functions` with its counts; named by its
// resume address (util::hex) while the target's tables had no name for it.
model::PreloadTraceFunction trace_report_function(const std::vector<PreloadFunction>& functions,
                                                  const preload_proto::CountRecord& count);

// An exit report stream (protocol.h, ExitReportHeader); `kind` says which of the two is filled.
struct PreloadExitReport {
  uint16_t kind = 0;  // preload_proto::ExitKind
  model::PreloadTraceReport trace;
  model::PreloadBlockingReport blocking;
};
// False with a one-line reason in `why` when the stream is malformed.
bool decode_exit_report(std::string_view stream, PreloadExitReport* out, std::string* why);

}  // namespace asyncprobe::process
