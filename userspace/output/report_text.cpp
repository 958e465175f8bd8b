#include "userspace/output/report_text.h"
#include "userspace/util/format.h"
#include "userspace/util/frame_runs.h"

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>

#include "userspace/output/function_name_shortener.h"

namespace asyncprobe::output {

namespace {

struct Glyphs {
  const char* times;
  const char* at_least;
  const char* tee;     // child with later siblings
  const char* corner;  // last child
  const char* bar;     // continuing ancestor column
  const char* blank;   // finished ancestor column
};

constexpr Glyphs kAscii{"x", ">=", "|-- ", "`-- ", "|   ", "    "};
constexpr Glyphs kUnicode{"\u00d7",    "\u2265", "\u251c\u2500\u2500 ", "\u2514\u2500\u2500 ",
                          "\u2502   ", "    "};

// Names and paths come from the target: control bytes (C0, DEL, and C1 as UTF-8) would let it
// move the cursor or rewrite the terminal, so they are shown as \xNN.
std::string esc(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    const bool c1 = c == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
                    static_cast<unsigned char>(s[i + 1]) <= 0x9f;
    if (c < 0x20 || c == 0x7f || c1) {
      const size_t len = c1 ? 2 : 1;
      for (size_t k = 0; k < len; ++k) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(s[i + k]));
        out += buf;
      }
      i += len - 1;
    } else {
      out += s[i];
    }
  }
  return out;
}

// A function as the report prints it: escaped, long library names shortened unless asked not to.
std::string name_of(const std::string& fn, const TextReportOptions& opts) {
  if (fn.empty()) return "(unnamed)";
  return esc(opts.max_name_chars == 0 ? fn : shorten_function_name(fn, opts.max_name_chars));
}

std::string frame_ref(const model::Snapshot& snap, size_t i, const TextReportOptions& opts) {
  return "#" + std::to_string(i) + " " + name_of(snap.frames[i].function, opts);
}

const char* state_text(model::FrameState s) {
  switch (s) {
    case model::FrameState::kSuspended:
      return "suspended";
    case model::FrameState::kDone:
      return "done (final suspend, not destroyed)";
    case model::FrameState::kUnknown:
      return "unknown";
    case model::FrameState::kRunning:
      return "running";
  }
  return "unknown";
}

std::string plural(size_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

// Where a suspend point is, never more precise than what the rules found.
std::string location(const std::string& file, int line, int64_t index, bool base_name = false) {
  if (line > 0) {
    std::string shown = file;
    if (base_name && shown.find('/') != std::string::npos)
      shown = shown.substr(shown.rfind('/') + 1);
    return (shown.empty() ? std::string("?") : esc(shown)) + ":" + std::to_string(line);
  }
  if (index >= 0) return "(line unknown, suspend index " + std::to_string(index) + ")";
  return "(line unknown)";
}

std::string kind_note(model::SuspendPoint::Kind kind, model::FrameState state) {
  if (kind == model::SuspendPoint::Kind::kInitial) return "  initial suspend";
  // A done frame's state text already says final suspend.
  if (kind == model::SuspendPoint::Kind::kFinal && state != model::FrameState::kDone)
    return "  final suspend";
  return "";
}

// "running on thread TID, blocked in read() at file:line": where a running coroutine is now.
std::string running_text(const model::RunningOn& r, const TextReportOptions& opts) {
  std::string s = "running on thread " + std::to_string(r.thread);
  if (!r.syscall.empty()) s += ", blocked in " + esc(r.syscall) + "()";
  return s + " at " + location(r.file, r.line, -1, opts.base_names);
}

std::string exception_text(const model::HeldException& e) {
  std::string s = e.type.empty() ? "(exception of unreadable type)" : esc(e.type);
  if (e.has_what) s += ": \"" + esc(e.what) + (e.what_truncated ? "...\"" : "\"");
  if (!e.error.empty()) s += " (" + esc(e.error) + ")";
  return s;
}

// "failed: <exception>" when every failed frame of the node holds the same one, "[orphaned]".
std::string outcome_marks(const model::Snapshot& snap, const snapshot::StackNode& n) {
  std::string s;
  size_t failed = 0, orphaned = 0;
  const model::HeldException* first = nullptr;
  bool same = true;
  for (size_t f : n.frames) {
    const model::CoroFrame& fr = snap.frames[f];
    orphaned += fr.orphaned;
    if (!fr.exception) continue;
    ++failed;
    if (first == nullptr) {
      first = &*fr.exception;
    } else {
      same = same && first->type == fr.exception->type && first->what == fr.exception->what;
    }
  }
  if (failed > 0) {
    s += "  ";
    if (failed != n.count())
      s += "[" + std::to_string(failed) + " of " + std::to_string(n.count()) + "] ";
    s += same ? "failed: " + exception_text(*first) : std::string("failed (different exceptions)");
  }
  if (orphaned > 0) {
    s += orphaned == n.count()
             ? "  [orphaned]"
             : "  [" + std::to_string(orphaned) + " of " + std::to_string(n.count()) + " orphaned]";
  }
  return s;
}

bool in_diagnosed_cycle(const model::Snapshot& snap, size_t frame) {
  for (const model::Diagnosis& d : snap.diagnoses) {
    if (d.kind == model::Diagnosis::Kind::kAwaitCycle &&
        std::find(d.frame_ids.begin(), d.frame_ids.end(), frame) != d.frame_ids.end()) {
      return true;
    }
  }
  return false;
}

// Where a node's frames are and in which state: a running node says where it runs now; a
// candidate of an uncertain join keeps its suspend point and says it may be running.
std::string place_and_state(const model::Snapshot& snap, const snapshot::StackNode& n,
                            const TextReportOptions& opts) {
  const model::CoroFrame& first = snap.frames[n.frames.front()];
  if (n.state == model::FrameState::kRunning && first.running) {
    return "  " + running_text(*first.running, opts);
  }
  std::string s = "  " + location(n.file, n.line, n.line == 0 ? n.index : -1, opts.base_names);
  s += kind_note(n.kind, n.state);
  // The leaf is where the stack waits; inner frames are suspended on their child by definition,
  // so their state is only worth a word when it is something else.
  if (n.children.empty() || n.state != model::FrameState::kSuspended) {
    s += "  ";
    s += state_text(n.state);
  }
  if (first.running && first.running->uncertain) {
    s += "  (thread " + std::to_string(first.running->thread) +
         " runs a frame of this function, this one or another: which is unknown)";
  }
  return s;
}

std::string node_line(const model::Snapshot& snap, const snapshot::AsyncForest& forest,
                      const snapshot::StackNode& n, const Glyphs& g,
                      const TextReportOptions& opts) {
  std::string s = std::to_string(n.count()) + g.times + " " + name_of(n.function, opts);
  s += place_and_state(snap, n, opts);
  // A finished frame Clang placed in its caller's storage may be gone with the caller: "not
  // destroyed" is then only what the header suggests.
  if (n.state == model::FrameState::kDone) {
    size_t elided = 0;
    for (size_t f : n.frames) elided += snap.frames[f].elided;
    if (elided == n.count()) {
      s += "  (elided: may be destroyed with its caller)";
    } else if (elided > 0) {
      s += "  (" + std::to_string(elided) + " elided: may be destroyed with their caller)";
    }
  }
  // [stuck] only for frames known not resumed; [unchanged] for frames that merely looked the same.
  auto mark = [&](size_t count, const char* word, double bound) {
    s += "  [";
    if (count != n.count()) s += std::to_string(count) + " of " + std::to_string(n.count()) + " ";
    s += std::string(word) + " " + g.at_least + util::format_lower_bound(bound) + "]";
  };
  if (n.stuck > 0) mark(n.stuck, "stuck", n.stuck_for_s);
  if (n.unchanged > 0) mark(n.unchanged, "unchanged", n.unchanged_for_s);
  switch (n.link) {
    case snapshot::LinkKind::kRoot:
      break;
    case snapshot::LinkKind::kLinked:
      if (coro::is_generic(n.rule)) s += "  (generic link)";
      break;
    case snapshot::LinkKind::kDangling:
      s += "  (awaiter not among frames: uncertain root)";
      break;
    case snapshot::LinkKind::kCycle:
      s += in_diagnosed_cycle(snap, n.frames.front()) ? "  (await cycle: see DIAGNOSES)"
                                                      : "  (await cycle cut here: uncertain)";
      break;
    case snapshot::LinkKind::kDepthCut:
      s += "  (continues a stack cut at depth " +
           std::to_string(forest.links[n.frames.front()].depth) + ")";
      break;
  }
  if (n.cut_children > 0) s += "  (deeper frames cut: continued as a separate tree)";
  s += outcome_marks(snap, n);
  return s;
}

void write_tree(std::ostream& out, const model::Snapshot& snap, const snapshot::AsyncForest& forest,
                size_t top, const TextReportOptions& opts, const Glyphs& g) {
  struct Item {
    size_t node;
    std::string prefix;  // drawn before this node's connector
    bool last;
  };
  std::vector<Item> stack;
  stack.push_back(Item{top, "", true});
  while (!stack.empty()) {
    Item it = std::move(stack.back());
    stack.pop_back();
    const snapshot::StackNode& n = forest.nodes[it.node];
    std::string line = it.prefix;
    if (n.depth > 0) line += it.last ? g.corner : g.tee;
    if (n.depth > opts.max_indent_depth) line += "[depth " + std::to_string(n.depth) + "] ";
    out << line << node_line(snap, forest, n, g, opts) << '\n';
    // Past the indent cap the prefix stops growing, so a 4096-deep stack stays O(n) wide.
    std::string child_prefix = it.prefix;
    if (n.depth > 0 && n.depth < opts.max_indent_depth) child_prefix += it.last ? g.blank : g.bar;
    for (size_t k = n.children.size(); k-- > 0;) {
      stack.push_back(Item{n.children[k], child_prefix, k + 1 == n.children.size()});
    }
  }
}

// True when the cycle was diagnosed as an await_cycle (held in both looks, or seen in the only
// look, which the diagnosis limits then say).
bool diagnosed_cycle(const model::Snapshot& snap, const snapshot::AwaitCycle& c) {
  std::vector<size_t> members = c.frames;
  std::sort(members.begin(), members.end());
  for (const model::Diagnosis& d : snap.diagnoses) {
    if (d.kind != model::Diagnosis::Kind::kAwaitCycle) continue;
    std::vector<size_t> ids = d.frame_ids;
    std::sort(ids.begin(), ids.end());
    if (ids == members) return true;
  }
  return false;
}

void write_warnings(std::ostream& out, const model::Snapshot& snap,
                    const snapshot::AsyncForest& forest, const TextReportOptions& opts) {
  for (const std::string& w : snap.warnings) out << "warning: " << esc(w) << '\n';
  const size_t cap = opts.max_listed;
  auto more = [&](size_t total, const char* what) {
    if (total > cap) out << "warning: ... and " << (total - cap) << " more " << what << '\n';
  };
  std::vector<const snapshot::AwaitCycle*> torn;
  for (const snapshot::AwaitCycle& c : forest.cycles) {
    if (!diagnosed_cycle(snap, c)) torn.push_back(&c);
  }
  for (size_t i = 0; i < torn.size() && i < cap; ++i) {
    const snapshot::AwaitCycle& c = *torn[i];
    out << "warning: await cycle (torn or hostile data?): ";
    const size_t shown = std::min<size_t>(c.frames.size(), 8);
    for (size_t k = 0; k < shown; ++k) out << frame_ref(snap, c.frames[k], opts) << " awaits ";
    if (shown < c.frames.size()) out << "... (" << c.frames.size() << " frames) ... ";
    out << frame_ref(snap, c.frames.front(), opts) << "; cut at #" << c.frames.front()
        << ", stack shown is uncertain\n";
  }
  more(torn.size(), "cycles");
  for (size_t i = 0; i < forest.dangling.size() && i < cap; ++i) {
    const snapshot::DanglingEdge& d = forest.dangling[i];
    out << "warning: " << frame_ref(snap, d.frame, opts) << ": its awaiter " << util::hex(d.awaiter)
        << " is not among the frames found; shown as an uncertain root\n";
  }
  more(forest.dangling.size(), "dangling awaiter edges");
  for (size_t i = 0; i < forest.depth_cuts.size() && i < cap; ++i) {
    const snapshot::DepthCut& d = forest.depth_cuts[i];
    out << "warning: stack of " << frame_ref(snap, d.root, opts) << " is deeper than "
        << forest.max_depth << " frames: cut between " << frame_ref(snap, d.parent, opts) << " and "
        << frame_ref(snap, d.frame, opts) << " (depth " << d.depth
        << "), continued as a separate tree\n";
  }
  more(forest.depth_cuts.size(), "depth cuts");
  for (size_t i = 0; i < forest.duplicates.size() && i < cap; ++i) {
    const snapshot::DuplicateAddress& d = forest.duplicates[i];
    out << "warning: address " << util::hex(d.address) << " found " << d.frames.size()
        << " times (torn read?): frames";
    for (size_t k = 0; k < d.frames.size() && k < 8; ++k) out << " #" << d.frames[k];
    if (d.frames.size() > 8) out << " ...";
    out << "; awaiter edges resolve to #" << d.frames.front() << '\n';
  }
  more(forest.duplicates.size(), "duplicated addresses");
}

// Where the leaves of a stuck group are awaited from, most common first: a leaf inside a
// library (an Asio initiation, a channel receive) says little until its caller is named.
std::vector<std::string> awaited_from(const model::Snapshot& snap,
                                      const snapshot::AsyncForest& forest,
                                      const snapshot::StuckGroup& s, size_t max_listed,
                                      const TextReportOptions& opts) {
  std::map<std::string, size_t> from;
  size_t roots = 0;
  for (size_t f : s.leaf_frames) {
    const size_t a = f < forest.links.size() ? forest.links[f].awaiter : snapshot::kNoFrame;
    if (a == snapshot::kNoFrame) {
      ++roots;
      continue;
    }
    const model::CoroFrame& p = snap.frames[a];
    ++from[name_of(p.function, opts) + "  " +
           location(p.suspend.file, p.suspend.line, p.suspend.line == 0 ? p.suspend.index : -1)];
  }
  if (from.empty()) return {};
  std::vector<std::pair<std::string, size_t>> sorted(from.begin(), from.end());
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  std::vector<std::string> lines;
  for (size_t i = 0; i < sorted.size() && i < max_listed; ++i) {
    lines.push_back(std::to_string(sorted[i].second) + " from " + sorted[i].first);
  }
  if (sorted.size() > max_listed) {
    lines.push_back("... and " + plural(sorted.size() - max_listed, "more caller", "more callers"));
  }
  if (roots > 0) lines.push_back(std::to_string(roots) + " not awaited (stack roots)");
  return lines;
}

// How "stuck" was decided in this snapshot, for the section's header.
std::string probe_note(const model::Snapshot& snap) {
  const model::StuckProbeInfo& p = snap.stuck_probe;
  if (!p.ran) return "no resume probe" + (p.note.empty() ? std::string() : ": " + p.note);
  std::string s = "resume probe on " + plural(p.functions, "function", "functions");
  if (p.functions_hot > 0) s += ", " + std::to_string(p.functions_hot) + " detached early (hot)";
  if (p.functions_failed > 0) s += ", " + std::to_string(p.functions_failed) + " not attached";
  return s;
}

// Frames that looked the same without anything telling whether they were resumed.
void write_unchanged(std::ostream& out, const model::Snapshot& snap) {
  std::set<std::tuple<std::string, int, int64_t>> points;
  size_t frames = 0;
  for (const model::CoroFrame& f : snap.frames) {
    if (!f.unchanged) continue;
    ++frames;
    points.emplace(f.function, f.suspend.line, f.suspend.line == 0 ? f.suspend.index : -1);
  }
  if (frames == 0) return;
  out << "(+ " << plural(frames, "frame", "frames") << " at "
      << plural(points.size(), "suspend point", "suspend points")
      << " unchanged over the window, not known whether resumed: marked [unchanged] in the "
         "trees)\n";
}

// Which stuck frames a diagnosis explains: members of an await cycle (every one awaits another,
// so none is a leaf above) and orphaned frames. They will never move.
void write_stuck_diagnosed(std::ostream& out, const model::Snapshot& snap,
                           const std::vector<snapshot::StuckGroup>& stuck) {
  size_t cyclic = 0, orphaned = 0;
  for (const model::Diagnosis& d : snap.diagnoses) {
    if (d.kind != model::Diagnosis::Kind::kAwaitCycle) continue;
    for (size_t f : d.frame_ids) cyclic += snap.frames[f].stuck;
  }
  for (const snapshot::StuckGroup& s : stuck) {
    for (size_t f : s.frames) orphaned += snap.frames[f].orphaned;
  }
  if (cyclic > 0) {
    out << plural(cyclic, "stuck frame is", "stuck frames are")
        << " in await cycles (cyclic: they will never move; see DIAGNOSES)\n";
  }
  if (orphaned > 0) {
    out << plural(orphaned, "stuck frame is", "stuck frames are")
        << " orphaned (nothing can resume them; see DIAGNOSES)\n";
  }
}

void write_stuck(std::ostream& out, const model::Snapshot& snap,
                 const snapshot::AsyncForest& forest,
                 const std::vector<snapshot::StuckGroup>& stuck, const Glyphs& g,
                 const TextReportOptions& opts) {
  if (!(snap.window_seconds > 0.0)) {
    out << "STUCK: window 0: stuck detection off\n";
    return;
  }
  const std::string window = util::format_lower_bound(snap.window_seconds);
  if (stuck.empty()) {
    out << "STUCK: none known (none seen not resumed during the " << window << " window; "
        << probe_note(snap) << ")\n";
    write_unchanged(out, snap);
    return;
  }
  // Where stuck stacks wait, not every frame above them: a frame awaiting a stuck child is
  // stuck because of it, and listing it first would bury the cause.
  std::vector<const snapshot::StuckGroup*> leaves;
  size_t enclosing = 0, enclosing_points = 0;
  for (const snapshot::StuckGroup& s : stuck) {
    if (s.leaves() > 0) leaves.push_back(&s);
    if (s.leaves() < s.count()) {
      enclosing += s.count() - s.leaves();
      ++enclosing_points;
    }
  }
  std::stable_sort(leaves.begin(), leaves.end(),
                   [](const snapshot::StuckGroup* a, const snapshot::StuckGroup* b) {
                     return a->leaves() > b->leaves();
                   });
  out << "STUCK (not resumed during the " << window << " window, " << probe_note(snap)
      << "; where the stuck stacks wait)\n";
  for (const snapshot::StuckGroup* s : leaves) {
    out << s->leaves() << g.times << " " << name_of(s->function, opts) << "  "
        << location(s->file, s->line, s->line == 0 ? s->index : -1)
        << kind_note(s->kind, model::FrameState::kSuspended) << "  stuck " << g.at_least
        << util::format_lower_bound(s->stuck_for_s);
    if (s->max_stuck_for_s > s->stuck_for_s) {
      out << ", longest " << g.at_least << util::format_lower_bound(s->max_stuck_for_s);
    }
    out << '\n';
    for (const std::string& l : awaited_from(snap, forest, *s, 3, opts)) out << "    " << l << '\n';
  }
  write_stuck_diagnosed(out, snap, stuck);
  if (enclosing > 0) {
    out << "(+ " << plural(enclosing, "enclosing frame", "enclosing frames") << " at "
        << plural(enclosing_points, "suspend point", "suspend points")
        << ", each awaiting another coroutine, not resumed either: marked [stuck] in the trees)\n";
  }
  write_unchanged(out, snap);
}

std::string frame_evidence(const model::Snapshot& snap, size_t i, const TextReportOptions& opts) {
  const model::CoroFrame& f = snap.frames[i];
  return frame_ref(snap, i, opts) + "  " +
         location(f.suspend.file, f.suspend.line, f.suspend.line == 0 ? f.suspend.index : -1) +
         kind_note(f.suspend.kind, f.state) + "  " + state_text(f.state);
}

// The thread's native stack, innermost first; down to its coroutine's resume function when one
// runs there (`to_resume`), whole otherwise.
void write_native_stack(std::ostream& out, const model::ThreadInfo& t,
                        const TextReportOptions& opts, bool to_resume = false) {
  if (t.native_stack.empty()) {
    out << "      (native stack not unwound)\n";
    return;
  }
  const std::vector<model::NativeFrame>& stack = t.native_stack;
  size_t n = stack.size();
  if (to_resume && t.resume_native_frame >= 0) {
    n = std::min(n, static_cast<size_t>(t.resume_native_frame) + 1);
  }
  for (size_t k = 0; k < n;) {
    const model::NativeFrame& f = stack[k];
    const size_t run = util::folded_run(k, n, [&](size_t a, size_t b) {
      return stack[a].pc == stack[b].pc && stack[a].function == stack[b].function;
    });
    out << "      #" << k << " " << util::hex(f.pc) << " "
        << (f.function.empty() ? std::string("??") : name_of(f.function, opts));
    if (f.line > 0) out << "  " << location(f.file, f.line, -1);
    if (run > 1) out << "  x" << run;
    if (static_cast<int64_t>(k) == t.resume_native_frame) out << "  (coroutine resume function)";
    out << '\n';
    k += run;
  }
}

// The async stack of the coroutine running on `t`, root first, ending where it runs now.
void write_running_async_stack(std::ostream& out, const model::Snapshot& snap,
                               const snapshot::AsyncForest& forest, const model::ThreadInfo& t,
                               const TextReportOptions& opts) {
  if (t.running_frame < 0 || static_cast<size_t>(t.running_frame) >= forest.links.size()) return;
  std::vector<size_t> chain;
  for (size_t f = static_cast<size_t>(t.running_frame);
       f != snapshot::kNoFrame && chain.size() <= forest.max_depth; f = forest.links[f].parent) {
    chain.push_back(f);
  }
  out << "      coroutine running on it (async stack, root first):\n";
  for (size_t k = chain.size(); k-- > 0;) {
    const model::CoroFrame& f = snap.frames[chain[k]];
    out << "        " << frame_ref(snap, chain[k], opts) << "  ";
    if (f.state == model::FrameState::kRunning && f.running) {
      out << running_text(*f.running, opts);
    } else {
      out << location(f.suspend.file, f.suspend.line, f.suspend.line == 0 ? f.suspend.index : -1);
    }
    out << '\n';
  }
}

void write_lock_diagnosis(std::ostream& out, const model::Snapshot& snap, const model::Diagnosis& d,
                          const snapshot::AsyncForest& forest, const TextReportOptions& opts) {
  for (const model::Diagnosis::Lock& l : d.locks) {
    for (int w : l.waiters) {
      const model::ThreadInfo* t = nullptr;
      for (const model::ThreadInfo& x : snap.threads) t = x.tid == w ? &x : t;
      out << "    thread " << w;
      if (t != nullptr && !t->name.empty()) out << " (" << esc(t->name) << ")";
      out << " waits for " << l.type << " " << util::hex(l.address) << " held by thread " << l.owner
          << (l.owner_died     ? " (died: FUTEX_OWNER_DIED)"
              : !l.owner_alive ? " (exited)"
                               : "")
          << '\n';
      if (t == nullptr) continue;
      write_running_async_stack(out, snap, forest, *t, opts);
      write_native_stack(out, *t, opts);
    }
  }
}

}  // namespace

void write_running_thread(std::ostream& out, const model::Snapshot& snap,
                          const model::ThreadInfo& t, const TextReportOptions& opts) {
  out << "    runs coroutine ";
  if (t.running_frame >= 0) {
    const size_t i = static_cast<size_t>(t.running_frame);
    out << frame_ref(snap, i, opts);
    if (snap.frames[i].running) out << ": " << running_text(*snap.frames[i].running, opts);
  } else {
    out << name_of(t.running_function, opts);
    if (t.running_candidates.empty()) {
      out << " (its frame was not found)";
    } else {
      out << " (one of frames";
      for (size_t c : t.running_candidates) out << " #" << c;
      out << "; which one is unknown)";
    }
  }
  out << '\n';
  write_native_stack(out, t, opts, true);
}

namespace {

void write_threads(std::ostream& out, const model::Snapshot& snap, const TextReportOptions& opts) {
  if (snap.threads.empty()) {
    out << "THREADS: none read\n";
    return;
  }
  std::vector<const model::ThreadInfo*> ts;
  for (const model::ThreadInfo& t : snap.threads) ts.push_back(&t);
  std::stable_sort(
      ts.begin(), ts.end(),
      [](const model::ThreadInfo* a, const model::ThreadInfo* b) { return a->tid < b->tid; });
  out << "THREADS\n";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%-8s %-5s %-16s ", "TID", "STATE", "SYSCALL");
  out << buf << "NAME\n";
  for (const model::ThreadInfo* t : ts) {
    const std::string state = esc(std::string(1, t->state));
    const std::string sys = t->syscall.empty() ? "?" : esc(t->syscall);
    std::snprintf(buf, sizeof buf, "%-8d %-5s ", t->tid, state.c_str());
    out << buf << sys;
    // Pad to the column without truncating a long name.
    if (sys.size() < 16) out << std::string(16 - sys.size(), ' ');
    out << ' ' << esc(t->name) << '\n';
    if (!t->running_function.empty()) write_running_thread(out, snap, *t, opts);
  }
}

}  // namespace

void write_diagnoses(std::ostream& out, const model::Snapshot& snap,
                     const TextReportOptions& opts) {
  if (snap.diagnoses.empty()) {
    out << "DIAGNOSES: none\n";
  } else {
    out << "DIAGNOSES\n";
  }
  using K = model::Diagnosis::Kind;
  const size_t cap = std::max<size_t>(opts.max_listed, 1);
  // For the async stacks of coroutines running on threads that wait for locks.
  std::optional<snapshot::AsyncForest> forest;
  for (const model::Diagnosis& d : snap.diagnoses) {
    out << model::to_string(d.kind) << ": ";
    out << esc(d.summary) << '\n';
    if (d.kind == K::kThreadDeadlock || d.kind == K::kLockOwnerGone) {
      if (!forest) forest = snapshot::build_async_forest(snap);
      write_lock_diagnosis(out, snap, d, *forest, opts);
      continue;
    }
    for (size_t k = 0; k < d.frame_ids.size() && k < cap; ++k) {
      out << "    " << frame_evidence(snap, d.frame_ids[k], opts);
      if (d.kind == K::kAwaitCycle) {
        out << "  awaits #" << d.frame_ids[(k + 1) % d.frame_ids.size()];
      }
      out << '\n';
    }
    if (d.frame_ids.size() > cap) out << "    ... and " << (d.frame_ids.size() - cap) << " more\n";
  }
  for (const std::string& l : snap.diagnosis_limits) out << "  limit: " << esc(l) << '\n';
}

void write_async_stacks(std::ostream& out, const model::Snapshot& snap,
                        const snapshot::AsyncForest& forest, const TextReportOptions& opts) {
  const Glyphs& g = opts.unicode ? kUnicode : kAscii;
  for (size_t i = 0; i < forest.top_nodes.size(); ++i) {
    if (i > 0) out << '\n';
    write_tree(out, snap, forest, forest.top_nodes[i], opts, g);
  }
}

void write_text_report(std::ostream& out, const model::Snapshot& snap,
                       const snapshot::AsyncForest& forest,
                       const std::vector<snapshot::StuckGroup>& stuck,
                       const TextReportOptions& opts) {
  const Glyphs& g = opts.unicode ? kUnicode : kAscii;
  out << "asyncprobe: pid " << snap.pid;
  if (!snap.command.empty()) out << " (" << esc(snap.command) << ")";
  out << ": " << plural(snap.frames.size(), "coroutine", "coroutines") << " in "
      << plural(forest.stack_count(), "async stack", "async stacks") << " ("
      << forest.distinct_stack_count() << " distinct), "
      << plural(snap.threads.size(), "thread", "threads") << "; scanned "
      << util::format_bytes(snap.bytes_scanned) << " in "
      << util::format_duration(snap.scan_seconds) << '\n';
  write_warnings(out, snap, forest, opts);

  out << '\n';
  // A snapshot the diagnoses never ran on (no limits recorded either) has no section.
  if (!snap.diagnoses.empty() || !snap.diagnosis_limits.empty()) {
    write_diagnoses(out, snap, opts);
    out << '\n';
  }
  if (forest.top_nodes.empty()) {
    out << "ASYNC STACKS: none found\n";
  } else {
    out << "ASYNC STACKS (root first, each stack ends where it waits)\n";
    write_async_stacks(out, snap, forest, opts);
  }
  out << '\n';
  write_stuck(out, snap, forest, stuck, g, opts);
  out << '\n';
  write_threads(out, snap, opts);
}

void write_text_report(std::ostream& out, const model::Snapshot& snap,
                       const TextReportOptions& opts) {
  const snapshot::AsyncForest forest = snapshot::build_async_forest(snap);
  write_text_report(out, snap, forest, snapshot::group_stuck(snap), opts);
}

}  // namespace asyncprobe::output
