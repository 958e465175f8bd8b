#include "userspace/output/report_json.h"
#include "tests/unit/model_builders.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <limits>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace asyncprobe {
namespace {

using nlohmann::json;

model::CoroFrame make_frame(uint64_t address, const std::string& function, int line,
                            uint64_t awaiter = 0) {
  return testing::suspended_frame(address, function, "srv.cpp", line, awaiter);
}

std::string render(const model::Snapshot& s, const output::JsonReportOptions& opts = {},
                   const snapshot::AsyncStackOptions& aopts = {}) {
  std::ostringstream out;
  output::write_json_report(out, s, snapshot::build_async_forest(s, aopts),
                            snapshot::group_stuck(s), opts);
  return out.str();
}

// Deepest bracket nesting of a JSON text, counted outside strings.
size_t nesting(const std::string& text) {
  size_t depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return deepest;
}

using testing::random_snapshot;

model::Snapshot sample() {
  model::Snapshot s;
  s.pid = 4242;
  s.command = "demo";
  s.executable = "/usr/bin/demo";
  for (uint64_t i = 0; i < 3; ++i) {
    const uint64_t b = 0x7f0000100000 + i * 0x1000;
    s.frames.push_back(make_frame(b, "serve(std::map<int, std::string>)", 40));
    model::CoroFrame leaf = make_frame(b + 0x100, "read(\"quoted\", x)", 22, b);
    leaf.stuck = true;
    leaf.stuck_for_s = 2.5;
    leaf.stuck_evidence = model::StuckEvidence::kResumeProbe;
    leaf.resumes = 0;
    s.frames.push_back(leaf);
  }
  model::CoroFrame generic = make_frame(0x9000, "helper", 0, 0x7f0000100000);
  generic.awaiter_rule = coro::AwaiterRule::kMutualPointer;
  generic.suspend.index = 6;
  generic.suspend.rule.clear();
  generic.on_stack = true;
  generic.unchanged = true;  // its function's probe was detached early (hot)
  generic.unchanged_for_s = 2.5;
  generic.stuck_evidence = model::StuckEvidence::kUnchangedProbeHot;
  s.frames.push_back(generic);
  model::CoroFrame done = make_frame(0xa000, "finished", 0);
  done.state = model::FrameState::kDone;
  done.resume_fn = 0;
  done.suspend.kind = model::SuspendPoint::Kind::kFinal;
  s.frames.push_back(done);
  model::ThreadInfo t;
  t.tid = 4242;
  t.name = "demo";
  t.state = 'S';
  t.syscall = "epoll_wait";
  t.syscall_nr = 232;
  t.sp = 0x7ffd0000;
  t.pc = 0x401234;
  s.threads.push_back(t);
  s.warnings.push_back("no debug info for /usr/lib/libx.so: install its debug file");
  s.bytes_scanned = 1 << 20;
  s.scan_seconds = 0.004;
  s.window_seconds = 2.5;
  s.stuck_probe.ran = true;
  s.stuck_probe.functions = 2;
  s.stuck_probe.hits = 7;
  return s;
}

TEST(ReportJson, ParsesBackWithAllFields) {
  const std::string text = render(sample());
  EXPECT_EQ(text.rfind("{\n  \"schema\": \"asyncprobe.snapshot/1\",\n", 0), 0u);  // first key
  EXPECT_EQ(text.back(), '\n');
  const json doc = json::parse(text);
  EXPECT_EQ(doc["schema"], output::kSnapshotSchema);
  EXPECT_EQ(doc["pid"], 4242);
  EXPECT_EQ(doc["command"], "demo");
  EXPECT_EQ(doc["executable"], "/usr/bin/demo");

  const json& sum = doc["summary"];
  EXPECT_EQ(sum["coroutines"], 8);
  EXPECT_EQ(sum["stacks"], 4);
  EXPECT_EQ(sum["distinct_stacks"], 2);
  EXPECT_EQ(sum["threads"], 1);
  EXPECT_EQ(sum["suspended"], 7);
  EXPECT_EQ(sum["done"], 1);
  EXPECT_EQ(sum["unknown"], 0);
  EXPECT_EQ(sum["stuck"], 3);
  EXPECT_EQ(sum["unchanged"], 1);
  EXPECT_EQ(sum["stuck_probe"]["ran"], true);
  EXPECT_EQ(sum["stuck_probe"]["functions"], 2);
  EXPECT_EQ(sum["stuck_probe"]["hits"], 7);
  EXPECT_EQ(sum["bytes_scanned"], 1 << 20);
  EXPECT_DOUBLE_EQ(sum["scan_seconds"].get<double>(), 0.004);
  EXPECT_DOUBLE_EQ(sum["window_seconds"].get<double>(), 2.5);
  EXPECT_EQ(sum["stuck_detection"], true);
  EXPECT_EQ(sum["max_depth"], 4096);
  EXPECT_EQ(sum["uncertain"], false);
  EXPECT_EQ(sum["depth_cut"], false);

  const json& co = doc["coroutines"];
  ASSERT_EQ(co.size(), 8u);
  EXPECT_EQ(co[0]["id"], 0);
  EXPECT_EQ(co[0]["address"], "0x7f0000100000");
  EXPECT_EQ(co[0]["function"], "serve(std::map<int, std::string>)");
  EXPECT_EQ(co[0]["awaiter_id"], nullptr);
  EXPECT_EQ(co[0]["awaiter_address"], nullptr);
  EXPECT_EQ(co[0]["awaiter_rule"], nullptr);
  EXPECT_EQ(co[0]["link"], "root");
  EXPECT_EQ(co[0]["root_id"], 0);
  EXPECT_EQ(co[0]["depth"], 0);
  const json& leaf = co[1];
  EXPECT_EQ(leaf["function"], "read(\"quoted\", x)");
  EXPECT_EQ(leaf["object"], "/usr/bin/demo");
  EXPECT_EQ(leaf["state"], "suspended");
  EXPECT_EQ(leaf["resume_fn"], "0x401000");
  EXPECT_EQ(leaf["destroy_fn"], "0x402000");
  EXPECT_EQ(leaf["suspend"], (json{{"kind", "await"},
                                   {"file", "srv.cpp"},
                                   {"line", 22},
                                   {"index", 4},
                                   {"rule", "index-store"}}));
  EXPECT_EQ(leaf["awaiter_id"], 0);
  EXPECT_EQ(leaf["awaiter_address"], "0x7f0000100000");
  EXPECT_EQ(leaf["awaiter_rule"], "continuation-in-promise");
  EXPECT_EQ(leaf["generic_link"], false);
  EXPECT_EQ(leaf["link"], "linked");
  EXPECT_EQ(leaf["parent_id"], 0);
  EXPECT_EQ(leaf["depth"], 1);
  EXPECT_EQ(leaf["stuck"], true);
  EXPECT_DOUBLE_EQ(leaf["stuck_for_s"].get<double>(), 2.5);
  EXPECT_EQ(leaf["unchanged"], false);
  EXPECT_EQ(leaf["stuck_evidence"], "resume-probe");
  EXPECT_EQ(leaf["resumes"], 0);
  EXPECT_EQ(co[6]["unchanged"], true);
  EXPECT_DOUBLE_EQ(co[6]["unchanged_for_s"].get<double>(), 2.5);
  EXPECT_EQ(co[6]["stuck_evidence"], "unchanged-probe-hot");
  EXPECT_TRUE(co[6]["resumes"].is_null());
  EXPECT_EQ(co[0]["stuck_evidence"], "not-checked");
  EXPECT_EQ(co[6]["generic_link"], true);
  EXPECT_EQ(co[6]["on_stack"], true);
  EXPECT_EQ(co[6]["suspend"]["rule"], "");
  EXPECT_EQ(co[7]["state"], "done");
  EXPECT_EQ(co[7]["resume_fn"], "0x0");
  EXPECT_EQ(co[7]["suspend"]["kind"], "final");

  const json& stacks = doc["stacks"];
  ASSERT_EQ(stacks.size(), 2u);
  EXPECT_EQ(stacks[0]["count"], 3);
  EXPECT_EQ(stacks[0]["function"], "serve(std::map<int, std::string>)");
  EXPECT_EQ(stacks[0]["link"], "root");
  EXPECT_EQ(stacks[0]["awaiter_rule"], nullptr);
  EXPECT_EQ(stacks[0]["frame_ids"], (json{0, 2, 4}));
  EXPECT_EQ(stacks[0]["suspend"]["index"], nullptr);  // only shared when the line is unknown
  const json& kids = stacks[0]["children"];
  ASSERT_EQ(kids.size(), 2u);
  EXPECT_EQ(kids[0]["count"], 3);
  EXPECT_EQ(kids[0]["stuck"], 3);
  EXPECT_DOUBLE_EQ(kids[0]["stuck_for_s"].get<double>(), 2.5);
  EXPECT_EQ(kids[0]["frame_ids"], (json{1, 3, 5}));
  EXPECT_EQ(kids[0]["children"], json::array());
  EXPECT_EQ(kids[1]["function"], "helper");
  EXPECT_EQ(kids[1]["generic_link"], true);
  EXPECT_EQ(kids[1]["awaiter_rule"], "mutual-pointer");
  EXPECT_EQ(kids[1]["suspend"]["index"], 6);
  EXPECT_EQ(stacks[1]["function"], "finished");
  EXPECT_EQ(stacks[1]["state"], "done");

  const json& stuck = doc["stuck"];
  ASSERT_EQ(stuck.size(), 1u);
  EXPECT_EQ(stuck[0]["count"], 3);
  EXPECT_EQ(stuck[0]["function"], "read(\"quoted\", x)");
  EXPECT_EQ(stuck[0]["suspend"]["line"], 22);
  EXPECT_EQ(stuck[0]["leaves"], 3);
  EXPECT_EQ(stuck[0]["frame_ids"], (json{1, 3, 5}));

  ASSERT_EQ(doc["threads"].size(), 1u);
  EXPECT_EQ(doc["threads"][0], (json{{"tid", 4242},
                                     {"name", "demo"},
                                     {"state", "S"},
                                     {"syscall", "epoll_wait"},
                                     {"syscall_nr", 232},
                                     {"sp", "0x7ffd0000"},
                                     {"pc", "0x401234"},
                                     {"stack_lo", "0x0"},
                                     {"stack_hi", "0x0"},
                                     {"lock_wait", nullptr},
                                     {"native_stack", json::array()},
                                     {"running_coroutine", nullptr},
                                     {"running_function", nullptr},
                                     {"resume_native_frame", nullptr},
                                     {"running_candidates", json::array()}}));
  EXPECT_EQ(doc["diagnoses"], json::array());
  EXPECT_EQ(doc["coroutines"][0]["exception"], nullptr);
  EXPECT_EQ(doc["coroutines"][0]["orphaned"], false);
  EXPECT_EQ(doc["warnings"], (json{"no debug info for /usr/lib/libx.so: install its debug file"}));
  EXPECT_EQ(doc["anomalies"], (json{{"cycles", json::array()},
                                    {"dangling", json::array()},
                                    {"depth_cuts", json::array()},
                                    {"duplicates", json::array()}}));
}

TEST(ReportJson, Anomalies) {
  model::Snapshot s;
  s.frames.push_back(make_frame(0x10, "ping", 1, 0x20));
  s.frames.push_back(make_frame(0x20, "pong", 2, 0x10));
  s.frames.push_back(make_frame(0x30, "lost", 3, 0xdead));
  s.frames.push_back(make_frame(0x40, "dup", 4));
  s.frames.push_back(make_frame(0x40, "dup", 4));
  for (uint64_t i = 0; i < 4; ++i) {
    s.frames.push_back(make_frame(0x100 + i * 0x10, "d", 1, i ? 0x100 + (i - 1) * 0x10 : 0));
  }
  snapshot::AsyncStackOptions aopts;
  aopts.max_depth = 3;
  const json doc = json::parse(render(s, {}, aopts));
  EXPECT_EQ(doc["summary"]["uncertain"], true);
  EXPECT_EQ(doc["summary"]["depth_cut"], true);
  EXPECT_EQ(doc["summary"]["stuck_detection"], false);
  const json& a = doc["anomalies"];
  EXPECT_EQ(a["cycles"], (json::parse(R"([{"frame_ids":[0,1],"cut_id":0}])")));
  EXPECT_EQ(a["dangling"], (json::parse(R"([{"id":2,"awaiter_address":"0xdead"}])")));
  EXPECT_EQ(a["depth_cuts"], (json::parse(R"([{"id":8,"parent_id":7,"root_id":5,"depth":3}])")));
  EXPECT_EQ(a["duplicates"], (json::parse(R"([{"address":"0x40","frame_ids":[3,4]}])")));
  EXPECT_EQ(doc["coroutines"][0]["link"], "cycle");
  EXPECT_EQ(doc["coroutines"][0]["awaiter_id"], 1);
  EXPECT_EQ(doc["coroutines"][0]["parent_id"], nullptr);
  EXPECT_EQ(doc["coroutines"][2]["link"], "dangling");
  EXPECT_EQ(doc["coroutines"][2]["awaiter_id"], nullptr);
  EXPECT_EQ(doc["coroutines"][2]["awaiter_address"], "0xdead");
  EXPECT_EQ(doc["coroutines"][4]["duplicate"], true);
  EXPECT_EQ(doc["coroutines"][8]["link"], "depth-cut");
  EXPECT_EQ(doc["coroutines"][8]["depth"], 3);
  EXPECT_EQ(doc["coroutines"][8]["root_id"], 5);
  bool saw_cycle_node = false;
  for (const json& st : doc["stacks"]) {
    if (st["link"] == "cycle") {
      saw_cycle_node = true;
      EXPECT_EQ(st["uncertain"], true);
    }
  }
  EXPECT_TRUE(saw_cycle_node);
}

TEST(ReportJson, DeepStacksAreSplitByNestingBound) {
  model::Snapshot s;
  const uint64_t n = 5000;
  for (uint64_t i = 0; i < n; ++i) {
    s.frames.push_back(
        make_frame(0x100000 + i * 0x40, "recurse", 12, i == 0 ? 0 : 0x100000 + (i - 1) * 0x40));
  }
  output::JsonReportOptions opts;
  opts.max_nesting = 10;
  const std::string text = render(s, opts);
  EXPECT_LE(nesting(text), 2u * 10u + 4u);
  const json doc = json::parse(text);
  // Re-attach continuations and count every frame exactly once.
  std::map<uint64_t, const json*> by_node;
  std::vector<const json*> todo;
  for (const json& e : doc["stacks"]) todo.push_back(&e);
  std::set<uint64_t> frames;
  size_t entries_continuing = 0;
  while (!todo.empty()) {
    const json* e = todo.back();
    todo.pop_back();
    by_node[(*e)["node_id"].get<uint64_t>()] = e;
    for (const json& f : (*e)["frame_ids"]) EXPECT_TRUE(frames.insert(f.get<uint64_t>()).second);
    for (const json& c : (*e)["children"]) todo.push_back(&c);
  }
  for (const json& e : doc["stacks"]) {
    if (!e.contains("continues_node")) continue;
    ++entries_continuing;
    const json* parent = by_node.at(e["continues_node"].get<uint64_t>());
    EXPECT_EQ((*parent)["children_continued"], true);
    EXPECT_TRUE((*parent)["children"].empty());
  }
  EXPECT_EQ(frames.size(), n);
  EXPECT_GT(entries_continuing, 400u);
}

TEST(ReportJson, InvalidUtf8IsReplacedNotThrown) {
  model::Snapshot s;
  s.command = "bad\xff\xfe";
  s.frames.push_back(make_frame(0x10, "f\xc3(", 1));
  std::string text;
  EXPECT_NO_THROW(text = render(s));
  const json doc = json::parse(text);
  EXPECT_EQ(doc["command"], "bad\xef\xbf\xbd\xef\xbf\xbd");
}

TEST(ReportJson, CompactIsOneLine) {
  output::JsonReportOptions opts;
  opts.indent = -1;
  const std::string text = render(sample(), opts);
  EXPECT_EQ(text.find('\n'), text.size() - 1);
  EXPECT_EQ(text.rfind("{\"schema\":\"asyncprobe.snapshot/1\",\"pid\":4242,", 0), 0u);
}

// The streamed writer and the value API must agree: byte for byte when compact, value for value
// (key order included) when pretty. Strings cover every escape class.
TEST(ReportJson, StreamedOutputEqualsTheValue) {
  model::Snapshot s = sample();
  model::CoroFrame odd = make_frame(0xb000, "esc \"q\" \\ \b\f\n\r\t \x01\x1f \x7f end", 0, 0xb000);
  odd.object = "caf\xc3\xa9 and bad \xff byte";
  odd.suspend.file = "tab\there";
  odd.awaiter_rule = coro::AwaiterRule::kNone;
  odd.stuck = true;
  odd.stuck_for_s = 1e-7;
  odd.suspend.index = -1;
  odd.exception =
      model::HeldException{0x5000, "esc \"t\" \xff", "what\n\x01 \xc3\xa9", true, true, ""};
  odd.orphaned = true;
  s.frames.push_back(odd);
  model::CoroFrame nan = make_frame(0xc000, "nan", 1);
  nan.stuck_for_s = std::numeric_limits<double>::quiet_NaN();
  s.frames.push_back(nan);
  model::Diagnosis failed;
  failed.kind = model::Diagnosis::Kind::kFailed;
  failed.frame_ids = {s.frames.size() - 2};
  failed.exception = odd.exception;
  failed.summary = "1 coroutine failed";
  s.diagnoses.push_back(failed);
  model::Diagnosis deadlock;
  deadlock.kind = model::Diagnosis::Kind::kThreadDeadlock;
  deadlock.threads = {7, 8};
  deadlock.locks = {{0x1000, "pthread_mutex", 8, true, false, {7}},
                    {0x2000, "pthread_mutex", 7, true, false, {8}}};
  deadlock.summary = "2 threads";
  s.diagnoses.push_back(deadlock);
  model::CoroFrame run = make_frame(0xd000, "runs", 1);
  run.state = model::FrameState::kRunning;
  run.running = model::RunningOn{42, "read", "srv.cpp", 12, false, "frame-address"};
  s.frames.push_back(run);
  const snapshot::AsyncForest forest = snapshot::build_async_forest(s);
  const std::vector<snapshot::StuckGroup> stuck = snapshot::group_stuck(s);
  const nlohmann::ordered_json value = output::snapshot_to_json(s, forest, stuck);

  output::JsonReportOptions compact;
  compact.indent = -1;
  EXPECT_EQ(render(s, compact),
            value.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n");

  for (int indent : {0, 2, 4}) {
    output::JsonReportOptions pretty;
    pretty.indent = indent;
    const std::string text = render(s, pretty);
    // Compared through the replaced text: the value still holds the raw invalid byte.
    EXPECT_EQ(nlohmann::ordered_json::parse(text),
              nlohmann::ordered_json::parse(
                  value.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace)))
        << indent;
  }
  // Pretty output puts one coroutine per line.
  const std::string text = render(s);
  EXPECT_NE(text.find("\n  \"coroutines\": [\n    {\"id\":0,\"address\":\"0x7f0000100000\","),
            std::string::npos);
  EXPECT_NE(text.find("\"stuck_for_s\":1e-07,"), std::string::npos);
  EXPECT_NE(text.find("\"resumes\":null,\"exception\":{\"type\":"), std::string::npos);
  EXPECT_NE(text.find("\"orphaned\":true,\"thread\":null,\"running\":null}"), std::string::npos);
  EXPECT_NE(text.find("\"state\":\"running\","), std::string::npos);
  EXPECT_NE(text.find("\"thread\":42,\"running\":{\"thread\":42,\"syscall\":\"read\",\"file\":"
                      "\"srv.cpp\",\"line\":12,\"uncertain\":false,\"rule\":\"frame-address\"}}"),
            std::string::npos);
  EXPECT_NE(text.find("\"kind\": \"thread_deadlock\",\n      \"threads\": [7, 8],\n"),
            std::string::npos);
  // Flat values inline, string lists one per line.
  EXPECT_NE(text.find("\n      \"frame_ids\": [0, 2, 4],\n"), std::string::npos);
  EXPECT_NE(text.find("\"suspend\": {\"kind\": \"await\", \"file\": \"srv.cpp\", \"line\": 40, "
                      "\"index\": null},"),
            std::string::npos);
  EXPECT_NE(text.find("\"warnings\": [\n    \"no debug info"), std::string::npos);
  EXPECT_NE(text.find("\"stuck_for_s\":null,"), std::string::npos);
  EXPECT_NE(text.find("\"resumes\":null,\"exception\":null,\"orphaned\":false,\"thread\":null,"
                      "\"running\":null}"),
            std::string::npos);
}

TEST(ReportJson, EmptySnapshot) {
  const model::Snapshot s;
  const std::string text = render(s);
  const json doc = json::parse(text);
  EXPECT_EQ(doc["coroutines"], json::array());
  EXPECT_EQ(doc["stacks"], json::array());
  EXPECT_EQ(doc["summary"]["coroutines"], 0);
  EXPECT_NE(text.find("\"coroutines\": [],"), std::string::npos);
}

TEST(ReportJson, RandomBrokenSnapshotsParseBack) {
  std::mt19937_64 rng(5);
  for (int round = 0; round < 300; ++round) {
    const model::Snapshot s = random_snapshot(rng);
    snapshot::AsyncStackOptions aopts;
    aopts.max_depth = 1 + rng() % 6;
    output::JsonReportOptions opts;
    opts.max_nesting = 1 + rng() % 3;
    opts.indent = static_cast<int>(rng() % 4) - 1;
    json doc;
    ASSERT_NO_THROW(doc = json::parse(render(s, opts, aopts)));
    EXPECT_EQ(doc["coroutines"].size(), s.frames.size());
    size_t listed = 0;
    std::vector<const json*> todo;
    for (const json& e : doc["stacks"]) todo.push_back(&e);
    while (!todo.empty()) {
      const json* e = todo.back();
      todo.pop_back();
      listed += (*e)["frame_ids"].size();
      for (const json& c : (*e)["children"]) todo.push_back(&c);
    }
    EXPECT_EQ(listed, s.frames.size());
  }
}

TEST(ReportJson, ConvenienceOverloadMatches) {
  const model::Snapshot s = sample();
  std::ostringstream out;
  output::write_json_report(out, s);
  EXPECT_EQ(out.str(), render(s));
}

}  // namespace
}  // namespace asyncprobe
