// The exact await profile (`asyncprobe profile --await --trace`, docs/PROFILE.md): the trace
// model counts every leaf wait; this part tells it which coroutines were already waiting when
// the profile started (a snapshot then), which were still waiting at the end (a snapshot then),
// and turns the summed waits into the Profile model that every format writes.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "userspace/model/profile_model.h"
#include "userspace/model/snapshot_model.h"
#include "userspace/trace/trace_events.h"
#include "userspace/trace/trace_model.h"

namespace asyncprobe::profile {

// Seeds `model` with the snapshot's suspended coroutines (those of a probed function): waiting
// since `since_ns` at their suspend point, with the snapshot's awaiter edges. Returns how many.
size_t seed_suspended_at_start(const model::Snapshot& snap, uint64_t since_ns,
                               trace::TraceModel* model);

// Frame address -> suspend index of the snapshot's suspended coroutines whose function is the
// one the trace knows at that address.
std::unordered_map<uint64_t, int64_t> suspended_at_end(const model::Snapshot& snap,
                                                       const trace::TraceModel& model);

// Adds every wait stack to `p` (root..leaf, each frame kind async at its suspend point), and the
// warnings that say what was clipped, unknown or not counted.
void add_leaf_waits(const trace::TraceModel& model, const std::vector<trace::LeafWaitStack>& waits,
                    model::Profile* p);
void add_leaf_wait_warnings(const trace::TraceModel& model, const trace::ProbeStats& probes,
                            model::Profile* p);

}  // namespace asyncprobe::profile
