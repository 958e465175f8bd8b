#include "userspace/output/report_csv.h"
#include "tests/unit/model_builders.h"

#include <gtest/gtest.h>

#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace asyncprobe {
namespace {

model::CoroFrame make_frame(uint64_t address, const std::string& function, int line,
                     uint64_t awaiter = 0) {
  return testing::suspended_frame(address, function, "srv.cpp", line, awaiter);
}

// A strict RFC 4180 reader, written independently of the writer: records end at CRLF (or a bare
// LF when `lf` is set) outside quotes; quoted fields may hold anything, "" is a quote. Returns
// false on malformed input (a quote inside an unquoted field, text after a closing quote, an
// unterminated quoted field).
bool parse_csv(const std::string& text, bool lf, std::vector<std::vector<std::string>>* out) {
  std::vector<std::string> record;
  std::string field;
  bool quoted = false;      // inside a quoted field
  bool was_quoted = false;  // current field was quoted (closed)
  size_t i = 0;
  auto end_field = [&] {
    record.push_back(field);
    field.clear();
    was_quoted = false;
  };
  while (i < text.size()) {
    const char c = text[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field += '"';
          i += 2;
          continue;
        }
        quoted = false;
        was_quoted = true;
      } else {
        field += c;
      }
      ++i;
      continue;
    }
    if (c == ',') {
      end_field();
      ++i;
    } else if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') {
      end_field();
      out->push_back(record);
      record.clear();
      i += 2;
    } else if (lf && c == '\n') {
      end_field();
      out->push_back(record);
      record.clear();
      ++i;
    } else if (c == '"') {
      if (!field.empty() || was_quoted) return false;
      quoted = true;
      ++i;
    } else if (c == '\r' || c == '\n' || was_quoted) {
      return false;
    } else {
      field += c;
      ++i;
    }
  }
  // Every record, the last included, must have been terminated.
  return !quoted && field.empty() && record.empty();
}

using testing::random_snapshot;

std::string render(const model::Snapshot& s, const output::CsvReportOptions& opts = {}) {
  std::ostringstream out;
  output::write_csv_report(out, s, opts);
  return out.str();
}

TEST(ReportCsv, ExactSmallTable) {
  model::Snapshot s;
  s.frames.push_back(make_frame(0x1000, "serve(std::map<int, int>)", 40));
  model::CoroFrame leaf = make_frame(0x2000, "read", 22, 0x1000);
  leaf.stuck = true;
  leaf.stuck_for_s = 1.5;
  leaf.stuck_evidence = model::StuckEvidence::kResumeProbe;
  s.frames.push_back(leaf);
  model::CoroFrame lost = make_frame(0x3000, "lost", 0, 0xdead);
  lost.awaiter_rule = "mutual-pointer";
  lost.suspend.index = -1;
  lost.suspend.kind = model::SuspendPoint::Kind::kUnknown;
  lost.state = model::FrameState::kUnknown;
  lost.suspend.file.clear();
  s.frames.push_back(lost);
  const std::string expected =
      "id,address,function,file,line,suspend_kind,suspend_index,state,awaiter_id,awaiter_rule,"
      "depth,root_id,stuck,stuck_for_s,object,unchanged,stuck_evidence\r\n"
      "0,0x1000,\"serve(std::map<int, int>)\",srv.cpp,40,await,4,suspended,,,0,0,false,0,"
      "/usr/bin/demo,false,not-checked\r\n"
      "1,0x2000,read,srv.cpp,22,await,4,suspended,0,continuation-in-promise,1,0,true,1.5,"
      "/usr/bin/demo,false,resume-probe\r\n"
      "2,0x3000,lost,,0,unknown,-1,unknown,,mutual-pointer,0,2,false,0,/usr/bin/demo,false,"
      "not-checked\r\n";
  EXPECT_EQ(render(s), expected);
}

TEST(ReportCsv, HeaderAndLineEndOptions) {
  model::Snapshot s;
  s.frames.push_back(make_frame(0x1000, "a", 1));
  output::CsvReportOptions opts;
  opts.crlf = false;
  EXPECT_EQ(render(s, opts), std::string(output::kCsvHeader) +
                                 "\n0,0x1000,a,srv.cpp,1,await,4,suspended,,,0,0,false,0,"
                                 "/usr/bin/demo\n");
  opts.header = false;
  EXPECT_EQ(render(s, opts),
            "0,0x1000,a,srv.cpp,1,await,4,suspended,,,0,0,false,0,/usr/bin/demo\n");
  EXPECT_EQ(render(model::Snapshot{}), std::string(output::kCsvHeader) + "\r\n");
}

TEST(ReportCsv, FieldQuoting) {
  EXPECT_EQ(output::csv_field("plain"), "plain");
  EXPECT_EQ(output::csv_field(""), "");
  EXPECT_EQ(output::csv_field("a,b"), "\"a,b\"");
  EXPECT_EQ(output::csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(output::csv_field("two\nlines"), "\"two\nlines\"");
  EXPECT_EQ(output::csv_field("cr\r"), "\"cr\r\"");
  EXPECT_EQ(output::csv_field(" spaced "), " spaced ");
}

TEST(ReportCsv, RoundTripThroughAnIndependentReader) {
  const std::vector<std::string> nasty = {
      "std::pair<int, int> f(std::map<std::string, int>, char)",
      "quote\"inside",
      "\"starts and ends with quotes\"",
      "line\nbreak",
      "crlf\r\ninside",
      "lone\rcr",
      ",",
      "\"",
      "",
      "trailing,",
      "tab\there",
      "caf\xc3\xa9 \xff raw bytes",
  };
  for (bool crlf : {true, false}) {
    model::Snapshot s;
    for (size_t i = 0; i < nasty.size(); ++i) {
      model::CoroFrame f = make_frame(0x1000 + i * 0x10, nasty[i], static_cast<int>(i), i ? 0x1000 : 0);
      f.suspend.file = nasty[nasty.size() - 1 - i];
      f.object = nasty[(i + 3) % nasty.size()];
      f.awaiter_rule = i ? nasty[(i + 5) % nasty.size()] : "";
      s.frames.push_back(f);
    }
    output::CsvReportOptions opts;
    opts.crlf = crlf;
    const std::string text = render(s, opts);
    std::vector<std::vector<std::string>> rows;
    // An LF-ended file can only be read by splitting on LF; fields with CR or LF inside are still
    // quoted, so that is unambiguous.
    ASSERT_TRUE(parse_csv(text, !crlf, &rows)) << text;
    ASSERT_EQ(rows.size(), nasty.size() + 1);
    ASSERT_EQ(rows[0].size(), 15u);
    EXPECT_EQ(rows[0][0], "id");
    EXPECT_EQ(rows[0][14], "object");
    for (size_t i = 0; i < nasty.size(); ++i) {
      const std::vector<std::string>& r = rows[i + 1];
      ASSERT_EQ(r.size(), 15u) << i;
      EXPECT_EQ(r[0], std::to_string(i));
      EXPECT_EQ(r[2], nasty[i]);
      EXPECT_EQ(r[3], nasty[nasty.size() - 1 - i]);
      EXPECT_EQ(r[4], std::to_string(i));
      EXPECT_EQ(r[8], i ? "0" : "");
      EXPECT_EQ(r[9], i ? nasty[(i + 5) % nasty.size()] : "");
      EXPECT_EQ(r[10], i ? "1" : "0");
      EXPECT_EQ(r[11], "0");
      EXPECT_EQ(r[14], nasty[(i + 3) % nasty.size()]);
    }
  }
}

TEST(ReportCsv, ReaderRejectsMalformedInput) {
  std::vector<std::vector<std::string>> rows;
  EXPECT_FALSE(parse_csv("a\"b\r\n", false, &rows));
  EXPECT_FALSE(parse_csv("\"a\"b\r\n", false, &rows));
  EXPECT_FALSE(parse_csv("\"open\r\n", false, &rows));
  EXPECT_FALSE(parse_csv("no end", false, &rows));
}

TEST(ReportCsv, RandomBrokenSnapshotsParseBack) {
  std::mt19937_64 rng(11);
  for (int round = 0; round < 300; ++round) {
    const model::Snapshot s = random_snapshot(rng);
    std::vector<std::vector<std::string>> rows;
    ASSERT_TRUE(parse_csv(render(s), false, &rows));
    ASSERT_EQ(rows.size(), s.frames.size() + 1);
    for (size_t i = 0; i < s.frames.size(); ++i) {
      ASSERT_EQ(rows[i + 1].size(), 15u);
      EXPECT_EQ(rows[i + 1][2], s.frames[i].function);
      EXPECT_EQ(rows[i + 1][3], s.frames[i].suspend.file);
    }
  }
}

TEST(ReportCsv, DepthAndRootThroughDeepChain) {
  model::Snapshot s;
  for (uint64_t i = 0; i < 5000; ++i) {
    s.frames.push_back(make_frame(0x100000 + i * 0x40, "r", 1, i ? 0x100000 + (i - 1) * 0x40 : 0));
  }
  std::vector<std::vector<std::string>> rows;
  ASSERT_TRUE(parse_csv(render(s), false, &rows));
  ASSERT_EQ(rows.size(), 5001u);
  EXPECT_EQ(rows[5000][10], "4999");  // depth counts through the cut at 4096
  EXPECT_EQ(rows[5000][11], "0");
}

}  // namespace
}  // namespace asyncprobe
