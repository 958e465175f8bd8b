// The machine report: one JSON document, schema "asyncprobe.snapshot/1", documented field by
// field in docs/SNAPSHOT_FORMAT.md. Fields are only ever added within a schema version.
#pragma once

#include <cstddef>
#include <ostream>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "userspace/model/snapshot_model.h"
#include "userspace/snapshot/async_stacks.h"
#include "userspace/snapshot/stuck_detector.h"

namespace asyncprobe::output {

inline constexpr const char* kSnapshotSchema = "asyncprobe.snapshot/1";

struct JsonReportOptions {
  int indent = 2;  // negative: one line
  // Stack nodes nest at most this deep inside one "stacks" entry; deeper subtrees become entries
  // of their own that name the node they continue, so parsers with recursion limits (Python's
  // json, 1000 levels) read any depth.
  size_t max_nesting = 64;
};

// The whole document as a value, keys in schema order (forest and stuck grouping must come from
// `snap`).
nlohmann::ordered_json snapshot_to_json(const model::Snapshot& snap,
                                        const snapshot::AsyncForest& forest,
                                        const std::vector<snapshot::StuckGroup>& stuck,
                                        const JsonReportOptions& opts = {});

// Writes the document followed by a newline. Invalid UTF-8 from the target is replaced (U+FFFD),
// never thrown on.
void write_json_report(std::ostream& out, const model::Snapshot& snap,
                       const snapshot::AsyncForest& forest,
                       const std::vector<snapshot::StuckGroup>& stuck,
                       const JsonReportOptions& opts = {});

// Convenience: builds the forest (default options) and the stuck grouping, then writes.
void write_json_report(std::ostream& out, const model::Snapshot& snap,
                       const JsonReportOptions& opts = {});

}  // namespace asyncprobe::output
