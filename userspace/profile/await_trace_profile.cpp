#include "userspace/profile/await_trace_profile.h"

#include "userspace/profile/await_profiler.h"
#include "userspace/profile/profile_builder.h"
#include "userspace/snapshot/async_stacks.h"

namespace asyncprobe::profile {

namespace {

// Resume function address -> the model's function id.
std::unordered_map<uint64_t, uint32_t> function_ids(const trace::TraceModel& model) {
  std::unordered_map<uint64_t, uint32_t> ids;
  const std::vector<trace::TraceFunction>& fns = model.functions();
  for (size_t i = 0; i < fns.size(); ++i) {
    if (fns[i].fn == nullptr || fns[i].loaded == nullptr || fns[i].fn->resume == 0) continue;
    ids.emplace(fns[i].fn->resume + fns[i].loaded->bias, static_cast<uint32_t>(i));
  }
  return ids;
}

void note(model::Profile* p, uint64_t n, const std::string& what) {
  if (n > 0) p->warnings.push_back(std::to_string(n) + " " + what);
}

}  // namespace

size_t seed_suspended_at_start(const model::Snapshot& snap, uint64_t since_ns,
                               trace::TraceModel* model) {
  const std::unordered_map<uint64_t, uint32_t> ids = function_ids(*model);
  const snapshot::AsyncForest forest = snapshot::build_async_forest(snap);
  const std::vector<bool> awaited = awaited_frames(forest);
  size_t seeded = 0;
  for (size_t i = 0; i < snap.frames.size(); ++i) {
    const model::CoroFrame& c = snap.frames[i];
    const snapshot::FrameLink& link = forest.links[i];
    if (c.state != model::FrameState::kSuspended || link.duplicate) continue;
    auto id = ids.find(c.resume_fn);
    if (id == ids.end()) continue;
    const uint64_t awaiter =
        link.parent != snapshot::kNoFrame ? snap.frames[link.parent].address : 0;
    model->seed_suspended(c.address, id->second, since_ns, c.suspend.index, awaiter,
                          uncertain_edge(c, link), awaited[i]);
    ++seeded;
  }
  return seeded;
}

std::unordered_map<uint64_t, int64_t> suspended_at_end(const model::Snapshot& snap,
                                                       const trace::TraceModel& model) {
  const std::unordered_map<uint64_t, uint32_t> ids = function_ids(model);
  std::unordered_map<uint64_t, int64_t> out;
  for (const model::CoroFrame& c : snap.frames) {
    if (c.state != model::FrameState::kSuspended) continue;
    auto id = ids.find(c.resume_fn);
    auto known = model.frame_at_end(c.address);
    if (id == ids.end() || !known || known->fn != id->second) continue;
    out.emplace(c.address, c.suspend.index);
  }
  return out;
}

void add_leaf_waits(const trace::TraceModel& model, const std::vector<trace::LeafWaitStack>& waits,
                    model::Profile* p) {
  ProfileBuilder builder(p);
  const std::vector<trace::TraceFunction>& fns = model.functions();
  std::vector<uint32_t> frames;
  for (const trace::LeafWaitStack& w : waits) {
    frames.clear();
    for (const auto& [fn, index] : w.stack) {
      model::ProfileFrame f;
      f.kind = model::ProfileFrame::Kind::kAsync;
      if (fn < fns.size()) {
        f.function = fns[fn].name;
        if (fns[fn].loaded != nullptr) f.object = fns[fn].loaded->target_path;
      }
      const trace::SuspendPointLocation loc = model.location(fn, index);
      f.file = loc.file;
      f.line = loc.line;
      frames.push_back(builder.intern(f));
    }
    const uint32_t leaf_fn = w.stack.empty() ? 0 : w.stack.front().first;
    builder.add(frames, 0, std::string(), w.coroutine,
                leaf_fn < fns.size() ? fns[leaf_fn].name : std::string(), w.uncertain,
                static_cast<int64_t>(w.count), static_cast<int64_t>(w.total_ns));
  }
}

void add_leaf_wait_warnings(const trace::TraceModel& model, const trace::ProbeStats& probes,
                            model::Profile* p) {
  const trace::LeafWaitCounters& c = model.leaf_wait_counters();
  p->warnings.push_back(
      "exact await profile from the trace probes: every leaf wait (a suspension no coroutine "
      "awaited) with its duration; " +
      std::to_string(c.waits) + " waits, of which " + std::to_string(c.clipped_at_start) +
      " began before the profile (the start snapshot saw the coroutine suspended: counted from "
      "the start) and " +
      std::to_string(c.open_at_end) + " were still open at the end (counted up to it)");
  note(p, c.open_unconfirmed,
       "waits still open at the end are not counted: no end snapshot showed the coroutine "
       "suspended (it was destroyed unseen, or the target exited)");
  note(p, c.unknown_start,
       "resumes ended a suspension whose start was not seen (the coroutine had not run since "
       "the profile began): not counted");
  note(p, c.unresolved_points,
       "parent frames of counted waits have an unknown suspend point (shown without a line)");
  note(p, c.unknown_awaiter,
       "waits of coroutines whose awaiter the trace never saw (created during the profile and "
       "not yet resumed, or already destroyed): their stacks may lack parents");
  note(p, c.uncertain, "waits rest on a guessed awaiter edge (marked uncertain)");
  note(p, probes.lost,
       "trace records lost (ring buffer full): waits around them are missing; raise "
       "--ringbuf-mb");
  note(p, model.stack_desyncs(), "runs ended that the trace never saw start (lost records)");
  note(p, probes.malformed_records, "malformed trace records ignored");
  note(p, model.unknown_functions(), "trace records named an unknown function id");
  note(p, probes.thread_table_full, "trace events dropped: the probes' thread table was full");
  note(p, probes.nesting_folded, "nested runs deeper than the trace follows were folded");
  note(p, probes.index_unreadable,
       "resumes whose suspend index could not be read (their waits show no line)");
}

}  // namespace asyncprobe::profile
