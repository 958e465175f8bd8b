// pprof export: the profile as a gzipped protobuf `Profile` message (our pprof_profile.proto,
// pprof's field numbers), readable by `go tool pprof`, Pyroscope and Parca.
//  - sample types: CPU [samples/count, cpu/nanoseconds], await [suspensions/count,
//    wall/nanoseconds]; the period type is the second one.
//  - Locations hold inlined Lines (innermost first), Functions name file and line, Mappings one
//    per object with the range of sampled addresses.
//  - Coroutine frames keep their kind in the function name: "f [coroutine]", "f [async]",
//    "f [async?]" (join uncertain); system_name is the plain name. Async parents are not code
//    on the stack, so their Locations have no mapping and address 0.
//  - Labels: "tid" (number), "thread" (name), "coroutine" ("function @ 0xframe"),
//    "async_stack" = "uncertain" when the join is a best guess.
#pragma once

#include <ostream>
#include <string>

#include "pprof/pprof_profile.pb.h"
#include "userspace/model/profile_model.h"

namespace asyncprobe::output {

// Expects a checked profile (check_profile).
pprof::Profile profile_to_pprof(const model::Profile& p);

// gzip (RFC 1952) of the serialized message. False with *error when zlib or protobuf fail.
bool write_pprof(std::ostream& out, const model::Profile& p, std::string* error);

// The reverse, for tests and tools: gunzip and parse. False with a one-line *error.
bool read_pprof(const std::string& gzipped, pprof::Profile* out, std::string* error);

}  // namespace asyncprobe::output
