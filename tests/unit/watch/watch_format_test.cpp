// The watcher's pure parts: container ids from /proc/PID/cgroup texts, the Prometheus exposition
// text, RFC 3339 times, event lines and --listen parsing. Expected texts are written from the
// formats' rules (exposition format 0.0.4, RFC 3339), not from the code's output.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "userspace/watch/discovery.h"
#include "userspace/watch/event.h"
#include "userspace/watch/metrics.h"
#include "userspace/watch/metrics_server.h"

namespace asyncprobe::watch {
namespace {

const std::string kId = "3f1e2d4c5b6a79880f1e2d3c4b5a69788f9e0d1c2b3a49586f7e8d9c0b1a2938";

TEST(ContainerId, FromDockerCgroupV1AndV2AndCriScopes) {
  EXPECT_EQ(container_id_from_cgroup("12:memory:/docker/" + kId + "\n"), kId);
  EXPECT_EQ(container_id_from_cgroup("0::/system.slice/docker-" + kId + ".scope\n"), kId);
  EXPECT_EQ(container_id_from_cgroup("0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-" +
                                     kId + ".scope\n"),
            kId);
  EXPECT_EQ(container_id_from_cgroup("0::/crio-" + kId + ".scope"), kId);
}

TEST(ContainerId, NoneOnTheHostOrForOtherHexRuns) {
  EXPECT_EQ(container_id_from_cgroup("0::/user.slice/user-1000.slice/session-2.scope\n"), "");
  EXPECT_EQ(container_id_from_cgroup("0::/init.scope\n"), "");
  // 63 and 65 hex digits are not container ids.
  EXPECT_EQ(container_id_from_cgroup("0::/docker/" + kId.substr(1) + "\n"), "");
  EXPECT_EQ(container_id_from_cgroup("0::/docker/" + kId + "a\n"), "");
}

TEST(Exposition, HelpTypeSamplesAndEscapedLabels) {
  std::vector<Family> f;
  f.push_back({"asyncprobe_stuck_coroutines",
               "Stuck \\ by point.\nSecond line.",
               "gauge",
               {{"", {{"function", "f(\"x\")"}, {"file", "a\\b.cpp"}, {"line", "7"}}, 3}}});
  f.push_back({"asyncprobe_scans_total", "Scans.", "counter", {{"", {}, 12}}});
  EXPECT_EQ(
      render_exposition(f),
      "# HELP asyncprobe_stuck_coroutines Stuck \\\\ by point.\\nSecond line.\n"
      "# TYPE asyncprobe_stuck_coroutines gauge\n"
      "asyncprobe_stuck_coroutines{function=\"f(\\\"x\\\")\",file=\"a\\\\b.cpp\",line=\"7\"} 3\n"
      "# HELP asyncprobe_scans_total Scans.\n"
      "# TYPE asyncprobe_scans_total counter\n"
      "asyncprobe_scans_total 12\n");
}

TEST(Exposition, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  Histogram h({0.01, 0.1});
  h.observe(0.005);
  h.observe(0.05);
  h.observe(0.07);
  h.observe(3);
  Family f{"x_seconds", "X.", "histogram", {}};
  h.append_to(f, {{"kind", "rescan"}});
  EXPECT_EQ(render_exposition({f}),
            "# HELP x_seconds X.\n# TYPE x_seconds histogram\n"
            "x_seconds_bucket{kind=\"rescan\",le=\"0.01\"} 1\n"
            "x_seconds_bucket{kind=\"rescan\",le=\"0.1\"} 3\n"
            "x_seconds_bucket{kind=\"rescan\",le=\"+Inf\"} 4\n"
            "x_seconds_sum{kind=\"rescan\"} 3.125\n"
            "x_seconds_count{kind=\"rescan\"} 4\n");
}

TEST(EventLine, Rfc3339UtcWithMilliseconds) {
  // 2026-12-07 20:25:57.123 UTC = 1796675157.123 s after the epoch.
  auto t = std::chrono::system_clock::time_point(std::chrono::milliseconds(1796675157123LL));
  EXPECT_EQ(rfc3339(t), "2026-12-07T20:25:57.123Z");
}

TEST(EventLine, StuckJsonCarriesPointCountBoundEvidenceAndStack) {
  Event e;
  e.kind = EventKind::kStuck;
  e.time = std::chrono::system_clock::time_point(std::chrono::milliseconds(1796675157123LL));
  e.pid = 42;
  e.command = "svc";
  e.suspend = {"db_query(long, long)", "/src/db.cpp", 89, -1};
  e.count = 8;
  e.for_s = 5.2599;
  e.evidence = "resume-probe";
  e.stack = {{"serve(long)", "/src/svc.cpp", 12}, {"db_query(long, long)", "/src/db.cpp", 89}};
  nlohmann::json j = nlohmann::json::parse(format_json(e));
  EXPECT_EQ(j["time"], "2026-12-07T20:25:57.123Z");
  EXPECT_EQ(j["event"], "stuck");
  EXPECT_TRUE(j["container"].is_null());
  EXPECT_EQ(j["suspend"],
            nlohmann::json::parse(
                R"J({"function":"db_query(long, long)","file":"/src/db.cpp","line":89})J"));
  EXPECT_EQ(j["count"], 8);
  EXPECT_EQ(j["update"], false);
  EXPECT_DOUBLE_EQ(j["stuck_for_s"].get<double>(), 5.259);  // a lower bound: rounded down
  EXPECT_EQ(j["stack"].size(), 2u);
  EXPECT_EQ(j["stack"][0]["function"], "serve(long)");
  EXPECT_EQ(format_text(e),
            "2026-12-07T20:25:57.123Z stuck pid=42 (svc) 8x db_query(long, long) at "
            "/src/db.cpp:89 stuck >=5.2s [resume-probe]");
}

TEST(ListenAddress, LoopbackByDefaultAndPortRange) {
  std::string host, error;
  int port = 0;
  ASSERT_TRUE(parse_listen_address(":9464", &host, &port, &error));
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 9464);
  ASSERT_TRUE(parse_listen_address("[::1]:80", &host, &port, &error));
  EXPECT_EQ(host, "::1");
  EXPECT_FALSE(parse_listen_address("127.0.0.1:0", &host, &port, &error));
  EXPECT_FALSE(parse_listen_address("127.0.0.1:65536", &host, &port, &error));
  EXPECT_FALSE(parse_listen_address("9464", &host, &port, &error));
}

}  // namespace
}  // namespace asyncprobe::watch
