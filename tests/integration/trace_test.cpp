// End-to-end `asyncprobe trace`: the real BPF programs, loaded as root, against fixture processes
// with a known schedule (tests/fixtures/trace_schedule.cpp), compared exactly: resume counts per
// function and suspend point, destroys, suspended intervals, the known blocking call
// (sleep_for(150ms) inside a coroutine: syscall, duration within 10%, file:line, async stack),
// the known stalls and who caused them, the coroutines still suspended at the end, the timeline
// file (checked against tests/fixtures/trace_event_schema.json with ajv when npm can install it,
// and by the checks here in any case), and that no probe outlives the tracer (normal end,
// SIGTERM, kill -9), nor the target's exit.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "tests/integration/fixture_process.h"
#include "tests/integration/source_markers.h"
#include "tests/integration/trace_support.h"
#include "userspace/snapshot/snapshot_taker.h"

namespace asyncprobe::testing {
namespace {

using nlohmann::json;

const char kSource[] = "tests/fixtures/trace_schedule.cpp";
constexpr long kTicks = 5;

std::string base_name(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// The function entry whose name is `name` (or starts with `name` when it ends with '(').
const json* function_named(const json& report, const std::string& name) {
  for (const auto& f : report["functions"]) {
    const std::string n = f["function"].get<std::string>();
    if (n == name || (name.back() == '(' && n.rfind(name, 0) == 0)) return &f;
  }
  return nullptr;
}

// Resumes at the suspend point on a source line (0 = the initial suspend point).
const json* point_at_line(const json& fn, int line) {
  for (const auto& p : fn["suspend_points"]) {
    if (p["line"].get<int>() == line &&
        base_name(p["file"].get<std::string>()) == base_name(kSource)) {
      return &p;
    }
  }
  return nullptr;
}

const json* initial_point(const json& fn) {
  for (const auto& p : fn["suspend_points"]) {
    if (p["kind"] == "initial") return &p;
  }
  return nullptr;
}

int marker(const std::string& name) { return marker_line(source_file(kSource), name); }

struct ScheduleRun {
  json report;
  json timeline;
  std::string timeline_path;
  std::string text_err;
  ProcessExit exit;
};

// Starts the fixture, attaches the tracer, runs the schedule, stops the tracer with `stop_sig`.
ScheduleRun run_schedule(const std::string& variant, ScratchDir& dir, int stop_sig = SIGINT,
                         const std::vector<std::string>& env = {}) {
  ScheduleRun run;
  FixtureProcess fx({fixture_path(variant, "trace_schedule"), "--ticks", std::to_string(kTicks)});
  run.timeline_path = dir.file("timeline.json");
  TracerProcess tracer({"-p", std::to_string(fx.pid()), "--json", "-o", dir.file("report.json"),
                        "--timeline", run.timeline_path},
                       dir.path(), env);
  EXPECT_TRUE(tracer.wait_attached()) << tracer.err();
  ::kill(fx.pid(), SIGUSR1);
  std::optional<std::string> done;
  for (int i = 0; i < 100 && !done; ++i) {
    auto line = fx.read_line(std::chrono::seconds(10));
    if (!line) break;
    if (line->rfind("DONE", 0) == 0) done = line;
  }
  EXPECT_TRUE(done.has_value()) << "the fixture never finished its schedule";
  // The waiters are spawned just before DONE and run at the loop's next turn.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  tracer.signal(stop_sig);
  auto exit = tracer.wait_exit(std::chrono::seconds(60));
  EXPECT_TRUE(exit.has_value()) << "tracer did not stop";
  if (exit) run.exit = *exit;
  run.text_err = tracer.err();
  std::string body = read_file(dir.file("report.json"));
  run.report = json::parse(body.empty() ? "{}" : body);
  std::string tl = read_file(run.timeline_path);
  run.timeline = json::parse(tl.empty() ? "{}" : tl);
  EXPECT_TRUE(fx.running()) << "the traced fixture died";
  return run;
}

class TraceSchedule : public ::testing::TestWithParam<std::string> {};

TEST_P(TraceSchedule, ExactCountsBlockingCallsStallsAndSuspendedAtEnd) {
  ScratchDir dir;
  ScheduleRun run = run_schedule(GetParam(), dir);
  ASSERT_EQ(run.exit.exit_code, 0) << run.text_err;
  const json& r = run.report;
  ASSERT_TRUE(r.contains("functions")) << run.text_err;
  EXPECT_EQ(r["events"]["lost"].get<uint64_t>(), 0u);
  EXPECT_EQ(r["events"]["malformed_records"].get<uint64_t>(), 0u);

  struct Want {
    std::string fn;
    uint64_t resumes;
    uint64_t destroys;
  };
  // Clang 19 at -O2 allocates the awaited tasks' frames inside the awaiting frame and destroys
  // them inline (no call of a destroy function): nothing to count there.
  const uint64_t d = GetParam() == "clang19-O2" ? 0 : 1;
  const std::vector<Want> want = {
      {"ticker(int)", 3 * (1 + kTicks), 0},
      {"schedule(", 6, 0},
      {"parent()", 2, d},
      {"child()", 2, d},
      {"blocking_parent()", 2, d},
      {"blocker()", 1, d},
      {"spinner()", 1, d},
      {"waiter(int)", 2, 0},
  };
  for (const auto& w : want) {
    const json* f = function_named(r, w.fn);
    ASSERT_NE(f, nullptr) << w.fn << " missing from the report";
    EXPECT_EQ((*f)["resumes"].get<uint64_t>(), w.resumes) << w.fn;
    EXPECT_EQ((*f)["destroys"].get<uint64_t>(), w.destroys) << w.fn;
  }
  EXPECT_EQ(function_named(r, "idle_before()"), nullptr) << "idle_before() never resumes";

  // Per suspend point, with exact suspended intervals.
  const json& ticker = *function_named(r, "ticker(int)");
  const json* tick = point_at_line(ticker, marker("ticker_sleep"));
  ASSERT_NE(tick, nullptr) << ticker.dump(2);
  EXPECT_EQ((*tick)["resumes"].get<uint64_t>(), 3 * kTicks);
  EXPECT_EQ((*tick)["suspended"]["count"].get<uint64_t>(), 3 * kTicks);
  EXPECT_EQ((*tick)["suspended_unknown_start"].get<uint64_t>(), 0u);
  EXPECT_GE((*tick)["suspended"]["p50_ns"].get<uint64_t>(), 10'000'000u);
  EXPECT_GE((*tick)["suspended"]["total_ns"].get<uint64_t>(), 3 * kTicks * 10'000'000u);
  EXPECT_LT((*tick)["suspended"]["p50_ns"].get<uint64_t>(), 60'000'000u);
  const json* tick0 = initial_point(ticker);
  ASSERT_NE(tick0, nullptr);
  EXPECT_EQ((*tick0)["resumes"].get<uint64_t>(), 3u);

  const json& child = *function_named(r, "child()");
  const json* child_sleep = point_at_line(child, marker("child_sleep"));
  ASSERT_NE(child_sleep, nullptr) << child.dump(2);
  EXPECT_EQ((*child_sleep)["resumes"].get<uint64_t>(), 1u);
  EXPECT_GE((*child_sleep)["suspended"]["max_ns"].get<uint64_t>(), 20'000'000u);
  EXPECT_LT((*child_sleep)["suspended"]["max_ns"].get<uint64_t>(), 80'000'000u);

  // parent() waits for child() exactly as long as child() needs: resumed once at the await.
  const json& parent = *function_named(r, "parent()");
  const json* pc = point_at_line(parent, marker("parent_calls_child"));
  ASSERT_NE(pc, nullptr);
  EXPECT_EQ((*pc)["resumes"].get<uint64_t>(), 1u);
  EXPECT_GE((*pc)["suspended"]["max_ns"].get<uint64_t>(), 20'000'000u);

  const json& sched = *function_named(r, "schedule(");
  for (const char* m :
       {"schedule_waits_tickers", "schedule_calls_parent", "schedule_calls_blocking_parent",
        "schedule_pause", "schedule_calls_spinner"}) {
    const json* p = point_at_line(sched, marker(m));
    ASSERT_NE(p, nullptr) << m;
    EXPECT_EQ((*p)["resumes"].get<uint64_t>(), 1u) << m;
  }
  // The spinner ran ~200 ms of CPU; the blocker ~150 ms, off the CPU.
  const json& spinner = *function_named(r, "spinner()");
  EXPECT_GE(spinner["running_ns"].get<uint64_t>(), 200'000'000u);
  const json& blocker = *function_named(r, "blocker()");
  EXPECT_GE(blocker["running_ns"].get<uint64_t>(), 150'000'000u);
  EXPECT_GE(blocker["offcpu_ns"].get<uint64_t>(), 135'000'000u);

  // The one blocking call inside a coroutine.
  ASSERT_EQ(r["blocking_calls"].size(), 1u) << r["blocking_calls"].dump(2);
  const json& b = r["blocking_calls"][0];
  const std::string sc = b["syscall"].get<std::string>();
  EXPECT_TRUE(sc == "nanosleep" || sc == "clock_nanosleep") << sc;
  EXPECT_EQ(b["function"], "blocker()");
  const double dur = static_cast<double>(b["duration_ns"].get<uint64_t>());
  EXPECT_GE(dur, 150e6);
  EXPECT_LE(dur, 165e6);
  ASSERT_FALSE(b["site"].is_null()) << b.dump(2);
  EXPECT_EQ(base_name(b["site"]["file"].get<std::string>()), base_name(kSource));
  EXPECT_EQ(b["site"]["line"].get<int>(), line_marker(source_file(kSource), "blocker_sleep"))
      << b["stack"].dump(2);
  ASSERT_EQ(b["async_stack"].size(), 3u) << b["async_stack"].dump(2);
  EXPECT_EQ(b["async_stack"][0]["function"], "blocker()");
  EXPECT_EQ(b["async_stack"][0]["state"], "running");
  EXPECT_EQ(b["async_stack"][1]["function"], "blocking_parent()");
  EXPECT_EQ(b["async_stack"][1]["line"].get<int>(), marker("blocking_parent_calls_blocker"));
  EXPECT_EQ(b["async_stack"][2]["line"].get<int>(), marker("schedule_calls_blocking_parent"));

  // Two stalls of the loop thread: blocker() ~150 ms, spinner() ~200 ms.
  std::map<std::string, double> stalls;
  for (const auto& s : r["stalls"]) {
    if (s["responsible"].is_null()) continue;
    const std::string fn = s["responsible"]["function"].get<std::string>();
    stalls[fn] = std::max(stalls[fn], static_cast<double>(s["duration_ns"].get<uint64_t>()));
    EXPECT_EQ(s["tid"].get<int>(), static_cast<int>(run.report["pid"].get<int>()));
  }
  ASSERT_EQ(stalls.count("blocker()"), 1u) << r["stalls"].dump(2);
  ASSERT_EQ(stalls.count("spinner()"), 1u) << r["stalls"].dump(2);
  // A stall also holds the runs around the culprit's and the loop's way back to its wait: bounded
  // loosely above (the machine may be busy), exactly below.
  EXPECT_GE(stalls["blocker()"], 150e6);
  EXPECT_LE(stalls["blocker()"], 250e6);
  EXPECT_GE(stalls["spinner()"], 200e6);
  EXPECT_LE(stalls["spinner()"], 300e6);
  EXPECT_EQ(r["stalls"].size(), 2u) << r["stalls"].dump(2);

  // Still suspended at the end: the two waiters, each a root of its own, merged into one group
  // (exact ages: both ran during the trace), and idle_before() (suspended before the trace).
  const json& at_end = r["suspended_at_end"];
  EXPECT_EQ(at_end["coroutines"].get<int>(), 3) << at_end.dump(2);
  EXPECT_EQ(at_end["stacks"].get<int>(), 3);
  ASSERT_EQ(at_end["groups"].size(), 2u) << at_end.dump(2);
  const json& before = at_end["groups"][0];
  EXPECT_EQ(before["function"], "idle_before()");
  EXPECT_EQ(before["age_kind"], "before-trace");
  EXPECT_EQ(before["count"].get<int>(), 1);
  EXPECT_EQ(before["line"].get<int>(), marker("idle_before_park"));
  const json& waiters = at_end["groups"][1];
  EXPECT_EQ(waiters["function"], "waiter(int)");
  EXPECT_EQ(waiters["age_kind"], "exact");
  EXPECT_EQ(waiters["count"].get<int>(), 2);
  EXPECT_EQ(waiters["depth"].get<int>(), 1);
  EXPECT_EQ(waiters["frames"].size(), 2u);
  EXPECT_EQ(waiters["line"].get<int>(), marker("waiter_park"));
  EXPECT_GT(waiters["age_min_ns"].get<uint64_t>(), 0u);
  EXPECT_LT(waiters["age_ns"].get<uint64_t>(), 30'000'000'000u);
  // They were suspended after the trace began, after the schedule's 200+ ms of stalls.
  EXPECT_GT(waiters["since_s"][0].get<double>(), 0.3);

  // Attaching is reported.
  EXPECT_GT(r["attach"]["uprobes"].get<int>(), 0);
  EXPECT_GT(r["attach"]["attach_s"].get<double>(), 0.0);
  EXPECT_EQ(r["attach"]["uprobes_failed"].get<int>(), 0);
  EXPECT_GT(r["overhead"]["estimated_ns"].get<double>(), 0.0);
}

// Kernels without uprobe_multi get one perf-event link per probe site: the same results.
TEST(TraceSchedulePerfLinks, SameCountsWithOneLinkPerSite) {
  ScratchDir dir;
  ScheduleRun run = run_schedule("gcc12-O2", dir, SIGINT, {"ASYNCPROBE_UPROBE_MODE=perf"});
  ASSERT_EQ(run.exit.exit_code, 0) << run.text_err;
  const json& r = run.report;
  EXPECT_FALSE(r["attach"]["uprobe_multi"].get<bool>());
  EXPECT_GT(r["attach"]["uprobes"].get<int>(), 0);
  const json* ticker = function_named(r, "ticker(int)");
  ASSERT_NE(ticker, nullptr);
  EXPECT_EQ((*ticker)["resumes"].get<uint64_t>(), 3 * (1 + kTicks));
  const json* sched = function_named(r, "schedule(");
  ASSERT_NE(sched, nullptr);
  EXPECT_EQ((*sched)["resumes"].get<uint64_t>(), 6u);
  EXPECT_EQ(r["blocking_calls"].size(), 1u);
  EXPECT_EQ(r["stalls"].size(), 2u);
  EXPECT_EQ(r["events"]["lost"].get<uint64_t>(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Variants, TraceSchedule,
                         ::testing::ValuesIn(fixture_variants_with("trace_schedule")),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

// ---- Timeline -------------------------------------------------------------------------------

// ajv (npm ajv-cli) installed into the build tree on first use; empty when npm cannot.
std::string ajv_binary() {
  static std::optional<std::string> cached;
  if (cached) return *cached;
  const std::string prefix = fixture_dir() + "/../trace-npm";
  const std::string bin = prefix + "/node_modules/.bin/ajv";
  if (access(bin.c_str(), X_OK) != 0) {
    RunResult r = run_command({"npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix",
                               prefix, "ajv-cli@5.0.0"},
                              std::chrono::seconds(300));
    if (r.exit.exit_code != 0) std::cerr << "npm install ajv-cli failed: " << r.err << "\n";
  }
  cached = access(bin.c_str(), X_OK) == 0 ? bin : std::string();
  return *cached;
}

struct Slice {
  std::string name, cat;
  int64_t tid = 0;
  double ts = 0, dur = 0;
  json args;
};

// The innermost X slice of `tid` that encloses ts.
const Slice* enclosing(const std::vector<Slice>& slices, int64_t tid, double ts) {
  const Slice* best = nullptr;
  for (const auto& s : slices) {
    if (s.tid != tid || ts < s.ts || ts > s.ts + s.dur) continue;
    if (best == nullptr || s.dur < best->dur) best = &s;
  }
  return best;
}

TEST(TraceTimeline, ValidatesAgainstTheFormatAndShowsRunsFlowsBlockingAndStalls) {
  ScratchDir dir;
  ScheduleRun run = run_schedule("gcc12-O2", dir);
  ASSERT_EQ(run.exit.exit_code, 0) << run.text_err;
  const std::string schema = source_file("tests/fixtures/trace_event_schema.json");

  // A real validator against the schema written from the published format.
  const std::string ajv = ajv_binary();
  if (!ajv.empty()) {
    RunResult v = run_command(
        {ajv, "validate", "--spec=draft7", "--strict=false", "-s", schema, "-d", run.timeline_path},
        std::chrono::seconds(120));
    EXPECT_EQ(v.exit.exit_code, 0) << v.out << v.err;
    // ... and the validator does reject what breaks the format.
    json broken = run.timeline;
    broken["traceEvents"].push_back(
        json{{"name", "x"}, {"ph", "X"}, {"pid", 1}, {"tid", 1}, {"ts", 1}});
    std::ofstream(dir.file("broken.json")) << broken.dump();
    RunResult bad = run_command({ajv, "validate", "--spec=draft7", "--strict=false", "-s", schema,
                                 "-d", dir.file("broken.json")},
                                std::chrono::seconds(120));
    EXPECT_NE(bad.exit.exit_code, 0) << "an X event without dur must not validate";
  } else {
    std::cerr << "ajv unavailable (npm could not install ajv-cli): structural checks only\n";
  }

  // Structure, independently of the validator.
  const json& tl = run.timeline;
  ASSERT_TRUE(tl.contains("traceEvents"));
  ASSERT_TRUE(tl["traceEvents"].is_array());
  std::vector<Slice> slices;
  std::map<std::string, std::vector<json>> flows;  // id -> s/f events
  std::set<int64_t> named_threads, used_threads;
  for (const auto& e : tl["traceEvents"]) {
    const std::string ph = e["ph"].get<std::string>();
    ASSERT_TRUE(e["pid"].is_number_integer());
    ASSERT_TRUE(e["tid"].is_number_integer());
    if (ph == "M") {
      if (e["name"] == "thread_name") named_threads.insert(e["tid"].get<int64_t>());
      continue;
    }
    used_threads.insert(e["tid"].get<int64_t>());
    ASSERT_TRUE(e["ts"].is_number()) << e.dump();
    if (ph == "X") {
      ASSERT_TRUE(e["dur"].is_number() && e["dur"].get<double>() >= 0) << e.dump();
      slices.push_back(Slice{e["name"], e["cat"], e["tid"].get<int64_t>(), e["ts"].get<double>(),
                             e["dur"].get<double>(), e.value("args", json::object())});
    } else if (ph == "s" || ph == "f") {
      flows[e["id"].dump()].push_back(e);
    } else {
      ADD_FAILURE() << "unexpected phase " << ph;
    }
  }
  for (int64_t t : used_threads) EXPECT_EQ(named_threads.count(t), 1u) << "thread " << t;
  // Slices of one thread nest: two are disjoint or one holds the other.
  for (size_t i = 0; i < slices.size(); ++i) {
    for (size_t j = i + 1; j < slices.size(); ++j) {
      const Slice& a = slices[i];
      const Slice& b = slices[j];
      if (a.tid != b.tid) continue;
      const double a1 = a.ts + a.dur, b1 = b.ts + b.dur;
      constexpr double eps = 0.0005;  // half a nanosecond: the file has ns decimals
      const bool disjoint = a1 <= b.ts + eps || b1 <= a.ts + eps;
      const bool nested =
          (a.ts <= b.ts + eps && b1 <= a1 + eps) || (b.ts <= a.ts + eps && a1 <= b1 + eps);
      EXPECT_TRUE(disjoint || nested) << a.name << " [" << a.ts << "," << a1 << "] vs " << b.name
                                      << " [" << b.ts << "," << b1 << "]";
    }
  }
  // One slice per run: tickers resumed 3 * (1 + R) times.
  size_t ticker_runs = 0;
  for (const auto& sl : slices) {
    if (sl.name == "ticker(int)" && sl.cat == "coroutine" &&
        sl.args.value("resumed_from", "") != "start") {
      ++ticker_runs;
    }
  }
  EXPECT_EQ(ticker_runs, static_cast<size_t>(3 * (1 + kTicks)));
  // The blocking call, inside the run of blocker(); the two stalls.
  size_t blocking = 0, stalls = 0;
  for (const auto& sl : slices) {
    if (sl.cat == "blocking") {
      ++blocking;
      EXPECT_GE(sl.dur, 150e3);
      EXPECT_LE(sl.dur, 165e3);
      const Slice* in = nullptr;
      for (const auto& o : slices) {
        if (o.tid == sl.tid && o.cat == "coroutine" && o.ts <= sl.ts &&
            sl.ts + sl.dur <= o.ts + o.dur && (in == nullptr || o.dur < in->dur)) {
          in = &o;
        }
      }
      ASSERT_NE(in, nullptr);
      EXPECT_EQ(in->name, "blocker()");
    }
    if (sl.cat == "stall") ++stalls;
  }
  EXPECT_EQ(blocking, 1u);
  EXPECT_EQ(stalls, 2u);
  // Flows pair up (same cat and name), start inside the awaiter's run and end inside the awaited
  // one's; parent() -> child() and blocking_parent() -> blocker() are among them.
  std::set<std::pair<std::string, std::string>> links;
  for (const auto& [id, evs] : flows) {
    ASSERT_EQ(evs.size(), 2u) << id;
    const json& s0 = evs[0]["ph"] == "s" ? evs[0] : evs[1];
    const json& f0 = evs[0]["ph"] == "s" ? evs[1] : evs[0];
    ASSERT_EQ(s0["ph"], "s");
    ASSERT_EQ(f0["ph"], "f");
    EXPECT_EQ(f0["bp"], "e");
    EXPECT_EQ(s0["cat"], f0["cat"]);
    EXPECT_EQ(s0["name"], f0["name"]);
    const Slice* from = enclosing(slices, s0["tid"].get<int64_t>(), s0["ts"].get<double>());
    const Slice* to = enclosing(slices, f0["tid"].get<int64_t>(), f0["ts"].get<double>());
    ASSERT_NE(from, nullptr) << s0.dump();
    ASSERT_NE(to, nullptr) << f0.dump();
    links.emplace(from->name, to->name);
  }
  EXPECT_EQ(links.count({"parent()", "child()"}), 1u);
  EXPECT_EQ(links.count({"blocking_parent()", "blocker()"}), 1u);
}

// ---- Safety: no probe outlives the tracer ---------------------------------------------------

// Bytes of the target's code at every probed resume function differ from the file (an int3 is
// there) iff a uprobe is installed in it.
size_t probed_sites(pid_t pid) {
  snapshot::SnapshotTaker taker(snapshot::SnapshotSession{pid, {}});
  snapshot::SnapshotError err;
  if (!taker.attach(&err)) return SIZE_MAX;
  size_t changed = 0;
  const std::string mem = "/proc/" + std::to_string(pid) + "/mem";
  int fd = open(mem.c_str(), O_RDONLY);
  if (fd < 0) return SIZE_MAX;
  for (const auto& loaded : taker.index().catalogs()) {
    const symbolizer::ElfObject& obj = loaded->catalog->module().object();
    for (const auto& fn : loaded->catalog->functions()) {
      std::vector<uint8_t> file_bytes;
      if (!obj.read_code(fn.resume, 1, &file_bytes) || file_bytes.size() != 1) continue;
      uint8_t live = 0;
      if (pread(fd, &live, 1, static_cast<off_t>(fn.resume + loaded->bias)) != 1) continue;
      if (live != file_bytes[0]) ++changed;
    }
  }
  close(fd);
  return changed;
}

void expect_all_gone(const BpfHoldings& held) {
  // Closing uprobes, and freeing a program once its last link and fd are gone, wait for RCU
  // grace periods: allow a few seconds for both.
  for (int i = 0; i < 100; ++i) {
    bool any = false;
    for (unsigned id : held.links) any |= bpf_link_exists(id);
    for (unsigned id : held.progs) any |= bpf_prog_exists(id);
    if (!any) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (unsigned id : held.links) EXPECT_FALSE(bpf_link_exists(id)) << "link " << id << " left";
  for (unsigned id : held.progs) EXPECT_FALSE(bpf_prog_exists(id)) << "program " << id << " left";
  std::string events = read_file("/sys/kernel/tracing/uprobe_events");
  EXPECT_EQ(events.find("libbpf"), std::string::npos) << events;
}

void check_stop(int sig, bool expect_report) {
  ScratchDir dir;
  FixtureProcess fx({fixture_path("gcc12-O2", "trace_schedule")});
  EXPECT_EQ(probed_sites(fx.pid()), 0u);
  TracerProcess tracer({"-p", std::to_string(fx.pid()), "--json", "--no-calibrate"}, dir.path());
  ASSERT_TRUE(tracer.wait_attached()) << tracer.err();
  BpfHoldings held = bpf_holdings(tracer.pid());
  EXPECT_GE(held.links.size(), 5u);
  EXPECT_GE(held.progs.size(), 5u);
  EXPECT_GT(probed_sites(fx.pid()), 0u) << "uprobes installed while tracing";
  tracer.signal(sig);
  auto exit = tracer.wait_exit(std::chrono::seconds(120));
  ASSERT_TRUE(exit.has_value());
  if (expect_report) {
    EXPECT_EQ(exit->exit_code, 0) << tracer.err();
    json r = json::parse(tracer.out());
    EXPECT_EQ(r["pid"].get<int>(), fx.pid());
  } else {
    EXPECT_EQ(exit->term_signal, sig);
  }
  expect_all_gone(held);
  EXPECT_EQ(probed_sites(fx.pid()), 0u) << "an int3 is left in the target's code";
  // The target runs on, unchanged: its schedule still completes.
  ASSERT_TRUE(fx.running());
  ::kill(fx.pid(), SIGUSR1);
  bool done = false;
  for (int i = 0; i < 20 && !done; ++i) {
    auto line = fx.read_line(std::chrono::seconds(10));
    if (!line) break;
    done = line->rfind("DONE", 0) == 0;
  }
  EXPECT_TRUE(done);
}

TEST(TraceSafety, KillNineLeavesNoProbeBehind) { check_stop(SIGKILL, false); }
TEST(TraceSafety, SigtermEndsWithAReportAndNoProbe) { check_stop(SIGTERM, true); }
TEST(TraceSafety, CtrlCEndsWithAReportAndNoProbe) { check_stop(SIGINT, true); }

TEST(TraceSafety, DurationEndsTheTrace) {
  ScratchDir dir;
  FixtureProcess fx({fixture_path("gcc12-O2", "trace_schedule")});
  auto t0 = std::chrono::steady_clock::now();
  TracerProcess tracer({"-p", std::to_string(fx.pid()), "-d", "1s", "--no-calibrate"}, dir.path());
  auto exit = tracer.wait_exit(std::chrono::seconds(120));
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->exit_code, 0) << tracer.err();
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
  EXPECT_NE(tracer.out().find("asyncprobe trace: pid"), std::string::npos) << tracer.out();
  EXPECT_NE(tracer.out().find("EVENTS:"), std::string::npos);
  EXPECT_NE(tracer.out().find("OVERHEAD:"), std::string::npos);
}

TEST(TraceSafety, TargetExitEndsTheTraceWithWhatWasCollected) {
  ScratchDir dir;
  FixtureProcess fx({fixture_path("gcc12-O2", "trace_schedule"), "--exit-after-schedule", "1"});
  TracerProcess tracer({"-p", std::to_string(fx.pid()), "--json", "--no-calibrate"}, dir.path());
  ASSERT_TRUE(tracer.wait_attached()) << tracer.err();
  ::kill(fx.pid(), SIGUSR1);
  auto fexit = fx.wait_exit(std::chrono::seconds(30));
  ASSERT_TRUE(fexit.has_value());
  EXPECT_EQ(fexit->exit_code, 0);
  auto exit = tracer.wait_exit(std::chrono::seconds(60));
  ASSERT_TRUE(exit.has_value()) << "the trace did not end with its target";
  EXPECT_EQ(exit->exit_code, 0) << tracer.err();
  json r = json::parse(tracer.out());
  EXPECT_TRUE(r["target_exited"].get<bool>());
  const json* ticker = function_named(r, "ticker(int)");
  ASSERT_NE(ticker, nullptr);
  EXPECT_EQ((*ticker)["resumes"].get<uint64_t>(), 3 * (1 + kTicks));
  EXPECT_EQ(r["blocking_calls"].size(), 1u);
}

// ---- Errors ---------------------------------------------------------------------------------

TEST(TraceErrors, WithoutPrivilegesSaysWhatIsNeeded) {
  FixtureProcess fx({fixture_path("gcc12-O2", "trace_schedule")});
  std::vector<std::string> argv = {"setpriv",        "--reuid=65534",   "--regid=65534",
                                   "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"};
  for (const auto& a : tracer_argv()) argv.push_back(a);
  argv.insert(argv.end(), {"-p", std::to_string(fx.pid())});
  RunResult r = run_command(argv, std::chrono::seconds(60));
  if (r.exit.exit_code == 126 || r.exit.exit_code == 127) {
    GTEST_SKIP() << "uid 65534 cannot execute the tracer from this build tree: " << r.err;
  }
  EXPECT_EQ(r.exit.exit_code, 4) << r.out << r.err;
  EXPECT_NE(r.err.find("CAP_BPF and CAP_PERFMON"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST(TraceErrors, WithoutKernelBtfSaysSo) {
  FixtureProcess fx({fixture_path("gcc12-O2", "trace_schedule")});
  std::vector<std::string> argv = {"env", "ASYNCPROBE_VMLINUX_BTF=/nonexistent/vmlinux"};
  for (const auto& a : tracer_argv()) argv.push_back(a);
  argv.insert(argv.end(), {"-p", std::to_string(fx.pid())});
  RunResult r = run_command(argv, std::chrono::seconds(60));
  EXPECT_EQ(r.exit.exit_code, 6) << r.out << r.err;
  EXPECT_NE(r.err.find("BTF"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST(TraceErrors, BadTargets) {
  std::vector<std::string> argv = tracer_argv();
  std::vector<std::string> none = argv;
  none.insert(none.end(), {"-p", "999999999"});
  RunResult r = run_command(none, std::chrono::seconds(60));
  EXPECT_EQ(r.exit.exit_code, 3) << r.err;  // no such process
  FixtureProcess plain({fixture_path("gcc12-O2", "nocoro")});
  std::vector<std::string> nocoro = argv;
  nocoro.insert(nocoro.end(), {"-p", std::to_string(plain.pid())});
  r = run_command(nocoro, std::chrono::seconds(60));
  EXPECT_EQ(r.exit.exit_code, 7) << r.err;
  std::vector<std::string> usage = argv;
  usage.push_back("--frobnicate");
  r = run_command(usage, std::chrono::seconds(60));
  EXPECT_EQ(r.exit.exit_code, 2);
}

// ---- Scale ----------------------------------------------------------------------------------

TEST(TraceScale, AttachesToThousandsOfFunctionsAndCountsEachResume) {
  ScratchDir dir;
  FixtureProcess fx({fixture_path("gcc12-O0", "trace_many")});
  const long n = fx.token_int("functions");
  TracerProcess tracer({"-p", std::to_string(fx.pid()), "--json", "--no-calibrate"}, dir.path());
  ASSERT_TRUE(tracer.wait_attached(std::chrono::seconds(300))) << tracer.err();
  ::kill(fx.pid(), SIGUSR1);
  auto line = fx.read_line(std::chrono::seconds(60));
  ASSERT_TRUE(line.has_value());
  EXPECT_EQ(*line, "DONE resumed=" + std::to_string(n));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  BpfHoldings held = bpf_holdings(tracer.pid());
  tracer.signal(SIGINT);
  auto exit = tracer.wait_exit(std::chrono::seconds(300));
  ASSERT_TRUE(exit.has_value());
  ASSERT_EQ(exit->exit_code, 0) << tracer.err();
  json r = json::parse(tracer.out());
  EXPECT_GE(r["attach"]["uprobes"].get<long>(), 2 * n);  // a resume and a destroy probe each
  EXPECT_EQ(r["attach"]["uprobes_failed"].get<long>(), 0);
  EXPECT_GT(r["attach"]["attach_s"].get<double>(), 0.0);
  EXPECT_EQ(r["events"]["lost"].get<uint64_t>(), 0u);
  long once = 0;
  for (const auto& f : r["functions"]) {
    if (f["function"].get<std::string>().find(" step<") == std::string::npos) continue;
    if (f["resumes"].get<uint64_t>() == 1) ++once;
  }
  EXPECT_EQ(once, n);
  std::cerr << "attached " << r["attach"]["uprobes"] << " uprobes in " << r["attach"]["attach_s"]
            << " s, detached in " << r["attach"]["detach_s"] << " s\n";
  expect_all_gone(held);
}
}  // namespace
}  // namespace asyncprobe::testing
