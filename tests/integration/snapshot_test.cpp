// End-to-end snapshots: start a fixture as its own process, run the asyncprobe binary on it and
// compare the async stacks it reports with the ones the fixture built, frame by frame: function,
// file:line of the co_await (taken from the `// @await` markers in the fixture's source), state
// and counts. Every compiler x optimisation variant the fixtures were built in is checked.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/fixture_process.h"
#include "tests/integration/source_markers.h"

namespace asyncprobe::testing {
namespace {

using nlohmann::json;

json snapshot_json(pid_t pid, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> argv = {asyncprobe_binary(), "-p", std::to_string(pid), "--json",
                                   "--window",          "0"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  RunResult r = run_command(argv, std::chrono::seconds(120));
  EXPECT_EQ(r.exit.exit_code, 0) << r.err;
  return json::parse(r.out);
}

std::string short_file(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// One line per frame: "function @file:line state"; a chain joins them root first with " > ".
std::string frame_text(const json& c) {
  const json& s = c["suspend"];
  std::string where = s["line"].get<int>() != 0 ? short_file(s["file"].get<std::string>()) + ":" +
                                                      std::to_string(s["line"].get<int>())
                                                : std::string("?");
  return c["function"].get<std::string>() + " @" + where + " " + c["state"].get<std::string>();
}

// Every async stack as root-first text, with how many times it occurs.
std::map<std::string, int> chains_of(const json& doc) {
  const json& cs = doc["coroutines"];
  std::vector<bool> has_child(cs.size(), false);
  for (const auto& c : cs) {
    if (!c["awaiter_id"].is_null()) has_child[c["awaiter_id"].get<size_t>()] = true;
  }
  std::map<std::string, int> out;
  for (size_t i = 0; i < cs.size(); ++i) {
    if (has_child[i]) continue;
    std::vector<std::string> parts;
    size_t at = i;
    for (int guard = 0; guard < 10000; ++guard) {
      parts.push_back(frame_text(cs[at]));
      if (cs[at]["awaiter_id"].is_null()) break;
      at = cs[at]["awaiter_id"].get<size_t>();
    }
    std::string chain;
    for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
      if (!chain.empty()) chain += " > ";
      chain += *it;
    }
    out[chain]++;
  }
  return out;
}

std::string at_marker(const std::string& source, const std::string& marker) {
  return short_file(source) + ":" + std::to_string(marker_line(source_file(source), marker));
}

// The chain fixture's documented shape (see tests/fixtures/chain.cpp).
std::string expected_chain(int depth) {
  const std::string src = "tests/fixtures/chain.cpp";
  std::vector<std::string> parts;
  auto await = [&](const std::string& fn, const std::string& marker) {
    parts.push_back(fn + " @" + at_marker(src, marker) + " suspended");
  };
  if (depth == 1) {
    await("handle_request(int, int)", "handle_request_park");
  } else {
    await("handle_request(int, int)", "handle_request_calls_load_user");
    if (depth == 2) {
      await("load_user(int, int)", "load_user_park");
    } else {
      await("load_user(int, int)", "load_user_calls_query_db");
      if (depth == 3) {
        await("query_db(int, int)", "query_db_park");
      } else {
        await("query_db(int, int)", "query_db_calls_descend");
        for (int k = depth - 3; k > 1; --k) await("descend(int)", "descend_calls_descend");
        await("descend(int)", "descend_park");
      }
    }
  }
  std::string chain;
  for (const auto& p : parts) chain += (chain.empty() ? "" : " > ") + p;
  return chain;
}

class ChainSnapshot : public ::testing::TestWithParam<std::string> {};

TEST_P(ChainSnapshot, ExactTreesAtSeveralDepths) {
  for (int depth : {1, 2, 3, 4, 7}) {
    FixtureProcess fx(
        {fixture_path(GetParam(), "chain"), "--depth", std::to_string(depth), "--count", "3"});
    json doc = snapshot_json(fx.pid());
    std::map<std::string, int> want = {
        {expected_chain(depth), 3},
        {"idle_worker() @" + at_marker("tests/fixtures/chain.cpp", "idle_worker_park") +
             " suspended",
         1}};
    EXPECT_EQ(chains_of(doc), want) << "depth " << depth;
    EXPECT_EQ(doc["summary"]["coroutines"].get<int>(), 3 * depth + 1);
    EXPECT_EQ(doc["summary"]["stacks"].get<int>(), 4);
    for (const auto& c : doc["coroutines"]) {
      if (!c["awaiter_id"].is_null()) {
        EXPECT_EQ(c["awaiter_rule"], "continuation-in-promise");
      }
    }
  }
}

TEST_P(ChainSnapshot, DeepChainOf200) {
  FixtureProcess fx({fixture_path(GetParam(), "chain"), "--depth", "200", "--count", "2"});
  json doc = snapshot_json(fx.pid());
  std::map<std::string, int> got = chains_of(doc);
  EXPECT_EQ(got[expected_chain(200)], 2);
  EXPECT_EQ(doc["summary"]["coroutines"].get<int>(), 401);
  EXPECT_FALSE(doc["summary"]["uncertain"].get<bool>());
}

INSTANTIATE_TEST_SUITE_P(AllCompilers, ChainSnapshot,
                         ::testing::ValuesIn(fixture_variants_with("chain")), VariantTestName());

// Edges not to be taken at face value (tests/fixtures/odd_edges.cpp says what each frame's
// continuation word holds): a frame naming itself is a cycle, marked uncertain; an edge to a
// coroutine that never started is left out and counted; an edge rewritten while the snapshot
// reads it counts only when both reads agree, and each disagreement is counted in a warning.
class OddEdges : public ::testing::TestWithParam<std::string> {};

const json* frame_at(const json& doc, const std::string& address) {
  for (const json& c : doc["coroutines"]) {
    if (c["address"] == address) return &c;
  }
  return nullptr;
}

// How many edges the warning starting with `what` counts in `doc`; 0 without that warning.
long warned(const json& doc, const std::string& what) {
  for (const json& w : doc["warnings"]) {
    const std::string text = w.get<std::string>();
    const size_t space = text.find(' ');
    if (space != std::string::npos && text.compare(space + 1, what.size(), what) == 0) {
      return std::stol(text.substr(0, space));
    }
  }
  return 0;
}

TEST_P(OddEdges, SelfLoopsAreCyclesAndTornOrUnstartedEdgesAreLeftOutAndCounted) {
  FixtureProcess fx({fixture_path(GetParam(), "odd_edges")});
  for (int look = 0; look < 12; ++look) {
    const json doc = snapshot_json(fx.pid());
    const json* self = frame_at(doc, fx.token("self"));
    const json* early = frame_at(doc, fx.token("early"));
    const json* linked = frame_at(doc, fx.token("linked"));
    const json* holder = frame_at(doc, fx.token("holder"));
    const json* torn = frame_at(doc, fx.token("torn"));
    const json* parent = frame_at(doc, fx.token("parent"));
    ASSERT_TRUE(self && early && linked && holder && torn && parent) << doc.dump(1);
    // The true edge.
    EXPECT_EQ((*linked)["awaiter_id"], (*holder)["id"]);
    EXPECT_EQ((*linked)["link"], "linked");
    // A frame that names itself: a cycle of one, uncertain.
    EXPECT_EQ((*self)["awaiter_address"], fx.token("self"));
    EXPECT_EQ((*self)["link"], "cycle");
    EXPECT_EQ(warned(doc, "frames name themselves as their awaiter"), 1);
    // Not under the coroutine that never started, when its initial suspend is known. Clang 14
    // emits no suspend index for a coroutine with a single suspend point and its code gives none
    // (issue 11 item 5): its state reads unknown and the shape cannot be judged.
    const json* unstarted = frame_at(doc, fx.token("unstarted"));
    ASSERT_NE(unstarted, nullptr);
    if ((*unstarted)["suspend"]["kind"] == "initial") {
      EXPECT_TRUE((*early)["awaiter_id"].is_null()) << early->dump(1);
      EXPECT_EQ((*early)["link"], "root");
      EXPECT_EQ(warned(doc, "awaiter edges named a coroutine that has not started"), 1);
    } else {
      EXPECT_EQ(GetParam().rfind("clang14-", 0), 0u) << unstarted->dump(1);
      EXPECT_EQ((*unstarted)["state"], "unknown");
    }
    // Under its parent only when both reads said so; otherwise a root.
    // (How often the two reads disagree is up to the race: about one look in ten here.)
    if ((*torn)["awaiter_id"].is_null()) {
      EXPECT_EQ((*torn)["link"], "root");
    } else {
      EXPECT_EQ((*torn)["awaiter_id"], (*parent)["id"]);
    }
    EXPECT_LE(warned(doc, "awaiter edges read differently in two reads"), 1);
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, OddEdges,
                         ::testing::ValuesIn(fixture_variants_with("odd_edges")),
                         VariantTestName());

TEST(Snapshot, TextReportCoalescesIdenticalStacks) {
  FixtureProcess fx({fixture_path("gcc12-O2", "chain"), "--depth", "4", "--count", "50"});
  RunResult r = run_command({asyncprobe_binary(), "-p", std::to_string(fx.pid()), "--window", "0"});
  ASSERT_EQ(r.exit.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("201 coroutines in 51 async stacks (2 distinct)"), std::string::npos)
      << r.out;
  std::string line = "50x handle_request(int, int)  " + source_file("tests/fixtures/chain.cpp") +
                     ":" +
                     std::to_string(marker_line(source_file("tests/fixtures/chain.cpp"),
                                                "handle_request_calls_load_user"));
  EXPECT_NE(r.out.find(line), std::string::npos) << r.out;
}

}  // namespace
}  // namespace asyncprobe::testing

namespace asyncprobe::testing {
namespace {

std::string one(const std::string& fn, const std::string& src, const std::string& marker,
                const std::string& state = "suspended") {
  return fn + " @" + at_marker(src, marker) + " " + state;
}

std::string join(const std::vector<std::string>& parts) {
  std::string s;
  for (const auto& p : parts) s += (s.empty() ? "" : " > ") + p;
  return s;
}

std::vector<std::string> variants_of(const std::string& name) {
  return fixture_variants_with(name);
}

TEST(Snapshot, SharedLibraryCoroutinesInEveryVariant) {
  const std::string exe = "tests/fixtures/uses_lib.cpp";
  const std::string lib = "tests/fixtures/corolib.cpp";
  for (const auto& v : variants_of("uses_lib")) {
    FixtureProcess fx({fixture_path(v, "uses_lib"), "--depth", "5", "--count", "2"});
    json doc = snapshot_json(fx.pid());
    std::map<std::string, int> want = {
        {join({one("app_request(int, int)", exe, "app_request_calls_lib_serve"),
               one("lib_serve(int, int)", lib, "lib_serve_calls_fetch"),
               one("lib_fetch(int, int)", lib, "lib_fetch_calls_descend"),
               one("lib_descend(int)", lib, "lib_descend_calls_descend"),
               one("lib_descend(int)", lib, "lib_descend_park")}),
         2},
        {one("app_idle()", exe, "app_idle_park"), 1},
        {one("lib_background()", lib, "lib_background_park"), 1}};
    EXPECT_EQ(chains_of(doc), want) << v;
    bool saw_lib_object = false;
    for (const auto& c : doc["coroutines"]) {
      saw_lib_object |= c["object"].get<std::string>().find("libcorolib.so") != std::string::npos;
    }
    EXPECT_TRUE(saw_lib_object) << v;
  }
}

TEST(Snapshot, GeneratorsAndInitialSuspend) {
  const std::string src = "tests/fixtures/generator.cpp";
  for (const auto& v : variants_of("generator")) {
    FixtureProcess fx({fixture_path(v, "generator")});
    json doc = snapshot_json(fx.pid());
    std::map<std::string, int> got = chains_of(doc);
    // counter(10) lives in consumer()'s frame, which holds its handle (held-by-frame), except
    // under Clang -O2, which elides it into that frame (links_test.cpp checks both).
    if (v.find("clang") == 0 && v.find("-O2") != std::string::npos) {
      EXPECT_EQ(got[one("consumer(int*)", src, "consumer_park")], 1) << v;
      EXPECT_EQ(got[one("counter(int)", src, "counter_yield")], 1) << v;
    } else {
      EXPECT_EQ(got[one("consumer(int*)", src, "consumer_park") + " > " +
                    one("counter(int)", src, "counter_yield")],
                1)
          << v;
    }
    EXPECT_EQ(got[one("idle_after_yield()", src, "idle_after_yield_park")], 1) << v;
    EXPECT_EQ(got[one("two_phase()", src, "two_phase_second")], 1) << v;
    // counter(5) was never advanced: it sits at its initial suspend.
    bool initial = false;
    for (const auto& c : doc["coroutines"]) {
      initial |= c["function"] == "counter(int)" && c["suspend"]["kind"] == "initial";
    }
    EXPECT_TRUE(initial) << v;
    EXPECT_EQ(doc["summary"]["coroutines"].get<int>(), 5) << v;
  }
}

// Issue 11 item 5: coroutines with one point to resume from (Clang's resume function then reads
// no suspend index) are placed, never "unknown": eager ones at their co_await, a lazy one never
// started at its initial suspend.
TEST(Snapshot, SingleResumePointCoroutinesArePlaced) {
  const std::string src = "tests/fixtures/one_suspend.cpp";
  for (const auto& v : variants_of("one_suspend")) {
    FixtureProcess fx({fixture_path(v, "one_suspend")});
    json doc = snapshot_json(fx.pid());
    std::map<std::string, int> got = chains_of(doc);
    EXPECT_EQ(got[one("eager_park()", src, "eager_park")], 1) << v;
    EXPECT_EQ(got[join({one("eager_root()", src, "eager_root_calls_leaf"),
                        one("leaf()", src, "leaf_park")})],
              1)
        << v;
    EXPECT_EQ(got[one("eager_loop()", src, "eager_loop_park")], 1) << v;
    EXPECT_EQ(got[one("lazy_once()", src, "lazy_once_park")], 1) << v;
    EXPECT_EQ(got[one("one_yield()", src, "one_yield_yield")], 1) << v;
    int initial = 0;
    for (const auto& c : doc["coroutines"]) {
      EXPECT_EQ(c["state"], "suspended") << v << " " << c["function"];
      if (c["function"] != "never_started(int)") continue;
      EXPECT_EQ(c["suspend"]["kind"], "initial") << v;
      EXPECT_EQ(c["suspend"]["line"].get<int>(),
                marker_line(source_file(src), "never_started_decl"))
          << v;
      ++initial;
    }
    EXPECT_EQ(initial, 1) << v;
    EXPECT_EQ(doc["summary"]["coroutines"].get<int>(), 7) << v;
  }
}

// Issue 11 item 11: a co_await spread over several lines is reported at its keyword's line by
// both compilers (g++ records the expression's last line; the keyword is read from the source).
TEST(Snapshot, MultiLineAwaitAtItsKeyword) {
  const std::string src = "tests/fixtures/multiline_await.cpp";
  for (const auto& v : variants_of("multiline_await")) {
    FixtureProcess fx({fixture_path(v, "multiline_await")});
    json doc = snapshot_json(fx.pid());
    std::map<std::string, int> want = {
        {one("spread_args()", src, "spread_args"), 1},
        {one("spread_value()", src, "spread_value"), 1},
        {join({one("keyword_alone()", src, "keyword_alone"), one("leaf()", src, "leaf_park")}), 1},
        {one("spread_then_park()", src, "spread_then_park"), 1}};
    EXPECT_EQ(chains_of(doc), want) << v;
  }
}

TEST(Snapshot, FinishedButNotDestroyedFrames) {
  const std::string src = "tests/fixtures/threw.cpp";
  for (const auto& v : variants_of("threw")) {
    FixtureProcess fx({fixture_path(v, "threw")});
    json doc = snapshot_json(fx.pid());
    int done = 0;
    for (const auto& c : doc["coroutines"]) {
      if (c["state"] != "done") continue;
      EXPECT_EQ(c["suspend"]["kind"], "final") << v;
      if (c["elided"].get<bool>()) {
        // Clang -O2 elides failing_child() into its caller's frame; that storage still reads
        // "done" after the child was destroyed, and the report says it may be gone.
        EXPECT_EQ(c["function"], "failing_child()") << v;
        continue;
      }
      ++done;
      EXPECT_TRUE(c["function"] == "failing_step()" || c["function"] == "finishes_normally()")
          << v << " " << c["function"];
    }
    EXPECT_EQ(done, 2) << v;
    EXPECT_EQ(chains_of(doc)[one("catches_child_failure()", src, "catches_child_failure_park")], 1)
        << v;
  }
}

TEST(Snapshot, StrippedBinaryWithDebugFileBesideIt) {
  for (const auto& v : variants_of("stripped/chain")) {
    FixtureProcess fx({fixture_path(v, "stripped/chain"), "--depth", "5", "--count", "2"});
    json doc = snapshot_json(fx.pid());
    EXPECT_EQ(chains_of(doc)[expected_chain(5)], 2) << v;
  }
}

TEST(Snapshot, StrippedBinaryWithBuildIdDebugFileUnderDebugDir) {
  for (const auto& v : variants_of("stripped-buildid/chain")) {
    FixtureProcess fx({fixture_path(v, "stripped-buildid/chain"), "--depth", "5", "--count", "2"});
    json doc = snapshot_json(fx.pid(), {"--debug-dir", fixture_path(v, "stripped-buildid/debug")});
    EXPECT_EQ(chains_of(doc)[expected_chain(5)], 2) << v;
  }
}

TEST(Snapshot, BinaryWithoutDwarfNamesFunctionsAndSaysLinesAreUnknown) {
  for (const auto& v : variants_of("nodwarf/chain")) {
    FixtureProcess fx({fixture_path(v, "nodwarf/chain"), "--depth", "5", "--count", "2"});
    json doc = snapshot_json(fx.pid());
    std::map<std::string, int> want = {
        {"handle_request(int, int) @? suspended > load_user(int, int) @? suspended > "
         "query_db(int, int) @? suspended > descend(int) @? suspended > descend(int) @? suspended",
         2},
        {"idle_worker() @? suspended", 1}};
    EXPECT_EQ(chains_of(doc), want) << v;
    bool warned = false;
    for (const auto& w : doc["warnings"]) {
      warned |= w.get<std::string>().find("no DWARF") != std::string::npos;
    }
    EXPECT_TRUE(warned) << v;
  }
}

TEST(Snapshot, ManyCoroutinesAllFound) {
  FixtureProcess fx({fixture_path("gcc12-O2", "many"), "--count", "100000"},
                    std::chrono::seconds(60));
  json doc = snapshot_json(fx.pid());
  const std::string src = "tests/fixtures/many.cpp";
  std::map<std::string, int> want = {{join({one("many_root(long)", src, "many_root_calls_mid"),
                                            one("many_mid(long)", src, "many_mid_calls_inner"),
                                            one("many_inner(long)", src, "many_inner_calls_leaf"),
                                            one("many_leaf(long)", src, "many_leaf_park")}),
                                      25000}};
  EXPECT_EQ(chains_of(doc), want);
  EXPECT_EQ(doc["summary"]["coroutines"].get<int>(), 100000);
}

TEST(Snapshot, AsioServerSessionsAwaitTheirReads) {
  const std::string src = "tests/fixtures/asio_server.cpp";
  for (const auto& v : variants_of("asio_server")) {
    FixtureProcess fx({fixture_path(v, "asio_server"), "--clients", "3"});
    json doc = snapshot_json(fx.pid());
    int sessions = 0;
    int reads = 0;
    int clients = 0;
    const json& cs = doc["coroutines"];
    for (const auto& c : cs) {
      const std::string fn = c["function"];
      std::string where = short_file(c["suspend"]["file"].get<std::string>()) + ":" +
                          std::to_string(c["suspend"]["line"].get<int>());
      if (fn.rfind("session(", 0) == 0) {
        ++sessions;
        EXPECT_EQ(where, at_marker(src, "session_calls_read_request")) << v;
      }
      if (fn.rfind("read_request(", 0) == 0) {
        ++reads;
        EXPECT_EQ(where, at_marker(src, "read_request_read_some")) << v;
        ASSERT_FALSE(c["awaiter_id"].is_null()) << v;
        const json& parent = cs[c["awaiter_id"].get<size_t>()];
        EXPECT_EQ(parent["function"].get<std::string>().rfind("session(", 0), 0u) << v;
        EXPECT_EQ(c["awaiter_rule"], "asio-caller") << v;
      }
      if (fn.rfind("idle_client(", 0) == 0 && c["state"] == "suspended" &&
          c["suspend"]["line"].get<int>() != 0) {
        ++clients;
        EXPECT_EQ(where, at_marker(src, "idle_client_wait_reply")) << v;
      }
    }
    EXPECT_EQ(sessions, 3) << v;
    EXPECT_EQ(reads, 3) << v;
    EXPECT_EQ(clients, 3) << v;
  }
}

}  // namespace
}  // namespace asyncprobe::testing

namespace asyncprobe::testing {
namespace {

// Resume-function address (as asyncprobe prints it for unnamed code) -> the coroutine's name,
// read with nm from the unstripped build of the same variant.
std::map<std::string, std::string> resume_names(const std::string& binary) {
  RunResult r = run_command({"nm", "-C", binary});
  std::map<std::string, std::string> out;
  std::istringstream in(r.out);
  std::string line;
  while (std::getline(in, line)) {
    auto clone = line.find(" [clone .actor]");
    if (clone == std::string::npos) clone = line.find(" [clone .resume]");
    if (clone == std::string::npos || line.size() < 20) continue;
    std::string addr = line.substr(0, 16);
    std::string name = line.substr(19, clone - 19);
    // GCC's actor demangles as f(f(args)::Frame*); the coroutine is the part before "(".
    name = name.substr(0, name.find('('));
    out["0x" + addr.substr(addr.find_first_not_of('0'))] = name;
  }
  return out;
}

TEST(Snapshot, StrippedBinaryWithoutDebugFileShowsFramesByAddress) {
  for (const auto& v : variants_of("stripped-nodebug/chain")) {
    auto names = resume_names(fixture_path(v, "chain"));
    FixtureProcess fx({fixture_path(v, "stripped-nodebug/chain"), "--depth", "5", "--count", "2"});
    json doc = snapshot_json(fx.pid());
    // Rename every address to the function nm knows for it; an unknown address is an error.
    for (auto& c : doc["coroutines"]) {
      auto it = names.find(c["function"].get<std::string>());
      ASSERT_NE(it, names.end()) << v << " " << c["function"];
      c["function"] = it->second;
    }
    std::map<std::string, int> got = chains_of(doc);
    EXPECT_EQ(got["handle_request @? suspended > load_user @? suspended > query_db @? suspended > "
                  "descend @? suspended > descend @? suspended"],
              2)
        << v;
    // Where the optimiser inlined idle_worker's ramp into main and (GCC -O3) its actor into its
    // destroy function, no code confirms its header without symbols: it is left out, and the
    // warning says some coroutines may be. Known variants, so an improvement shows up here too.
    const std::set<std::string> unconfirmed = {"clang14-O2", "clang14-O3", "gcc12-O3"};
    EXPECT_EQ(got["idle_worker @? suspended"], unconfirmed.count(v) != 0 ? 0 : 1) << v;
    bool warned = false;
    for (const auto& w : doc["warnings"]) {
      warned |= w.get<std::string>().find("no symbols") != std::string::npos;
    }
    EXPECT_TRUE(warned) << v;
  }
}

}  // namespace
}  // namespace asyncprobe::testing

namespace asyncprobe::testing {
namespace {

TEST(Snapshot, WindowMarksUnmovedFramesStuck) {
  FixtureProcess fx({fixture_path("clang19-O2", "chain"), "--depth", "4", "--count", "5"});
  RunResult r = run_command(
      {asyncprobe_binary(), "-p", std::to_string(fx.pid()), "--json", "--window", "300ms"});
  ASSERT_EQ(r.exit.exit_code, 0) << r.err;
  json doc = json::parse(r.out);
  EXPECT_DOUBLE_EQ(doc["summary"]["window_seconds"].get<double>(), 0.3);
  EXPECT_EQ(doc["summary"]["stuck"].get<int>(), 21);
  EXPECT_TRUE(doc["summary"]["stuck_probe"]["ran"].get<bool>());
  // Nothing in chain is resumed after setup: the resume probe (tests run as root) saw none of
  // the 21 frames resumed over the whole window.
  for (const auto& c : doc["coroutines"]) {
    EXPECT_TRUE(c["stuck"].get<bool>());
    EXPECT_EQ(c["stuck_evidence"], "resume-probe");
    EXPECT_EQ(c["resumes"], 0);
    EXPECT_GE(c["stuck_for_s"].get<double>(), 0.3);
    EXPECT_LT(c["stuck_for_s"].get<double>(), 5.0);
  }
  RunResult text =
      run_command({asyncprobe_binary(), "-p", std::to_string(fx.pid()), "--window", "300ms"});
  EXPECT_NE(text.out.find("STUCK"), std::string::npos) << text.out;
  // The bound is measured (the probe's covered time): at least the window.
  EXPECT_TRUE(std::regex_search(
      text.out, std::regex(R"(\[stuck >=(3[0-9][0-9]ms|[4-9][0-9][0-9]ms|[0-9.]+s)\])")))
      << text.out;
}

TEST(Snapshot, CsvToAFileHasOneRowPerCoroutine) {
  FixtureProcess fx({fixture_path("gcc12-O0", "chain"), "--depth", "3", "--count", "4"});
  std::string path = ::testing::TempDir() + "/snapshot.csv";
  RunResult r = run_command(
      {asyncprobe_binary(), "-p", std::to_string(fx.pid()), "--csv", "--window", "0", "-o", path});
  ASSERT_EQ(r.exit.exit_code, 0) << r.err;
  EXPECT_TRUE(r.out.empty());
  std::ifstream in(path);
  std::string line;
  int rows = 0;
  std::getline(in, line);
  EXPECT_EQ(line.rfind("id,address,function,", 0), 0u) << line;
  while (std::getline(in, line)) ++rows;
  EXPECT_EQ(rows, 13);
}

}  // namespace
}  // namespace asyncprobe::testing
