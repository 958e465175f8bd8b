// Takes snapshots of one process back to back for a while, from one attach (the way `--window`
// and a watch loop take their second and later looks), and prints how many it took. Used by
// tools/bench/snapshot-throughput to measure what reading costs the target, apart from what
// starting a new asyncprobe process each time costs the machine.
// Usage: snapshot_loop PID SECONDS
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "userspace/cli/cli_options.h"
#include "userspace/snapshot/snapshot_taker.h"

int main(int argc, char** argv) {
  int pid = 0;
  if (argc != 3 || !asyncprobe::cli::parse_pid(argv[1], &pid)) {
    std::fprintf(stderr, "usage: snapshot_loop PID SECONDS\n");
    return 2;
  }
  const double seconds = std::atof(argv[2]);
  asyncprobe::snapshot::SnapshotTaker taker(asyncprobe::snapshot::SnapshotSession{pid, {}});
  asyncprobe::snapshot::SnapshotError err;
  if (!taker.attach(&err)) {
    std::fprintf(stderr, "snapshot_loop: %s\n", err.message.c_str());
    return err.code;
  }
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  long snapshots = 0;
  size_t frames = 0;
  while (std::chrono::steady_clock::now() < end) {
    asyncprobe::model::Snapshot snap;
    if (!taker.take(&snap, &err)) break;  // the target ended
    frames = snap.frames.size();
    ++snapshots;
  }
  std::printf("snapshots=%ld coroutines=%zu\n", snapshots, frames);
  return 0;
}
