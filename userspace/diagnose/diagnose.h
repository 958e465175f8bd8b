// Diagnoses: the conclusions a snapshot supports, each stated with its evidence (issue 13).
//   thread_deadlock  threads blocked in futex() on locks whose owners wait in turn (a cycle of the
//                    wait-for graph thread -> lock -> owner thread);
//   lock_owner_gone  a thread waiting on a lock whose owner thread exited or died holding it;
//   await_cycle      coroutines awaiting each other, the same cycle in both looks (a cycle seen
//                    in one look only stays a torn-data warning);
//   failed           coroutines whose promise holds an exception, grouped by type and message;
//   orphaned         suspended coroutines no live memory points to (snapshot/orphan_marker).
// The readers of target bytes these rest on (process/lock_reader, process/exception_reader) ran
// during the looks, and the native stacks of blocked threads (with the coroutine running on each)
// were unwound by the snapshot (snapshot/running_coroutines.h); this library only reasons over
// the model.
#pragma once

#include <string>
#include <vector>

#include "userspace/model/snapshot_model.h"
#include "userspace/process/memory_reader.h"

namespace asyncprobe::diagnose {

// Fills snap.diagnoses and snap.diagnosis_limits. `before` is the earlier look at the same
// process (nullptr with a zero window): with it, a lock wait or an await cycle must be the same
// in both looks to count; without it, one look is taken at its word and the limits say so.
void diagnose(model::Snapshot& snap, const model::Snapshot* before);

// The thread-deadlock and lock-owner-gone diagnoses alone (the wait-for graph).
std::vector<model::Diagnosis> thread_deadlocks(const model::Snapshot& snap,
                                               const model::Snapshot* before);
// Await cycles that hold in both looks (every cycle of `snap` when before is nullptr); frame_ids
// in awaiting order: frame_ids[k] awaits frame_ids[k + 1], the last awaits the first.
std::vector<model::Diagnosis> await_cycles(const model::Snapshot& snap,
                                           const model::Snapshot* before);
// Orphaned coroutines (CoroFrame::orphaned, marked during the look; with `before`, orphaned in
// both looks), one diagnosis per distinct orphaned stack: its frames, root first per stack.
std::vector<model::Diagnosis> orphaned_coroutines(const model::Snapshot& snap,
                                                  const model::Snapshot* before);
// Failed coroutines grouped by exception type and message.
std::vector<model::Diagnosis> failed_coroutines(const model::Snapshot& snap);

}  // namespace asyncprobe::diagnose
