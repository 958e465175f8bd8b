// The in-process engine's reports (resume counts, blocking calls): exact text and JSON.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "userspace/output/preload_report.h"
#include "userspace/util/format.h"

namespace asyncprobe {
namespace {

model::PreloadTraceReport sample_trace() {
  model::PreloadTraceReport r;
  r.pid = 42;
  r.command = "svc\x1b[31m";
  r.mode = "live session";
  r.duration_s = 1.5;
  r.total_resumes = 1506;
  r.events = 1506;
  r.lost_events = 0;
  r.functions = {
      {"outer()", "/bin/svc", "/src/svc.cpp", 90, 0x1000, 6, 0, 1, true},
      {"ticker(int)", "/bin/svc", "/src/svc.cpp", 77, 0x2000, 1500, 3, 3, true},
  };
  r.threads = {{43, 6}, {42, 1500}};
  model::sort_trace_report(&r);
  return r;
}

TEST(PreloadReport, TraceTextSortsByResumesAndEscapesTargetStrings) {
  std::ostringstream s;
  output::write_trace_report_text(s, sample_trace());
  EXPECT_EQ(s.str(),
            "asyncprobe trace (in-process, live session): pid 42 (svc?[31m), 1.50 s, 1506 resumes, "
            "1506 events, 0 lost\n"
            "\n"
            "   resumes  coroutine\n"
            "      1500  ticker(int)  (/src/svc.cpp:77)  [3 started]  [3 frames]\n"
            "         6  outer()  (/src/svc.cpp:90)  [1 frames]\n"
            "\n"
            "   resumes  thread\n"
            "      1500  42\n"
            "         6  43\n");
}

TEST(PreloadReport, TraceTextWarnsAboutUntracedFunctionsAndEmptyRuns) {
  model::PreloadTraceReport r;
  r.pid = 7;
  r.command = "x";
  r.mode = "from start to exit";
  r.untraced = 2;
  std::ostringstream s;
  output::write_trace_report_text(s, r);
  EXPECT_EQ(
      s.str(),
      "asyncprobe trace (in-process, from start to exit): pid 7 (x), 0 ns, 0 resumes\n"
      "warning: 2 resume functions could not be patched safely; their resumes are not counted\n"
      "\n"
      "   resumes  coroutine\n"
      "         0  (no coroutine was resumed)\n");
}

TEST(PreloadReport, TraceJson) {
  std::ostringstream s;
  output::write_trace_report_json(s, sample_trace());
  nlohmann::json j = nlohmann::json::parse(s.str());
  EXPECT_EQ(j["schema"], "asyncprobe.preload-trace/1");
  EXPECT_EQ(j["pid"], 42);
  EXPECT_EQ(j["command"], "svc?[31m");
  EXPECT_EQ(j["total_resumes"], 1506);
  ASSERT_EQ(j["functions"].size(), 2u);
  EXPECT_EQ(j["functions"][0], nlohmann::json({{"function", "ticker(int)"},
                                               {"object", "/bin/svc"},
                                               {"file", "/src/svc.cpp"},
                                               {"line", 77},
                                               {"resume", "0x2000"},
                                               {"resumes", 1500},
                                               {"starts", 3},
                                               {"frames", 3}}));
  EXPECT_EQ(j["threads"],
            nlohmann::json::parse(R"([{"tid":42,"resumes":1500},{"tid":43,"resumes":6}])"));
}

model::PreloadBlockingReport sample_blocking() {
  model::PreloadBlockingReport r;
  r.pid = 9;
  r.command = "srv";
  r.threshold_ns = 10'000'000;
  std::vector<model::PreloadBlockingFrame> stack = {{"leaf()", "/s.cpp", 10, 0x10},
                                                    {"root()", "/s.cpp", 20, 0x20}};
  r.calls = {{"usleep", 9, 60'100'000, "leaf() [coroutine] at /s.cpp:10 (srv+0x1)", stack},
             {"read", 9, 15'000'000, "leaf() [coroutine] at /s.cpp:12 (srv+0x2)", stack},
             {"usleep", 9, 59'900'000, "leaf() [coroutine] at /s.cpp:10 (srv+0x1)", stack}};
  return r;
}

TEST(PreloadReport, BlockingTextGroupsIdenticalCalls) {
  std::ostringstream s;
  output::write_blocking_report_text(s, sample_blocking());
  EXPECT_EQ(
      s.str(),
      "asyncprobe: blocking calls inside coroutines in pid 9 (srv), threshold 10.0 ms: 3 recorded\n"
      "  usleep x2, total 120 ms, max 60.1 ms, thread 9\n"
      "    called from leaf() [coroutine] at /s.cpp:10 (srv+0x1)\n"
      "    #0 leaf() running at /s.cpp:10\n"
      "    #1 root() awaiting at /s.cpp:20\n"
      "  read x1, total 15.0 ms, max 15.0 ms, thread 9\n"
      "    called from leaf() [coroutine] at /s.cpp:12 (srv+0x2)\n"
      "    #0 leaf() running at /s.cpp:10\n"
      "    #1 root() awaiting at /s.cpp:20\n");
}

TEST(PreloadReport, BlockingJsonKeepsEveryCallInOrder) {
  std::ostringstream s;
  output::write_blocking_report_json(s, sample_blocking());
  nlohmann::json j = nlohmann::json::parse(s.str());
  EXPECT_EQ(j["schema"], "asyncprobe.preload-blocking/1");
  ASSERT_EQ(j["calls"].size(), 3u);
  EXPECT_EQ(j["calls"][1]["call"], "read");
  EXPECT_EQ(j["calls"][1]["duration_ns"], 15'000'000);
  EXPECT_EQ(j["calls"][0]["stack"][1],
            nlohmann::json(
                {{"function", "root()"}, {"file", "/s.cpp"}, {"line", 20}, {"frame", "0x20"}}));
}

TEST(PreloadReport, Durations) {}

}  // namespace
}  // namespace asyncprobe
