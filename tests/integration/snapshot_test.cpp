// End-to-end snapshots: start a fixture as its own process, run the asyncprobe binary on it and
// compare the async stacks it reports with the ones the fixture built, frame by frame: function,
// file:line of the co_await (taken from the `// @await` markers in the fixture's source), state
// and counts. Every compiler x optimisation variant the fixtures were built in is checked.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/integration/fixture_process.h"
#include "tests/integration/source_markers.h"

namespace asyncprobe::testing {
namespace {

using nlohmann::json;

json snapshot_json(pid_t pid, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> argv = {asyncprobe_binary(), "-p", std::to_string(pid), "--json",
                                   "--window", "0"};
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
  std::string where = s["line"].get<int>() != 0
                          ? short_file(s["file"].get<std::string>()) + ":" +
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
    FixtureProcess fx({fixture_path(GetParam(), "chain"), "--depth", std::to_string(depth),
                       "--count", "3"});
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
                         ::testing::ValuesIn(fixture_variants_with("chain")),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) {
                             if (c == '-') c = '_';
                           }
                           return n;
                         });

TEST(Snapshot, TextReportCoalescesIdenticalStacks) {
  FixtureProcess fx({fixture_path("gcc12-O2", "chain"), "--depth", "4", "--count", "50"});
  RunResult r = run_command(
      {asyncprobe_binary(), "-p", std::to_string(fx.pid()), "--window", "0"});
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
