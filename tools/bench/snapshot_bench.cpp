// Snapshot cost against its floor. A `many` fixture holds 100k suspended coroutines in a heap
// padded to 1 GiB; in the same run we time (a) one plain read of every region a snapshot scans,
// (b) a whole snapshot of the same process (scan, re-validation, decoding, stitching), and print
// their ratio. Goal: snapshot / plain read <= 2.0.
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <cstdio>
#include <memory>

#include "tests/integration/fixture_process.h"
#include "userspace/process/memory_reader.h"
#include "userspace/process/process_maps.h"
#include "userspace/process/target_process.h"
#include "userspace/snapshot/snapshot_taker.h"

namespace {

using asyncprobe::testing::FixtureProcess;

FixtureProcess& target() {
  static FixtureProcess fx({asyncprobe::testing::fixture_path("gcc12-O2", "many"), "--count",
                            "100000", "--ballast-mib", "1024"},
                           std::chrono::seconds(120));
  return fx;
}

double g_plain_ns = 0;

// Minor page faults of this process so far: first touches of fresh buffers are a large part of
// a read's cost on some VMs, so each benchmark reports its faults per iteration.
long minor_faults() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}
double g_snapshot_ns = 0;  // without the orphan mark phase
double g_orphans_ns = 0;   // with it

void BM_PlainReadOfScannedRegions(benchmark::State& state) {
  auto proc = asyncprobe::process::TargetProcess::open(target().pid());
  asyncprobe::process::MemoryReader mem(proc);
  auto regions = asyncprobe::process::scan_regions(proc.read_maps().mappings);
  std::vector<char> buf(1 << 20);
  uint64_t bytes = 0;
  long faults0 = minor_faults();
  for (auto _ : state) {
    bytes = 0;
    for (const auto& r : regions) {
      for (uint64_t at = r.start; at < r.end; at += buf.size()) {
        size_t len = std::min<uint64_t>(buf.size(), r.end - at);
        if (mem.read(at, buf.data(), len)) bytes += len;
      }
    }
    benchmark::DoNotOptimize(buf.data());
  }
  state.counters["MiB"] = static_cast<double>(bytes) / (1 << 20);
  state.counters["faults"] = benchmark::Counter(static_cast<double>(minor_faults() - faults0),
                                                benchmark::Counter::kAvgIterations);
  g_plain_ns = 0;
}

// state.range(0): 1 with the orphan mark phase (what the CLI does), 0 without.
void BM_Snapshot(benchmark::State& state) {
  asyncprobe::snapshot::SnapshotTaker taker(
      asyncprobe::snapshot::SnapshotSession{target().pid(), {}, state.range(0) != 0});
  asyncprobe::snapshot::SnapshotError err;
  if (!taker.attach(&err)) {
    state.SkipWithError(err.message.c_str());
    return;
  }
  size_t frames = 0;
  long faults0 = minor_faults();
  for (auto _ : state) {
    asyncprobe::model::Snapshot snap;
    if (!taker.take(&snap, &err)) {
      state.SkipWithError(err.message.c_str());
      return;
    }
    frames = snap.frames.size();
  }
  state.counters["coroutines"] = static_cast<double>(frames);
  state.counters["faults"] = benchmark::Counter(static_cast<double>(minor_faults() - faults0),
                                                benchmark::Counter::kAvgIterations);
}

// Runs the pair and prints the ratio from the same run.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& r : runs) {
      double ns = r.GetAdjustedRealTime();
      if (r.benchmark_name().find("PlainRead") != std::string::npos) g_plain_ns = ns;
      if (r.benchmark_name().rfind("BM_Snapshot/0", 0) == 0) g_snapshot_ns = ns;
      if (r.benchmark_name().rfind("BM_Snapshot/1", 0) == 0) g_orphans_ns = ns;
    }
    ConsoleReporter::ReportRuns(runs);
  }
};

}  // namespace

BENCHMARK(BM_PlainReadOfScannedRegions)->Unit(benchmark::kMillisecond)->MinTime(2.0);
BENCHMARK(BM_Snapshot)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->MinTime(2.0);

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  target();  // start the fixture before timing anything
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  if (g_plain_ns > 0 && g_snapshot_ns > 0) {
    std::printf("ratio snapshot/plain-read = %.2f (goal <= 2.0)\n", g_snapshot_ns / g_plain_ns);
  }
  if (g_snapshot_ns > 0 && g_orphans_ns > 0) {
    std::printf("ratio snapshot with orphan analysis/without = %.2f (goal <= 1.2)\n",
                g_orphans_ns / g_snapshot_ns);
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::printf("peak RSS of the benchmark process: %.1f MiB\n", ru.ru_maxrss / 1024.0);
  benchmark::Shutdown();
}
