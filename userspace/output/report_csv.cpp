#include "userspace/output/report_csv.h"
#include "userspace/util/format.h"

#include <charconv>
#include <cinttypes>
#include <cmath>
#include <cstdio>

namespace asyncprobe::output {

namespace {

// Shortest text that reads back as the same double, independent of the locale.
std::string number(double v) {
  if (!std::isfinite(v)) return "";
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, res.ptr);
}

std::string id(size_t i) { return i == snapshot::kNoFrame ? std::string() : std::to_string(i); }

}  // namespace

std::string csv_field(std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(s);
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

void write_csv_report(std::ostream& out, const model::Snapshot& snap, const snapshot::AsyncForest& forest,
                      const CsvReportOptions& opts) {
  const char* eol = opts.crlf ? "\r\n" : "\n";
  if (opts.header) out << kCsvHeader << eol;
  for (size_t i = 0; i < snap.frames.size(); ++i) {
    const model::CoroFrame& f = snap.frames[i];
    const snapshot::FrameLink* l = i < forest.links.size() ? &forest.links[i] : nullptr;
    std::string row;
    row += std::to_string(i);
    row += ',' + util::hex(f.address);
    row += ',' + csv_field(f.function);
    row += ',' + csv_field(f.suspend.file);
    row += ',' + std::to_string(f.suspend.line);
    row += ',';
    row += to_string(f.suspend.kind);
    row += ',' + std::to_string(f.suspend.index);
    row += ',';
    row += to_string(f.state);
    row += ',' + (l ? id(l->awaiter) : std::string());
    row += ',' + (f.awaiter != 0 ? csv_field(f.awaiter_rule) : std::string());
    row += ',' + (l ? std::to_string(l->depth) : std::string());
    row += ',' + (l ? id(l->root) : std::string());
    row += f.stuck ? ",true" : ",false";
    row += ',' + number(f.stuck_for_s);
    row += ',' + csv_field(f.object);
    row += f.unchanged ? ",true," : ",false,";
    row += to_string(f.stuck_evidence);
    out << row << eol;
  }
}

void write_csv_report(std::ostream& out, const model::Snapshot& snap, const CsvReportOptions& opts) {
  write_csv_report(out, snap, snapshot::build_async_forest(snap), opts);
}

}  // namespace asyncprobe::output
