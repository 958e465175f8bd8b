// Diagnoses end to end: fixtures with threads deadlocked on locks, await cycles and failed
// coroutines run as their own processes; asyncprobe --json (two looks) must name exactly the
// threads, locks, frames, exception types and messages the fixture built (tests/fixtures/
// lock_waits.cpp and coro_failures.cpp say what each mode holds), and nothing where there is no
// trouble.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "tests/integration/fixture_process.h"
#include "tests/integration/source_markers.h"

namespace asyncprobe::testing {
namespace {

using nlohmann::json;

json snapshot_json(pid_t pid) {
  RunResult r =
      run_command({asyncprobe_binary(), "-p", std::to_string(pid), "--json", "--window", "0.2"},
                  std::chrono::seconds(120));
  EXPECT_EQ(r.exit.exit_code, 0) << r.err;
  return json::parse(r.out);
}

std::vector<json> of_kind(const json& doc, const std::string& kind) {
  std::vector<json> out;
  for (const json& d : doc["diagnoses"]) {
    if (d["kind"] == kind) out.push_back(d);
  }
  return out;
}

// The lock thread `tid` waits for in the diagnosis.
const json* lock_waited_by(const json& d, long tid) {
  for (const json& l : d["locks"]) {
    for (const json& w : l["waiters"]) {
      if (w.get<long>() == tid) return &l;
    }
  }
  return nullptr;
}

bool native_stack_mentions(const json& doc, long tid, const std::string& word) {
  for (const json& t : doc["threads"]) {
    if (t["tid"].get<long>() != tid) continue;
    for (const json& f : t["native_stack"]) {
      if (f["function"].is_string() &&
          f["function"].get<std::string>().find(word) != std::string::npos) {
        return true;
      }
    }
  }
  return false;
}

class LockWaits : public ::testing::TestWithParam<std::string> {
 protected:
  std::string exe() const { return fixture_path(GetParam(), "lock_waits"); }
};

TEST_P(LockWaits, TwoThreadMutexDeadlock) {
  FixtureProcess p({exe(), "mutex2"});
  const long a = p.token_int("a"), b = p.token_int("b");
  json doc = snapshot_json(p.pid());
  ASSERT_EQ(doc["diagnoses"].size(), 1u) << doc["diagnoses"].dump(1);
  const json& d = doc["diagnoses"][0];
  EXPECT_EQ(d["kind"], "thread_deadlock");
  EXPECT_EQ(d["threads"], json({std::min(a, b), std::max(a, b)}));
  const json* la = lock_waited_by(d, a);
  const json* lb = lock_waited_by(d, b);
  ASSERT_TRUE(la && lb) << d.dump(1);
  EXPECT_EQ((*la)["address"], p.token("m2"));
  EXPECT_EQ((*la)["owner"], b);
  EXPECT_EQ((*la)["type"], "pthread_mutex");
  EXPECT_EQ((*lb)["address"], p.token("m1"));
  EXPECT_EQ((*lb)["owner"], a);
  EXPECT_TRUE(native_stack_mentions(doc, a, "mutex_lock")) << doc["threads"].dump(1);
  EXPECT_TRUE(native_stack_mentions(doc, b, "mutex_lock"));
}

TEST_P(LockWaits, ThreeThreadMutexDeadlock) {
  FixtureProcess p({exe(), "mutex3"});
  const std::vector<long> ring = {p.token_int("a"), p.token_int("b"), p.token_int("c")};
  const std::vector<std::string> wanted = {p.token("m2"), p.token("m3"), p.token("m1")};
  json doc = snapshot_json(p.pid());
  ASSERT_EQ(doc["diagnoses"].size(), 1u) << doc["diagnoses"].dump(1);
  const json& d = doc["diagnoses"][0];
  EXPECT_EQ(d["kind"], "thread_deadlock");
  // The cycle a -> b -> c -> a, read from its lowest tid.
  std::vector<long> expected = ring;
  std::rotate(expected.begin(), std::min_element(expected.begin(), expected.end()), expected.end());
  EXPECT_EQ(d["threads"], json(expected));
  for (size_t i = 0; i < 3; ++i) {
    const json* l = lock_waited_by(d, ring[i]);
    ASSERT_NE(l, nullptr);
    EXPECT_EQ((*l)["address"], wanted[i]);
    EXPECT_EQ((*l)["owner"], ring[(i + 1) % 3]);
  }
}

TEST_P(LockWaits, PiMutexDeadlock) {
  FixtureProcess p({exe(), "pi"});
  const long a = p.token_int("a"), b = p.token_int("b");
  json doc = snapshot_json(p.pid());
  ASSERT_EQ(doc["diagnoses"].size(), 1u) << doc["diagnoses"].dump(1);
  const json& d = doc["diagnoses"][0];
  EXPECT_EQ(d["kind"], "thread_deadlock");
  ASSERT_EQ(d["locks"].size(), 1u);
  const json& l = d["locks"][0];
  EXPECT_EQ(l["type"], "pthread_mutex_pi");
  // The kernel refused one of the two PI locks; the other thread waits in FUTEX_LOCK_PI for the
  // mutex the refused one holds (a holds m1, b holds m2).
  const long owner = l["owner"].get<long>();
  ASSERT_TRUE(owner == a || owner == b);
  const long waiter = owner == a ? b : a;
  EXPECT_EQ(l["address"], p.token(owner == a ? "m1" : "m2"));
  EXPECT_EQ(l["waiters"], json({waiter}));
  EXPECT_EQ(d["threads"], json({owner, waiter}));
}

TEST_P(LockWaits, RwlockWriterInDeadlock) {
  FixtureProcess p({exe(), "rwlock"});
  const long a = p.token_int("a"), b = p.token_int("b");
  json doc = snapshot_json(p.pid());
  ASSERT_EQ(doc["diagnoses"].size(), 1u) << doc["diagnoses"].dump(1);
  const json& d = doc["diagnoses"][0];
  EXPECT_EQ(d["kind"], "thread_deadlock");
  const json* la = lock_waited_by(d, a);
  const json* lb = lock_waited_by(d, b);
  ASSERT_TRUE(la && lb) << d.dump(1);
  EXPECT_EQ((*la)["type"], "pthread_mutex");
  EXPECT_EQ((*la)["address"], p.token("m1"));
  EXPECT_EQ((*la)["owner"], b);
  EXPECT_EQ((*lb)["type"], "pthread_rwlock");
  EXPECT_EQ((*lb)["address"], p.token("rw"));
  EXPECT_EQ((*lb)["owner"], a);
}

TEST_P(LockWaits, WaiterOnExitedOwner) {
  FixtureProcess p({exe(), "dead_owner"});
  json doc = snapshot_json(p.pid());
  ASSERT_EQ(doc["diagnoses"].size(), 1u) << doc["diagnoses"].dump(1);
  const json& d = doc["diagnoses"][0];
  EXPECT_EQ(d["kind"], "lock_owner_gone");
  EXPECT_EQ(d["threads"], json({p.token_int("waiter")}));
  ASSERT_EQ(d["locks"].size(), 1u);
  EXPECT_EQ(d["locks"][0]["address"], p.token("m1"));
  EXPECT_EQ(d["locks"][0]["owner"], p.token_int("owner"));
  EXPECT_EQ(d["locks"][0]["owner_alive"], false);
}

TEST_P(LockWaits, IdleCondvarWaitersAndALiveOwnerAreNoDeadlock) {
  FixtureProcess p({exe(), "no_deadlock"});
  json doc = snapshot_json(p.pid());
  EXPECT_TRUE(doc["diagnoses"].empty()) << doc["diagnoses"].dump(1);
  // The waiter's lock was read (so the empty answer is not blindness): m1, held by the sleeper.
  bool seen = false;
  for (const json& t : doc["threads"]) {
    if (t["tid"].get<long>() != p.token_int("waiter")) continue;
    ASSERT_FALSE(t["lock_wait"].is_null());
    EXPECT_EQ(t["lock_wait"]["address"], p.token("m1"));
    EXPECT_EQ(t["lock_wait"]["owner"], p.token_int("sleeper"));
    seen = true;
  }
  EXPECT_TRUE(seen);
}

INSTANTIATE_TEST_SUITE_P(Variants, LockWaits,
                         ::testing::ValuesIn(fixture_variants_with("lock_waits")),
                         VariantTestName());

class CoroFailures : public ::testing::TestWithParam<std::string> {};

std::string line_of(const std::string& marker) {
  return std::to_string(marker_line(source_file("tests/fixtures/coro_failures.cpp"), marker));
}

std::string function_of(const json& doc, size_t id) {
  std::string f = doc["coroutines"][id]["function"].get<std::string>();
  return f.substr(0, f.find('('));
}

TEST_P(CoroFailures, AwaitCyclesAreDiagnosed) {
  FixtureProcess p({fixture_path(GetParam(), "coro_failures")});
  json doc = snapshot_json(p.pid());
  std::vector<json> cycles = of_kind(doc, "await_cycle");
  ASSERT_EQ(cycles.size(), 2u) << doc["diagnoses"].dump(1);
  std::set<std::vector<std::string>> seen;
  for (const json& c : cycles) {
    std::vector<size_t> ids = c["frame_ids"].get<std::vector<size_t>>();
    std::vector<std::string> names;
    for (size_t k = 0; k < ids.size(); ++k) {
      const json& f = doc["coroutines"][ids[k]];
      names.push_back(function_of(doc, ids[k]));
      // k awaits k+1: k is the awaiter of k+1.
      EXPECT_EQ(doc["coroutines"][ids[(k + 1) % ids.size()]]["awaiter_id"], ids[k]);
      EXPECT_EQ(f["state"], "suspended");
    }
    std::rotate(names.begin(), std::min_element(names.begin(), names.end()), names.end());
    seen.insert(names);
    for (size_t id : ids) {
      const json& f = doc["coroutines"][id];
      const std::string fn = function_of(doc, id);
      const std::string marker = fn == "pair_first"    ? "pair_first_awaits_second"
                                 : fn == "pair_second" ? "pair_second_joins_first"
                                 : fn == "ring_first"  ? "ring_first_awaits_second"
                                 : fn == "ring_second" ? "ring_second_awaits_third"
                                                       : "ring_third_joins_first";
      EXPECT_EQ(std::to_string(f["suspend"]["line"].get<int>()), line_of(marker)) << fn;
    }
  }
  EXPECT_EQ(seen, (std::set<std::vector<std::string>>{
                      {"pair_first", "pair_second"}, {"ring_first", "ring_second", "ring_third"}}));
}

TEST_P(CoroFailures, FailedCoroutinesByTypeAndMessage) {
  FixtureProcess p({fixture_path(GetParam(), "coro_failures")});
  json doc = snapshot_json(p.pid());
  std::vector<json> failed = of_kind(doc, "failed");
  // Every variant: GCC's frame type, clang's frame type at -O0 (clang 19), and otherwise the
  // ramp's `__promise` (clang at -O2, clang 14 at any level, libc++ builds) name the promise.
  for (const json& w : doc["warnings"]) {
    EXPECT_EQ(w.get<std::string>().find("no promise type"), std::string::npos) << w;
  }
  struct Expected {
    std::string type;
    json what;
    std::string function;
    size_t count;
  };
  const std::vector<Expected> expected = {
      {"std::runtime_error", "payment backend refused", "charge_card", 3},
      {"payment_declined", "card expired", "verify_address", 1},
      {"quota_exceeded", nullptr, "reserve_stock", 1},
      {"int", nullptr, "parse_amount", 1}};
  ASSERT_EQ(failed.size(), expected.size()) << doc["diagnoses"].dump(1);
  for (const Expected& e : expected) {
    auto it = std::find_if(failed.begin(), failed.end(),
                           [&](const json& d) { return d["exception"]["type"] == e.type; });
    ASSERT_NE(it, failed.end()) << e.type;
    EXPECT_EQ((*it)["exception"]["what"], e.what) << e.type;
    ASSERT_EQ((*it)["frame_ids"].size(), e.count);
    for (size_t id : (*it)["frame_ids"].get<std::vector<size_t>>()) {
      EXPECT_EQ(function_of(doc, id), e.function);
      EXPECT_EQ(doc["coroutines"][id]["state"], "done");
      EXPECT_EQ(doc["coroutines"][id]["exception"]["type"], e.type);
    }
  }
  size_t clean = 0;
  for (size_t i = 0; i < doc["coroutines"].size(); ++i) {
    if (function_of(doc, i) != "finishes_cleanly") continue;
    ++clean;
    EXPECT_TRUE(doc["coroutines"][i]["exception"].is_null());
  }
  EXPECT_EQ(clean, 2u);
}

TEST_P(CoroFailures, TextReportPutsDiagnosesBeforeTheTrees) {
  FixtureProcess p({fixture_path(GetParam(), "coro_failures")});
  RunResult r =
      run_command({asyncprobe_binary(), "-p", std::to_string(p.pid()), "--window", "0.2"});
  ASSERT_EQ(r.exit.exit_code, 0) << r.err;
  const size_t diagnoses = r.out.find("\nDIAGNOSES\n");
  const size_t stacks = r.out.find("\nASYNC STACKS");
  ASSERT_NE(diagnoses, std::string::npos) << r.out;
  EXPECT_LT(diagnoses, stacks);
  EXPECT_NE(r.out.find("\nawait_cycle: 2 coroutines await each other: "), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("\nawait_cycle: 3 coroutines await each other: "), std::string::npos);
  EXPECT_EQ(r.out.find("torn or hostile"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("stuck frames are in await cycles"), std::string::npos);
  EXPECT_NE(r.out.find("\nfailed: 3 coroutines failed with std::runtime_error: \"payment backend "
                       "refused\" in charge_card(int)\n"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("3x charge_card(int)"), std::string::npos);
  EXPECT_NE(r.out.find("failed: std::runtime_error: \"payment backend refused\""),
            std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Variants, CoroFailures,
                         ::testing::ValuesIn(fixture_variants_with("coro_failures")),
                         VariantTestName());

class Orphans : public ::testing::TestWithParam<std::string> {};

TEST_P(Orphans, DroppedWakeupsAreOrphanedHeldParksAreNot) {
  FixtureProcess p({fixture_path(GetParam(), "orphans")});
  json doc = snapshot_json(p.pid());
  std::map<std::string, int> orphaned, held;
  for (size_t i = 0; i < doc["coroutines"].size(); ++i) {
    (doc["coroutines"][i]["orphaned"].get<bool>() ? orphaned : held)[function_of(doc, i)]++;
  }
  // Clang -O2 may put handler()'s frame inside request()'s allocation (it shares its fate) or
  // elide it entirely (then only request() is seen, and it is where the wakeup was lost).
  EXPECT_EQ(orphaned["request"], 5) << doc["diagnoses"].dump(1);
  EXPECT_TRUE(orphaned["handler"] == 5 || (orphaned["handler"] == 0 && held["handler"] == 0));
  EXPECT_EQ(held["parked_request"], 3);
  EXPECT_EQ(held["parked_step"], 3);
  EXPECT_EQ(held["request"] + held["handler"], 0);
  std::vector<json> d = of_kind(doc, "orphaned");
  ASSERT_EQ(d.size(), 1u) << doc["diagnoses"].dump(1);
  EXPECT_EQ(d[0]["frame_ids"].size(),
            static_cast<size_t>(orphaned["request"] + orphaned["handler"]));
  EXPECT_EQ(doc["diagnoses"].size(), 1u);
  const std::string leaf =
      orphaned["handler"] == 5 ? "handler_loses_wakeup" : "request_calls_handler";
  const std::string src = source_file("tests/fixtures/orphans.cpp");
  EXPECT_NE(d[0]["summary"].get<std::string>().find(":" + std::to_string(marker_line(src, leaf))),
            std::string::npos)
      << d[0]["summary"];
}

INSTANTIATE_TEST_SUITE_P(Variants, Orphans, ::testing::ValuesIn(fixture_variants_with("orphans")),
                         VariantTestName());

// The real-code check: a Boost.Asio server with idle sessions and clients, all suspended in
// socket reads (referenced from Asio's reactor, not from kernel memory): no diagnosis at all.
class AsioServer : public ::testing::TestWithParam<std::string> {};

TEST_P(AsioServer, IdleServerHasNoDiagnoses) {
  FixtureProcess p({fixture_path(GetParam(), "asio_server"), "--clients", "20"});
  json doc = snapshot_json(p.pid());
  EXPECT_GT(doc["coroutines"].size(), 60u);
  EXPECT_TRUE(doc["diagnoses"].empty()) << doc["diagnoses"].dump(1);
}

INSTANTIATE_TEST_SUITE_P(Variants, AsioServer,
                         ::testing::ValuesIn(fixture_variants_with("asio_server")),
                         VariantTestName());

}  // namespace
}  // namespace asyncprobe::testing
