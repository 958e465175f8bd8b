// The table report: one CSV row per coroutine (RFC 4180: header row, fields with commas, quotes or
// line breaks quoted, quotes doubled; CRLF line ends unless asked otherwise). Columns are listed
// in docs/SNAPSHOT_FORMAT.md and only ever appended to.
#pragma once

#include <ostream>
#include <string>
#include <string_view>

#include "userspace/model/snapshot_model.h"
#include "userspace/snapshot/async_stacks.h"

namespace asyncprobe::output {

inline constexpr const char* kCsvHeader =
    "id,address,function,file,line,suspend_kind,suspend_index,state,awaiter_id,awaiter_rule,"
    "depth,root_id,stuck,stuck_for_s,object,unchanged,stuck_evidence";

struct CsvReportOptions {
  bool crlf = true;    // RFC 4180 line ends; false writes "\n" for line-oriented shell tools
  bool header = true;  // write the header row first
};

// One field, quoted only when RFC 4180 requires it (comma, quote, CR or LF).
std::string csv_field(std::string_view s);

// Writes the table (forest must come from `snap`).
void write_csv_report(std::ostream& out, const model::Snapshot& snap,
                      const snapshot::AsyncForest& forest, const CsvReportOptions& opts = {});

// Convenience: builds the forest with default options, then writes.
void write_csv_report(std::ostream& out, const model::Snapshot& snap,
                      const CsvReportOptions& opts = {});

}  // namespace asyncprobe::output
