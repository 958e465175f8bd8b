// Takes one snapshot of a live process: maps -> modules and coroutine catalogs -> frame scan ->
// decode -> awaiter stitching -> threads. Never stops or writes to the target.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "symbolizer/catalog_cache.h"
#include "symbolizer/module.h"
#include "userspace/model/snapshot_model.h"
#include "userspace/process/memory_reader.h"
#include "userspace/snapshot/coroutine_index.h"
#include "userspace/snapshot/running_coroutines.h"
#include "userspace/util/exit_codes.h"

namespace asyncprobe::process {
struct Mapping;
struct ReadRequest;
}  // namespace asyncprobe::process

namespace asyncprobe::snapshot {

struct StrippedObject;

struct SnapshotError {
  util::ExitCode code = util::kExitOk;
  std::string message;  // one line
};

struct SnapshotSession {
  int pid = 0;
  std::vector<std::string> debug_dirs;
  bool find_orphans = true;  // the orphan mark phase (a second pass over memory); off: benchmarks
  // Catalogs shared with other takers (the watch daemon's processes); null: a private cache.
  std::shared_ptr<symbolizer::CatalogCache> catalogs = nullptr;
};

// Holds what stays valid between two looks at the same process (modules, catalogs, index), so
// that a second snapshot (for --window) costs only the memory scan.
class SnapshotTaker {
 public:
  explicit SnapshotTaker(SnapshotSession session);
  ~SnapshotTaker();
  // Loads modules and catalogs. false with `error` when the target cannot be inspected.
  bool attach(SnapshotError* error);
  // One look. false with `error` when the target went away mid-scan.
  bool take(model::Snapshot* out, SnapshotError* error);
  // The coroutine code mapped in the target (valid after a successful attach()): every
  // coroutine's resume/destroy addresses, index field and suspend points.
  const CoroutineIndex& index() const;
  // Reads the target's memory (directly or through the run socket; valid after attach()).
  const process::ReadMemory& reader() const;
  // Re-reads pieces of the target's memory (valid after a successful attach()), batched where the
  // backend allows: what a resident watcher uses to re-check known frames between scans. Sets
  // each piece's ok; throws nothing (a vanished target reads as not ok).
  void read_pieces(std::vector<process::ReadRequest>& pieces);
  // Unwinds the threads of `snap` (a look by this taker) blocked in a syscall and marks the
  // coroutine running on each (running_coroutines.h). Opens the target's objects for unwinding
  // on first use; call it on the final look, after the stuck check.
  RunningScan mark_running(model::Snapshot* snap);
  // False once the target has exited (immune to PID reuse).
  bool alive() const;
  // Objects attach() opened (file-backed executable mappings), and of those, how many came from
  // the catalog cache (another process mapping the same object had loaded them).
  size_t objects_opened() const;
  size_t objects_shared() const;

 private:
  void add_stripped_coroutines(const std::vector<StrippedObject>& stripped,
                               const std::vector<process::Mapping>& maps);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace asyncprobe::snapshot
