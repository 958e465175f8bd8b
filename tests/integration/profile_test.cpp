// End-to-end `asyncprobe profile` (root, real BPF and perf events) against
// tests/fixtures/profile_burn.cpp on every compiler variant: the CPU profile's dominant stack is
// the hot coroutine with its async parents joined above its resume frame (handle -> render ->
// compute, although only compute is on the thread's stack), each at the file:line of its marker;
// the await profile puts the waiting time on the exact suspend points, and with --trace counts
// every wait exactly; bad input exits with the documented codes.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "tests/integration/fixture_process.h"
#include "tests/integration/source_markers.h"
#include "tests/integration/trace_support.h"

namespace asyncprobe::testing {
namespace {

using nlohmann::json;

const char kSource[] = "tests/fixtures/profile_burn.cpp";
// Fewest samples a CPU profile of the burning fixture must have for its shares to be tested.
constexpr int64_t kMinSamples = 10;

// How long each chain of the fresh mode lives. A refresh waits at least 20 times the last
// snapshot's CPU time (docs/PROFILE.md); under ASan a snapshot costs several times more, so
// chains must live longer for the refresh to find them alive.
#if defined(__SANITIZE_ADDRESS__)
constexpr int kFreshChainMs = 1500;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr int kFreshChainMs = 1500;
#else
constexpr int kFreshChainMs = 200;
#endif
#else
constexpr int kFreshChainMs = 200;
#endif

int marker(const std::string& name) { return marker_line(source_file(kSource), name); }

std::string base_name(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// A frame reduced to what the assertions compare.
struct FrameView {
  std::string kind;
  std::string function;
  std::string file;  // base name
  int line = 0;
  bool operator<(const FrameView& o) const {
    return std::tie(kind, function, file, line) < std::tie(o.kind, o.function, o.file, o.line);
  }
  bool operator==(const FrameView& o) const {
    return kind == o.kind && function == o.function && file == o.file && line == o.line;
  }
};

std::ostream& operator<<(std::ostream& os, const FrameView& f) {
  return os << f.kind << " " << f.function << " " << f.file << ":" << f.line;
}

std::vector<FrameView> frames_of(const json& profile, const json& sample) {
  std::vector<FrameView> out;
  for (const auto& i : sample["frames"]) {
    const json& f = profile["frames"][i.get<size_t>()];
    out.push_back(FrameView{f["kind"].get<std::string>(), f["function"].get<std::string>(),
                            base_name(f["file"].get<std::string>()), f["line"].get<int>()});
  }
  return out;
}

RunResult run_profile(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {asyncprobe_binary(), "profile"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, std::chrono::seconds(60));
}

// The joined part of a CPU sample's stack: the running coroutine's body and the async frames
// above it (the leaf's line inside burn_cpu varies from sample to sample).
std::vector<FrameView> coroutine_part(const std::vector<FrameView>& frames) {
  std::vector<FrameView> part;
  bool in = false;
  for (const FrameView& f : frames) {
    if (f.kind == "coroutine") in = true;
    if (in && f.kind == "native") break;  // the first frame below the joined stack
    if (in) part.push_back(f);
  }
  return part;
}

// Sample counts by coroutine part; *total gets all samples.
std::map<std::vector<FrameView>, int64_t> counts_by_coroutine_part(const json& p, int64_t* total) {
  std::map<std::vector<FrameView>, int64_t> out;
  *total = 0;
  for (const auto& s : p["samples"]) {
    const int64_t count = s["count"].get<int64_t>();
    *total += count;
    out[coroutine_part(frames_of(p, s))] += count;
  }
  return out;
}

std::pair<std::vector<FrameView>, int64_t> heaviest(
    const std::map<std::vector<FrameView>, int64_t>& counts) {
  std::pair<std::vector<FrameView>, int64_t> best{{}, -1};
  for (const auto& [part, n] : counts) {
    if (n > best.second) best = {part, n};
  }
  return best;
}

std::vector<FrameView> joined_compute_stack() {
  return {
      {"coroutine", "compute(long, long)", "profile_burn.cpp", marker("compute_burn")},
      {"async", "render(long, long)", "profile_burn.cpp", marker("render_compute")},
      {"async", "handle(long, long)", "profile_burn.cpp", marker("handle_render")},
  };
}

// request() awaiting query() at request_query, query() waiting at query_wait: leaf first.
std::vector<FrameView> query_wait_stack() {
  return {
      {"async", "query(long)", "profile_burn.cpp", marker("query_wait")},
      {"async", "request(long)", "profile_burn.cpp", marker("request_query")},
  };
}

class ProfileBurn : public ::testing::TestWithParam<std::string> {};

// A 2 s CPU profile of the burning fixture, as JSON, grouped by coroutine part: the dominant
// stack is compute joined under render and handle at their exact lines.
void expect_dominant_joined_stack(const std::string& variant,
                                  const std::vector<std::string>& extra_args, RunResult* run) {
  FixtureProcess fx({fixture_path(variant, "profile_burn")});
  std::vector<std::string> args = {"-p", std::to_string(fx.pid()), "-d", "2", "--format", "json"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  *run = run_profile(args);
  const RunResult& r = *run;
  ASSERT_EQ(r.exit.exit_code, 0) << r.err;
  const json p = json::parse(r.out);
  EXPECT_EQ(p["type"], "cpu");
  EXPECT_EQ(p["frequency_hz"], 99);
  EXPECT_EQ(p["lost_samples"], 0);

  for (const auto& s : p["samples"]) {
    const std::vector<FrameView> frames = frames_of(p, s);
    // handle and render are never on the thread's stack: only ever joined.
    for (const FrameView& f : frames) {
      if (f.function == "handle(long, long)" || f.function == "render(long, long)") {
        EXPECT_EQ(f.kind, "async") << f;
      }
    }
    // Every sample in compute's body burns in burn_cpu (or compute itself).
    if (!frames.empty() && frames[0].function.find("burn_cpu") != std::string::npos) {
      EXPECT_EQ(s["coroutine_function"], "compute(long, long)");
      EXPECT_FALSE(s["async_uncertain"].get<bool>());
    }
  }
  int64_t total = 0;
  const auto best = heaviest(counts_by_coroutine_part(p, &total));
  // 198 on an idle machine; a shared one gives the target less CPU. The floor keeps the share
  // checks below meaningful.
  ASSERT_GE(total, kMinSamples) << "too few samples of a CPU-bound target in 2 s: " << r.err;

  const std::vector<FrameView> want = joined_compute_stack();
  EXPECT_EQ(best.first, want) << r.out.substr(0, 4000);
  // The fixture spends all but the loop's bookkeeping in burn_cpu called at compute_burn.
  EXPECT_GE(best.second * 10, total * 9) << best.second << " of " << total;

  // The leaf of those samples is burn_cpu, called by compute's body.
  bool leaf_seen = false;
  for (const auto& s : p["samples"]) {
    const std::vector<FrameView> frames = frames_of(p, s);
    if (frames.size() < 2 || frames[0].function.find("burn_cpu") == std::string::npos) continue;
    leaf_seen = true;
    size_t i = 1;
    while (i < frames.size() && frames[i].kind == "native") ++i;  // inlined helpers
    ASSERT_LT(i + 2, frames.size());
    EXPECT_EQ(frames[i], want[0]);
    EXPECT_EQ(frames[i + 1], want[1]);
    EXPECT_EQ(frames[i + 2], want[2]);
    ASSERT_LT(i + 3, frames.size());
    EXPECT_EQ(frames[i + 3].kind, "native") << "the event loop resumed compute";
  }
  EXPECT_TRUE(leaf_seen);
}

TEST_P(ProfileBurn, DominantStackIsTheJoinedAsyncStackAtExactLines) {
  if (geteuid() != 0) GTEST_SKIP() << "profile loads BPF: run as root";
  RunResult r;
  expect_dominant_joined_stack(GetParam(), {}, &r);
}

// --trace: the running coroutine comes from the trace probes' per-thread run stack instead of
// the stack words; the same stack, and every sample in compute is named by the probes.
TEST_P(ProfileBurn, TracedRunningCoroutineJoinsTheSameStack) {
  if (geteuid() != 0) GTEST_SKIP() << "profile loads BPF: run as root";
  RunResult r;
  expect_dominant_joined_stack(GetParam(), {"--trace"}, &r);
  // "(N in coroutines, J joined, T named by the trace probes)": only samples of the run that
  // was in progress when the probes attached (at most one 50 ms round) may lack the name.
  const auto at = r.err.find(" in coroutines, ");
  ASSERT_NE(at, std::string::npos) << r.err;
  const auto open = r.err.rfind('(', at);
  ASSERT_NE(open, std::string::npos) << r.err;
  const int64_t in_coroutines = std::stoll(r.err.substr(open + 1));
  const auto named_at = r.err.find(" joined, ", at);
  ASSERT_NE(named_at, std::string::npos) << r.err;
  const int64_t named = std::stoll(r.err.substr(named_at + 9));
  EXPECT_NE(r.err.find(std::to_string(named) + " named by the trace probes"), std::string::npos)
      << r.err;
  EXPECT_GE(named * 10, in_coroutines * 9) << r.err;
}

// The same profile as folded stacks: the heaviest line is the joined stack.
TEST_P(ProfileBurn, FoldedHeaviestLineIsTheJoinedStack) {
  if (geteuid() != 0) GTEST_SKIP() << "profile loads BPF: run as root";
  FixtureProcess fx({fixture_path(GetParam(), "profile_burn")});
  RunResult r = run_profile({"-p", std::to_string(fx.pid()), "-d", "2", "--format", "folded"});
  ASSERT_EQ(r.exit.exit_code, 0) << r.err;
  std::string heaviest;
  long best = -1, total = 0;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) {
    const auto space = line.rfind(' ');
    ASSERT_NE(space, std::string::npos) << line;
    const long n = std::stol(line.substr(space + 1));
    total += n;
    if (n > best) {
      best = n;
      heaviest = line.substr(0, space);
    }
  }
  ASSERT_GE(total, kMinSamples) << r.err;
  EXPECT_NE(
      heaviest.find(
          ";handle(long, long)_[async];render(long, long)_[async];compute(long, long)_[coro];"),
      std::string::npos)
      << heaviest;
  EXPECT_NE(heaviest.find("burn_cpu"), std::string::npos) << heaviest;
  EXPECT_EQ(heaviest.find("_[async?]"), std::string::npos) << heaviest;
}

// Short-lived coroutines: every chain lives one round (kFreshChainMs) at new addresses, so the
// start snapshot never has them; a sample naming an unknown live frame refreshes the snapshot
// (rate-limited), and the samples after that join.
TEST_P(ProfileBurn, FreshCoroutinesJoinAfterASnapshotRefresh) {
  if (geteuid() != 0) GTEST_SKIP() << "profile loads BPF: run as root";
  FixtureProcess fx({fixture_path(GetParam(), "profile_burn"), "--mode", "fresh", "--burn-ms",
                     std::to_string(kFreshChainMs)});
  const std::string seconds = std::to_string(std::max(3, 2 * kFreshChainMs / 1000 + 1));
  RunResult r = run_profile({"-p", std::to_string(fx.pid()), "-d", seconds, "--format", "json"});
  ASSERT_EQ(r.exit.exit_code, 0) << r.err;
  const json p = json::parse(r.out);
  int64_t total = 0;
  const auto counts = counts_by_coroutine_part(p, &total);
  ASSERT_GE(total, kMinSamples) << r.err;
  const auto best = heaviest(counts);
  EXPECT_EQ(best.first, joined_compute_stack()) << r.out.substr(0, 4000);
  EXPECT_GE(best.second * 2, total) << best.second << " of " << total << "; " << r.err;
  // Samples of compute without its parents (a refresh refused by the rate limit) are counted
  // in a warning, never silent.
  bool said = false;
  for (const auto& w : p["warnings"]) {
    said |= w.get<std::string>().find("no snapshot had seen yet") != std::string::npos;
  }
  auto alone = counts.find({joined_compute_stack().front()});
  if (alone != counts.end()) {
    EXPECT_TRUE(said) << alone->second << " unjoined samples; " << p["warnings"].dump();
  }
}

// Where the requests wait: request() at request_query above query() at query_wait, for about
// the whole profile.
TEST_P(ProfileBurn, AwaitProfileAttributesWaitingToExactSuspendPoints) {
  if (geteuid() != 0) GTEST_SKIP() << "reading another process's memory needs root here";
  FixtureProcess fx({fixture_path(GetParam(), "profile_burn"), "--mode", "wait"});
  RunResult r =
      run_profile({"-p", std::to_string(fx.pid()), "-d", "2", "--await", "--format", "json"});
  ASSERT_EQ(r.exit.exit_code, 0) << r.err;
  const json p = json::parse(r.out);
  EXPECT_EQ(p["type"], "await");
  EXPECT_EQ(p["period_ns"], 100'000'000);
  const std::vector<FrameView> want = query_wait_stack();
  int64_t want_ns = 0, other_ns = 0, snapshots = 0;
  for (const auto& s : p["samples"]) {
    if (frames_of(p, s) == want) {
      want_ns += s["value_ns"].get<int64_t>();
      snapshots += s["count"].get<int64_t>();
      EXPECT_FALSE(s["async_uncertain"].get<bool>());
    } else {
      other_ns += s["value_ns"].get<int64_t>();
    }
  }
  EXPECT_EQ(other_ns, 0) << r.out.substr(0, 4000);
  // 10 snapshots a second for 2 s, each weighted by the time since the previous one.
  EXPECT_GE(snapshots, 15);
  EXPECT_LE(snapshots, 21);
  EXPECT_GE(want_ns, 1'500'000'000);
  EXPECT_LE(want_ns, 2'200'000'000);
}

// The value of `key=<number>` in a line of the fixture's output.
int64_t number_after(const std::string& line, const std::string& key) {
  const auto at = line.find(key + "=");
  if (at == std::string::npos) return -1;
  return std::stoll(line.substr(at + key.size() + 1));
}

// Sums an await profile's samples: the ones whose stack is `want`, and all others; no sample
// may have request() waiting at request_query as its leaf (it only ever awaits query).
struct AwaitSums {
  int64_t want_count = 0, want_ns = 0, other_count = 0, other_ns = 0;
};
AwaitSums sum_await_profile(const json& p, const std::vector<FrameView>& want) {
  AwaitSums sums;
  for (const auto& s : p["samples"]) {
    const std::vector<FrameView> frames = frames_of(p, s);
    EXPECT_FALSE(!frames.empty() && frames[0] == want.back()) << "request() as a leaf";
    if (frames == want) {
      sums.want_count += s["count"].get<int64_t>();
      sums.want_ns += s["value_ns"].get<int64_t>();
      EXPECT_FALSE(s["async_uncertain"].get<bool>());
    } else {
      sums.other_count += s["count"].get<int64_t>();
      sums.other_ns += s["value_ns"].get<int64_t>();
    }
  }
  return sums;
}

// --await --trace counts every wait: the fixture waits exactly kRounds times at query_wait
// after the trigger (all inside the profile, which ends with the fixture) and measures them with
// its own clock; the profile has exactly that many waits on request -> query, and their sum
// within 2% of the fixture's own.
TEST_P(ProfileBurn, ExactAwaitProfileCountsEveryWaitOfTheFixture) {
  if (geteuid() != 0) GTEST_SKIP() << "profile --trace loads BPF: run as root";
  constexpr int64_t kRounds = 25;
  FixtureProcess fx({fixture_path(GetParam(), "profile_burn"), "--mode", "waits", "--rounds",
                     std::to_string(kRounds)});
  ScratchDir dir;
  TracerProcess prof({"-p", std::to_string(fx.pid()), "--await", "--trace", "--format", "json"},
                     dir.path(), {}, {asyncprobe_binary(), "profile"});
  ASSERT_TRUE(prof.wait_attached(std::chrono::seconds(60), "exact from the trace probes"))
      << prof.err();
  ASSERT_EQ(::kill(fx.pid(), SIGUSR1), 0);
  const std::optional<std::string> said = fx.read_line(std::chrono::seconds(30));
  ASSERT_TRUE(said.has_value()) << "the fixture did not finish its waits";
  const int64_t fixture_waits = number_after(*said, "query_waits");
  const int64_t fixture_ns = number_after(*said, "query_waited_ns");
  ASSERT_EQ(fixture_waits, kRounds) << *said;
  ASSERT_GT(fixture_ns, 0) << *said;
  const std::optional<ProcessExit> ended = prof.wait_exit(std::chrono::seconds(60));
  ASSERT_TRUE(ended.has_value()) << "the profile did not end with its target: " << prof.err();
  ASSERT_EQ(ended->exit_code, 0) << prof.err();

  const json p = json::parse(prof.out());
  EXPECT_EQ(p["type"], "await");
  const AwaitSums sums = sum_await_profile(p, query_wait_stack());
  EXPECT_EQ(sums.want_count, kRounds) << prof.out().substr(0, 4000);
  EXPECT_NEAR(static_cast<double>(sums.want_ns), static_cast<double>(fixture_ns),
              0.02 * static_cast<double>(fixture_ns));
  // Nothing else waited: request only ever awaited query; the frames left at their final
  // suspend point when the target exited are not waits.
  EXPECT_EQ(sums.other_count, 0) << prof.out().substr(0, 4000);
}

// A profile window inside endless waiting: the wait that began before the profile counts from
// its start, the one still open at its end counts up to it, so query's waits cover the window.
TEST_P(ProfileBurn, ExactAwaitProfileClipsWaitsToTheProfileWindow) {
  if (geteuid() != 0) GTEST_SKIP() << "profile --trace loads BPF: run as root";
  FixtureProcess fx({fixture_path(GetParam(), "profile_burn"), "--mode", "wait"});
  RunResult r = run_profile(
      {"-p", std::to_string(fx.pid()), "-d", "1", "--await", "--trace", "--format", "json"});
  ASSERT_EQ(r.exit.exit_code, 0) << r.err;
  const json p = json::parse(r.out);
  const AwaitSums sums = sum_await_profile(p, query_wait_stack());
  EXPECT_EQ(sums.other_count, 0) << r.out.substr(0, 4000);
  const int64_t window = p["duration_ns"].get<int64_t>();
  // query runs for microseconds every 20 ms: waiting all but a sliver of the window.
  EXPECT_LE(sums.want_ns, window);
  EXPECT_GE(sums.want_ns, window * 97 / 100) << sums.want_ns << " of " << window;
  // One wait per 20 ms tick; the machine may stretch ticks, never add any.
  EXPECT_GE(sums.want_count, 10);
  EXPECT_LE(sums.want_count, window / 20'000'000 + 2);
  bool said = false;
  for (const auto& w : p["warnings"]) {
    const std::string text = w.get<std::string>();
    if (text.rfind("exact await profile from the trace probes", 0) != 0) continue;
    said = true;
    EXPECT_NE(text.find(std::to_string(sums.want_count) + " waits, of which 1 began before"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("and 1 were still open at the end"), std::string::npos) << text;
  }
  EXPECT_TRUE(said) << p["warnings"].dump();
}

INSTANTIATE_TEST_SUITE_P(Variants, ProfileBurn,
                         ::testing::ValuesIn(fixture_variants_with("profile_burn")),
                         VariantTestName());

std::string any_variant() { return fixture_variants_with("profile_burn").front(); }

TEST(ProfileBadInput, NoSuchProcessExits3) {
  RunResult r = run_profile({"-p", "1073741823", "-d", "1"});
  EXPECT_EQ(r.exit.exit_code, 3) << r.err;
  EXPECT_EQ(r.err, "asyncprobe: no process with pid 1073741823\n");
  EXPECT_TRUE(r.out.empty());
}

TEST(ProfileBadInput, BadDurationFrequencyOrFormatIsUsage) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"-p", "1", "-d", "0"}, "invalid duration '0'"},
      {{"-p", "1", "-d", "soon"}, "invalid duration 'soon'"},
      {{"-p", "1", "-d", "1", "-F", "0"}, "invalid frequency '0'"},
      {{"-p", "1", "-d", "1", "-F", "fast"}, "invalid frequency 'fast'"},
      {{"-p", "1", "-d", "1", "-F", "5000"}, "-F 5000 is out of range: 1..1000 Hz"},
      {{"-p", "1", "-d", "1", "--await", "-F", "500"}, "-F 500 is out of range"},
      {{"-p", "1", "-d", "1", "--format", "png"}, "unknown format 'png'"},
      {{"-p", "1", "-d", "1", "--await", "--trace", "-F", "10"}, "-F does not apply"},
      {{"-d", "1"}, "profile needs -p PID"},
      {{"-p", "1", "--frobnicate"}, "unknown option '--frobnicate'"},
  };
  for (const auto& [args, message] : cases) {
    RunResult r = run_profile(args);
    EXPECT_EQ(r.exit.exit_code, 2) << args.back() << ": " << r.err;
    EXPECT_EQ(r.err.rfind("asyncprobe: " + message, 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

TEST(ProfileBadInput, HelpExits0) {
  RunResult r = run_profile({"--help"});
  EXPECT_EQ(r.exit.exit_code, 0);
  EXPECT_EQ(r.out.rfind("usage: asyncprobe profile -p PID", 0), 0u) << r.out;
}

TEST(ProfileBadInput, WithoutPrivilegesSaysWhatIsNeeded) {
  FixtureProcess fx({fixture_path(any_variant(), "profile_burn")});
  RunResult r = run_command({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                             "--inh-caps=-all", "--bounding-set=-all", asyncprobe_binary(),
                             "profile", "-p", std::to_string(fx.pid()), "-d", "1"},
                            std::chrono::seconds(60));
  if (r.exit.exit_code == 126 || r.exit.exit_code == 127) {
    GTEST_SKIP() << "uid 65534 cannot execute asyncprobe from this build tree: " << r.err;
  }
  EXPECT_EQ(r.exit.exit_code, 4) << r.out << r.err;
  EXPECT_EQ(r.err.rfind("asyncprobe: profile loads eBPF programs: run as root or with CAP_BPF and "
                        "CAP_PERFMON",
                        0),
            0u)
      << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

// --trace needs the BPF privileges even with --await (which alone does not).
TEST(ProfileBadInput, TraceWithoutPrivilegesExits4) {
  FixtureProcess fx({fixture_path(any_variant(), "profile_burn"), "--mode", "wait"});
  RunResult r =
      run_command({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                   "--bounding-set=-all", asyncprobe_binary(), "profile", "-p",
                   std::to_string(fx.pid()), "-d", "1", "--await", "--trace"},
                  std::chrono::seconds(60));
  if (r.exit.exit_code == 126 || r.exit.exit_code == 127) {
    GTEST_SKIP() << "uid 65534 cannot execute asyncprobe from this build tree: " << r.err;
  }
  EXPECT_EQ(r.exit.exit_code, 4) << r.out << r.err;
  EXPECT_EQ(r.err.rfind("asyncprobe: profile loads eBPF programs: run as root", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

// A target without coroutine code: --trace says what `asyncprobe trace` says, exit 7.
TEST(ProfileBadInput, TraceOnATargetWithoutCoroutinesExits7LikeTrace) {
  if (geteuid() != 0) GTEST_SKIP() << "the privilege check comes first";
  FixtureProcess fx({fixture_path(any_variant(), "nocoro")});
  const std::string pid = std::to_string(fx.pid());
  RunResult t = run_command({asyncprobe_binary(), "trace", "-p", pid, "-d", "1"});
  EXPECT_EQ(t.exit.exit_code, 7) << t.err;
  for (const bool await : {false, true}) {
    std::vector<std::string> args = {"-p", pid, "-d", "1", "--trace"};
    if (await) args.push_back("--await");
    RunResult r = run_profile(args);
    EXPECT_EQ(r.exit.exit_code, 7) << r.err;
    EXPECT_EQ(r.err, t.err);
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

TEST(ProfileBadInput, WithoutKernelBtfSaysSo) {
  if (geteuid() != 0) GTEST_SKIP() << "the privilege check comes first";
  FixtureProcess fx({fixture_path(any_variant(), "profile_burn")});
  RunResult r =
      run_command({"env", "ASYNCPROBE_VMLINUX_BTF=/nonexistent/vmlinux", asyncprobe_binary(),
                   "profile", "-p", std::to_string(fx.pid()), "-d", "1"},
                  std::chrono::seconds(60));
  EXPECT_EQ(r.exit.exit_code, 6) << r.out << r.err;
  EXPECT_EQ(
      r.err.rfind("asyncprobe: profile needs kernel BTF and /nonexistent/vmlinux is missing", 0),
      0u)
      << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

// The target ends after 3 s of a 10 s profile: the profile ends then, exit 0, and says so.
TEST(ProfileBadInput, TargetExitingMidProfileEndsCleanlyWithANote) {
  if (geteuid() != 0) GTEST_SKIP() << "profile loads BPF: run as root";
  for (const bool await : {false, true}) {
    FixtureProcess fx({fixture_path(any_variant(), "profile_burn"), "--seconds", "3"});
    std::vector<std::string> args = {"-p",  std::to_string(fx.pid()), "-d", "10", "--format",
                                     "json"};
    if (await) args.push_back("--await");
    const auto t0 = std::chrono::steady_clock::now();
    RunResult r = run_profile(args);
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_EQ(r.exit.exit_code, 0) << r.err;
    EXPECT_LT(took, 8.0) << "the profile did not end with its target";
    EXPECT_NE(r.err.find("asyncprobe: the target exited after "), std::string::npos) << r.err;
    const json p = json::parse(r.out);
    bool noted = false;
    for (const auto& w : p["warnings"]) {
      noted |= w.get<std::string>().rfind("the target exited after ", 0) == 0;
    }
    EXPECT_TRUE(noted) << p["warnings"].dump();
    EXPECT_LT(p["duration_ns"].get<int64_t>(), 8'000'000'000);
  }
}

}  // namespace
}  // namespace asyncprobe::testing
