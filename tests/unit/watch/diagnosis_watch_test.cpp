// DiagnosisWatch over hand-built looks: which diagnoses become events when (failed at once,
// the others at their second look), no repeats while they stay, failed groups counted per window
// and reported again at most once per window, and the gauges. Expected counts come from the
// rules in userspace/watch/diagnosis_watch.h.
#include "userspace/watch/diagnosis_watch.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace asyncprobe::watch {
namespace {

model::CoroFrame frame(uint64_t address, const std::string& fn, int line, uint64_t awaiter = 0) {
  model::CoroFrame f;
  f.address = address;
  f.resume_fn = 0x1000;
  f.destroy_fn = 0x2000;
  f.function = fn;
  f.suspend.file = "svc.cpp";
  f.suspend.line = line;
  f.awaiter = awaiter;
  return f;
}

// A look with `failed` frames of one group (runtime_error "refused" in pay()) and a two-member
// await cycle.
model::Snapshot look(size_t failed) {
  model::Snapshot s;
  s.frames.push_back(frame(0x100, "a()", 10, 0x200));
  s.frames.push_back(frame(0x200, "b()", 20, 0x100));
  model::Diagnosis cycle;
  cycle.kind = model::Diagnosis::Kind::kAwaitCycle;
  cycle.frame_ids = {0, 1};
  cycle.summary = "2 coroutines await each other";
  s.diagnoses.push_back(cycle);
  model::Diagnosis f;
  f.kind = model::Diagnosis::Kind::kFailed;
  f.exception = model::HeldException{0, "std::runtime_error", "refused", true, false, ""};
  for (size_t i = 0; i < failed; ++i) {
    s.frames.push_back(frame(0x1000 + 0x100 * i, "pay()", 30));
    s.frames.back().exception = f.exception;
    f.frame_ids.push_back(s.frames.size() - 1);
  }
  if (failed > 0) s.diagnoses.push_back(f);
  return s;
}

std::vector<std::string> kinds(const std::vector<Event>& events) {
  std::vector<std::string> out;
  for (const Event& e : events) out.push_back(to_string(e.kind));
  return out;
}

TEST(DiagnosisWatch, FailedAtOnceOthersAtTheirSecondLookAndNoRepeats) {
  DiagnosisWatch w(300);
  std::vector<Event> events;
  w.update(look(3), 0, &events);
  ASSERT_EQ(kinds(events), (std::vector<std::string>{"failed"}));
  EXPECT_EQ(events[0].count, 3u);
  EXPECT_EQ(events[0].in_window, 3u);
  EXPECT_EQ(events[0].exception.what, "refused");
  ASSERT_EQ(events[0].failed_in.size(), 1u);
  EXPECT_EQ(events[0].failed_in[0], (std::pair<std::string, size_t>{"pay()", 3}));
  EXPECT_EQ(w.gauges().await_cycles, 0u);  // one look: not yet
  EXPECT_EQ(w.gauges().failed_by_type.at("std::runtime_error"), 3u);

  events.clear();
  w.update(look(3), 5, &events);
  ASSERT_EQ(kinds(events), (std::vector<std::string>{"await_cycle"}));
  EXPECT_EQ(events[0].count, 2u);
  ASSERT_EQ(events[0].stack.size(), 2u);
  EXPECT_EQ(events[0].stack[1].function, "b()");
  EXPECT_EQ(events[0].stack[1].line, 20);
  EXPECT_EQ(w.gauges().await_cycles, 1u);

  events.clear();
  w.update(look(3), 10, &events);
  EXPECT_TRUE(events.empty());
  // Gone: gauges drop, and a return is a new episode (two looks again).
  w.update(model::Snapshot{}, 15, &events);
  EXPECT_TRUE(events.empty());
  EXPECT_EQ(w.gauges().await_cycles, 0u);
  EXPECT_TRUE(w.gauges().failed_by_type.empty());
  w.update(look(0), 20, &events);
  EXPECT_TRUE(events.empty());
}

TEST(DiagnosisWatch, NewFailuresAreReportedAtMostOncePerWindow) {
  DiagnosisWatch w(60);
  std::vector<Event> events;
  w.update(look(2), 0, &events);
  ASSERT_EQ(events.size(), 1u);
  events.clear();
  // Two more failures 10 s later: within the window of the last report, no failed event yet
  // (the await cycle is at its second look).
  w.update(look(4), 10, &events);
  EXPECT_EQ(kinds(events), (std::vector<std::string>{"await_cycle"}));
  events.clear();
  EXPECT_EQ(w.gauges().failed_by_type.at("std::runtime_error"), 4u);
  // A window after the first report: one update; the first two are older than the window.
  w.update(look(4), 61, &events);
  ASSERT_EQ(kinds(events), (std::vector<std::string>{"failed"}));
  EXPECT_EQ(events[0].count, 4u);
  EXPECT_EQ(events[0].previous_count, 2u);
  EXPECT_EQ(events[0].in_window, 2u);
  EXPECT_EQ(events[0].window_s, 60);
  // Nothing new since: no more events.
  events.clear();
  w.update(look(4), 200, &events);
  EXPECT_TRUE(events.empty());
}

TEST(DiagnosisWatch, FailedEventJsonHasTypeMessageWindowAndFunctions) {
  DiagnosisWatch w(300);
  std::vector<Event> events;
  w.update(look(1), 0, &events);
  ASSERT_EQ(events.size(), 1u);
  events[0].pid = 7;
  const nlohmann::json j = nlohmann::json::parse(format_json(events[0]));
  EXPECT_EQ(j["event"], "failed");
  EXPECT_EQ(j["exception"], nlohmann::json({{"type", "std::runtime_error"}, {"what", "refused"}}));
  EXPECT_EQ(j["count"], 1);
  EXPECT_EQ(j["update"], false);
  EXPECT_EQ(j["in_window"], 1);
  EXPECT_EQ(j["window_s"], 300);
  const nlohmann::json functions = {{{"function", "pay()"}, {"count", 1}}};
  EXPECT_EQ(j["functions"], functions);
}

}  // namespace
}  // namespace asyncprobe::watch
