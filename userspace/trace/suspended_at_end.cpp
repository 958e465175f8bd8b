#include "userspace/trace/suspended_at_end.h"

#include <algorithm>
#include <map>
#include <tuple>

namespace asyncprobe::trace {

namespace {

constexpr size_t kPollEvery = 4096;  // frames between two looks at should_stop

AsyncStackEntry entry_of(const model::CoroFrame& f) {
  AsyncStackEntry e;
  e.function = f.function;
  e.file = f.suspend.file;
  e.line = f.suspend.line;
  e.state = model::to_string(f.state);
  e.rule = coro::rule_name(f.awaiter_rule);
  return e;
}

// What the trace knows about a frame of the end snapshot; nullopt when the trace counts it as
// running (it was resumed while the snapshot was read).
struct Age {
  SuspendedAge kind = SuspendedAge::kNotStarted;
  uint64_t since = 0;
};

std::optional<Age> age_of(const SuspendedAtEndInput& in, const model::CoroFrame& f) {
  Age a;
  const auto fe = in.model->frame_at_end(f.address);
  const auto& fns = in.model->functions();
  const bool same_fn = fe && fe->fn < fns.size() && fns[fe->fn].name == f.function;
  if (same_fn && fe->running) return std::nullopt;
  if (same_fn && fe->seen_running) {
    // It ran during the trace: never "before the trace", whatever the first snapshot said.
    a.kind = fe->suspended_since != 0 ? SuspendedAge::kExact : SuspendedAge::kResumed;
    a.since = fe->suspended_since;
    return a;
  }
  auto it = in.at_start->find(f.address);
  if (it != in.at_start->end() && it->second == function_hash(f.function)) {
    a.kind = SuspendedAge::kBeforeTrace;
  }
  return a;
}

// The frames that are listed: suspended, not a duplicate address, not running for the trace.
// A listed frame that a listed frame hangs under is an awaiter: it shows in that frame's stack.
struct Listed {
  std::vector<std::optional<Age>> age;  // set for listed frames
  std::vector<bool> awaiter;
};

Listed listed_frames(const SuspendedAtEndInput& in, SuspendedAtEnd* out) {
  const model::Snapshot& s = *in.last;
  Listed l;
  l.age.resize(s.frames.size());
  l.awaiter.assign(s.frames.size(), false);
  for (size_t i = 0; i < s.frames.size(); ++i) {
    if (i % kPollEvery == 0 && in.should_stop && in.should_stop()) {
      out->interrupted = true;
      return l;
    }
    const model::CoroFrame& f = s.frames[i];
    if (f.state != model::FrameState::kSuspended || in.forest->links[i].duplicate) continue;
    l.age[i] = age_of(in, f);
    if (l.age[i]) ++out->coroutines;
  }
  for (size_t i = 0; i < s.frames.size(); ++i) {
    // A stack split by the forest's depth bound is still one chain: its awaiter is not a leaf.
    const snapshot::FrameLink& link = in.forest->links[i];
    const size_t p = link.link == snapshot::LinkKind::kDepthCut ? link.awaiter : link.parent;
    if (l.age[i] && p != snapshot::kNoFrame) l.awaiter[p] = true;
  }
  return l;
}

std::string group_key(SuspendedAge kind, size_t depth, const std::vector<AsyncStackEntry>& stack,
                      const std::optional<AsyncStackEntry>& outermost) {
  std::string key = std::to_string(static_cast<int>(kind)) + "/" + std::to_string(depth);
  auto add = [&key](const AsyncStackEntry& e) {
    key += '\x1f' + e.function + '\x1e' + e.file + '\x1e' + std::to_string(e.line) + '\x1e' +
           e.state + '\x1e' + e.rule;
  };
  for (const auto& e : stack) add(e);
  if (outermost) add(*outermost);
  return key;
}

int rank(SuspendedAge a) {
  switch (a) {
    case SuspendedAge::kBeforeTrace:
      return 0;
    case SuspendedAge::kExact:
      return 1;
    case SuspendedAge::kResumed:
      return 2;
    case SuspendedAge::kNotStarted:
      return 3;
  }
  return 4;
}

}  // namespace

const char* to_string(SuspendedAge a) {
  switch (a) {
    case SuspendedAge::kExact:
      return "exact";
    case SuspendedAge::kResumed:
      return "resumed";
    case SuspendedAge::kBeforeTrace:
      return "before-trace";
    case SuspendedAge::kNotStarted:
      return "not-started";
  }
  return "?";
}

uint64_t function_hash(const std::string& name) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a: names only compared with themselves
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  return h;
}

SuspendedAtEnd group_suspended_at_end(const SuspendedAtEndInput& in) {
  SuspendedAtEnd out;
  out.taken = true;
  const model::Snapshot& s = *in.last;
  const Listed l = listed_frames(in, &out);
  std::map<std::string, size_t> ids;
  for (size_t i = 0; i < s.frames.size() && !out.interrupted; ++i) {
    if (i % kPollEvery == 0 && in.should_stop && in.should_stop()) out.interrupted = true;
    if (!l.age[i] || l.awaiter[i]) continue;
    ++out.stacks;
    const snapshot::FrameLink& link = in.forest->links[i];
    std::vector<AsyncStackEntry> stack;
    for (size_t at = i; at != snapshot::kNoFrame && stack.size() < SuspendedAtEnd::kShownDepth;
         at = in.forest->links[at].parent) {
      stack.push_back(entry_of(s.frames[at]));
    }
    const size_t depth = std::max(link.depth + 1, stack.size());
    std::optional<AsyncStackEntry> outermost;
    if (depth > stack.size() && link.root < s.frames.size()) {
      outermost = entry_of(s.frames[link.root]);
    }
    const Age age = *l.age[i];
    auto [it, added] = ids.emplace(group_key(age.kind, depth, stack, outermost), out.groups.size());
    if (added) {
      if (out.groups.size() >= SuspendedAtEnd::kMaxGroups) {
        ids.erase(it);
        ++out.stacks_not_grouped;
        continue;
      }
      SuspendedGroup g;
      g.age = age.kind;
      g.depth = depth;
      g.async_stack = std::move(stack);
      g.outermost = std::move(outermost);
      g.since_min_ts = g.since_max_ts = age.since;
      out.groups.push_back(std::move(g));
    }
    SuspendedGroup& g = out.groups[it->second];
    ++g.count;
    if (g.frames.size() < SuspendedAtEnd::kGroupFrames) g.frames.push_back(s.frames[i].address);
    g.since_min_ts = std::min(g.since_min_ts, age.since);
    g.since_max_ts = std::max(g.since_max_ts, age.since);
  }
  std::stable_sort(out.groups.begin(), out.groups.end(),
                   [](const SuspendedGroup& a, const SuspendedGroup& b) {
                     return std::make_tuple(rank(a.age), a.since_min_ts, b.count) <
                            std::make_tuple(rank(b.age), b.since_min_ts, a.count);
                   });
  return out;
}

}  // namespace asyncprobe::trace
