// The human report: summary line, warnings, coalesced async-stack trees (root first), stuck
// suspend points, threads. Plain ASCII unless asked otherwise; strings read from the target are
// escaped so a hostile name cannot drive the terminal.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "userspace/model/snapshot_model.h"
#include "userspace/snapshot/async_stacks.h"
#include "userspace/snapshot/stuck_detector.h"

namespace asyncprobe::output {

struct TextReportOptions {
  bool unicode = false;          // box-drawing connectors, "×" and "≥" instead of ASCII
  size_t max_indent_depth = 24;  // deeper tree levels stop indenting and say "[depth N]"
  size_t max_listed = 10;        // anomalies of each kind spelled out before "... and N more"
  size_t max_name_chars = 100;   // longer function names are shortened (0: print them whole)
  bool base_names = false;       // trees name files without their directories (narrow views)
};

// Writes the report for `snap` using an already built forest and stuck grouping (both must come
// from this same snapshot).
void write_text_report(std::ostream& out, const model::Snapshot& snap,
                       const snapshot::AsyncForest& forest,
                       const std::vector<snapshot::StuckGroup>& stuck,
                       const TextReportOptions& opts = {});

// The coalesced trees alone (the report's ASYNC STACKS section without its heading), a blank line
// between trees: what `asyncprobe top` shows for one suspend point.
void write_async_stacks(std::ostream& out, const model::Snapshot& snap,
                        const snapshot::AsyncForest& forest, const TextReportOptions& opts = {});

// The DIAGNOSES section alone (heading included): what `asyncprobe top` shows on its diagnoses
// page.
void write_diagnoses(std::ostream& out, const model::Snapshot& snap,
                     const TextReportOptions& opts = {});

// The coroutine running on thread `t` and t's native stack down to that coroutine's resume
// function (what the THREADS section prints under the thread's row).
void write_running_thread(std::ostream& out, const model::Snapshot& snap,
                          const model::ThreadInfo& t, const TextReportOptions& opts = {});

// Convenience: builds the forest (default options) and the stuck grouping, then writes.
void write_text_report(std::ostream& out, const model::Snapshot& snap,
                       const TextReportOptions& opts = {});

}  // namespace asyncprobe::output
