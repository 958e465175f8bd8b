// The trace report tells what the trace threw away: stalls past the model's cap, blocking calls
// past theirs, and the probes' losses appear in the text (DROPPED line, "... more not kept") and
// in the JSON, from a model fed by hand-made events (trace_events.h).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "userspace/output/trace_report.h"

namespace asyncprobe::output {
namespace {

trace::StallEvent stall(uint64_t start_ts, uint64_t end_ts) {
  trace::StallEvent e;
  e.tid = 7;
  e.ts = end_ts;
  e.start_ts = start_ts;
  e.nr = 232;  // epoll_wait
  return e;
}

trace::BlockEvent block(uint64_t enter_ts, uint64_t exit_ts) {
  trace::BlockEvent e;
  e.tid = 7;
  e.ts = exit_ts;
  e.enter_ts = enter_ts;
  e.nr = 35;  // nanosleep
  return e;
}

struct Dropped {
  trace::TraceModel model{std::vector<trace::TraceFunction>(1), options(), nullptr};
  TraceReport report;
  static trace::TraceModelOptions options() {
    trace::TraceModelOptions o;
    o.max_stalls = 1;
    o.max_blocking = 1;
    return o;
  }
  Dropped() {
    model.handle(stall(0, 20'000'000));
    model.handle(stall(30'000'000, 45'000'000));  // over the cap
    model.handle(stall(50'000'000, 70'000'000));  // over the cap
    model.handle(block(1'000'000, 12'000'000));
    model.handle(block(13'000'000, 25'000'000));  // over the cap
    model.finish(100'000'000);
    model.finalize();
    report.pid = 42;
    report.command = "server";
    report.end_ts = 100'000'000;
    report.block_threshold_ns = 10'000'000;
    report.probes.lost = 5;
    report.probes.lost_resumes = 5;
    report.probes.thread_table_full = 3;
  }
};

TEST(TraceReportDropped, TextSaysWhatWasNotKept) {
  Dropped d;
  std::ostringstream out;
  write_trace_text(out, d.report, d.model);
  const std::string text = out.str();
  EXPECT_NE(text.find("EVENT-LOOP STALLS (>= 10.0 ms): 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("  ... and 2 more not kept\n"), std::string::npos) << text;  // stalls
  EXPECT_NE(text.find("  ... and 1 more not kept\n"), std::string::npos) << text;  // blocking
  EXPECT_NE(text.find("DROPPED: 5 events lost (ring buffer full), 3 events of threads the probes "
                      "had no room for, 1 blocking calls not kept, 2 stalls not kept\n"),
            std::string::npos)
      << text;
}

TEST(TraceReportDropped, JsonCountsEveryDrop) {
  Dropped d;
  std::ostringstream out;
  write_trace_json(out, d.report, d.model);
  const nlohmann::json j = nlohmann::json::parse(out.str());
  EXPECT_EQ(j["stalls"].size(), 1u);
  EXPECT_EQ(j["stalls_dropped"].get<uint64_t>(), 2u);
  EXPECT_EQ(j["blocking_calls"].size(), 1u);
  EXPECT_EQ(j["blocking_calls_dropped"].get<uint64_t>(), 1u);
  EXPECT_EQ(j["events"]["lost"].get<uint64_t>(), 5u);
  EXPECT_EQ(j["events"]["thread_table_full"].get<uint64_t>(), 3u);
  EXPECT_EQ(j["events"]["timeline_runs_dropped"].get<uint64_t>(), 0u);
}

TEST(TraceReportDropped, NothingDroppedPrintsNoDroppedLine) {
  trace::TraceModel model(std::vector<trace::TraceFunction>(1), {}, nullptr);
  model.handle(stall(0, 20'000'000));
  model.finish(100'000'000);
  TraceReport report;
  std::ostringstream out;
  write_trace_text(out, report, model);
  EXPECT_EQ(out.str().find("DROPPED"), std::string::npos) << out.str();
  EXPECT_EQ(out.str().find("more not kept"), std::string::npos) << out.str();
}

}  // namespace
}  // namespace asyncprobe::output
