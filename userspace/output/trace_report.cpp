#include "userspace/output/trace_report.h"
#include "userspace/output/function_name_shortener.h"
#include "userspace/util/format.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace asyncprobe::output {

namespace {

using nlohmann::json;

std::string base_name(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string where(const std::string& file, int line) {
  if (line <= 0) return "?";
  return base_name(file) + ":" + std::to_string(line);
}

std::string since_start(const TraceReport& r, uint64_t ts) {
  char buf[32];
  double s = ts >= r.start_ts ? static_cast<double>(ts - r.start_ts) / 1e9
                              : -static_cast<double>(r.start_ts - ts) / 1e9;
  std::snprintf(buf, sizeof buf, "%+.3f s", s);
  return buf;
}

std::string thread_label(const TraceReport& r, uint32_t tid) {
  auto it = r.thread_names.find(tid);
  std::string s = "thread " + std::to_string(tid);
  if (it != r.thread_names.end() && !it->second.empty()) s += " (" + it->second + ")";
  return s;
}

bool system_path(const std::string& file) {
  return file.empty() || file.rfind("/usr/", 0) == 0 || file.rfind("/lib", 0) == 0;
}

std::string frame_text(const process::UnwoundFrame& f) {
  if (f.functions.empty()) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "0x%" PRIx64, f.pc);
    return std::string(buf) + (f.object.empty() ? "" : " (" + base_name(f.object) + ")");
  }
  std::string out;
  for (size_t i = 0; i < f.functions.size(); ++i) {
    const symbolizer::InlineFrame& fr = f.functions[i];
    if (i > 0) out += " < ";
    out += fr.function.empty() ? "?" : fr.function;
    if (fr.location.line > 0) {
      out += " (" + where(fr.location.file, fr.location.line) + ")";
    } else if (!f.object.empty() && i + 1 == f.functions.size()) {
      out += " (" + base_name(f.object) + ")";
    }
  }
  return out;
}

std::string async_text(const std::vector<AsyncStackEntry>& stack) {
  std::string out;
  for (size_t i = 0; i < stack.size(); ++i) {
    const AsyncStackEntry& e = stack[i];
    if (i > 0) out += " < ";
    out += e.function;
    if (e.state == "running") {
      out += " [running]";
    } else {
      out += " @ " + where(e.file, e.line);
    }
  }
  return out;
}

json stats_json(const trace::DurationStats& d) {
  return json{{"count", d.count()},
              {"total_ns", d.total_ns()},
              {"max_ns", d.max_ns()},
              {"p50_ns", d.percentile(50)},
              {"p99_ns", d.percentile(99)}};
}

json async_json(const std::vector<AsyncStackEntry>& stack) {
  json a = json::array();
  for (const auto& e : stack) {
    json j{{"function", e.function}, {"state", e.state}};
    j["file"] = e.file;
    j["line"] = e.line;
    if (!e.rule.empty()) j["awaiter_rule"] = e.rule;
    a.push_back(j);
  }
  return a;
}

json frame_json(const process::UnwoundFrame& f) {
  json j;
  j["pc"] = f.pc;
  j["object"] = f.object;
  json fns = json::array();
  for (const auto& fr : f.functions) {
    fns.push_back(json{{"function", fr.function},
                       {"file", fr.location.file},
                       {"line", fr.location.line},
                       {"inlined", fr.inlined}});
  }
  j["functions"] = fns;
  return j;
}

// Functions with any activity, by self time running, then resumes.
std::vector<size_t> active_functions(const trace::TraceModel& model) {
  std::vector<size_t> ids;
  const auto& st = model.stats();
  for (size_t i = 0; i < st.size(); ++i) {
    if (st[i].resumes + st[i].starts + st[i].destroys > 0) ids.push_back(i);
  }
  std::sort(ids.begin(), ids.end(), [&](size_t a, size_t b) {
    if (st[a].running_ns != st[b].running_ns) return st[a].running_ns > st[b].running_ns;
    if (st[a].resumes != st[b].resumes) return st[a].resumes > st[b].resumes;
    return model.functions()[a].name < model.functions()[b].name;
  });
  return ids;
}

std::string point_label(const trace::TraceModel& model, size_t fn, int64_t index) {
  if (index < 0) return "(suspend index unknown)";
  trace::SuspendPointLocation loc = model.location(static_cast<uint32_t>(fn), index);
  std::string s = "@ " + where(loc.file, loc.line);
  if (loc.kind == "initial") s += " initial suspend";
  if (loc.kind == "final") s += " final suspend";
  if (loc.kind.empty()) s += " (index " + std::to_string(index) + ")";
  return s;
}

std::string function_name(const trace::TraceModel& model, uint32_t fn, const char* unknown) {
  return fn < model.functions().size() ? model.functions()[fn].name : unknown;
}

}  // namespace

std::vector<AsyncStackEntry> resolve_async_stack(const trace::TraceModel& model,
                                                 const std::vector<trace::AsyncFrameRef>& refs) {
  std::vector<AsyncStackEntry> out;
  for (const auto& r : refs) {
    AsyncStackEntry e;
    e.function = r.fn < model.functions().size() ? model.functions()[r.fn].name : "?";
    e.rule = coro::rule_name(r.rule);
    if (r.running) {
      e.state = "running";
    } else if (r.index >= 0) {
      trace::SuspendPointLocation loc = model.location(r.fn, r.index);
      e.file = loc.file;
      e.line = loc.line;
      e.state = loc.kind == "final" ? "done" : "suspended";
    } else {
      e.state = "unknown";
    }
    out.push_back(std::move(e));
  }
  return out;
}

const symbolizer::InlineFrame* blocking_site(const trace::BlockingCall& call) {
  for (const auto& f : call.stack) {
    if (system_path(f.object)) continue;  // libc, libstdc++: the call is further out
    for (const auto& fr : f.functions) {
      if (fr.location.line > 0 && !system_path(fr.location.file)) return &fr;
    }
  }
  return nullptr;
}

namespace {

void write_text_header(std::ostream& out, const TraceReport& r) {
  char line[512];
  std::snprintf(line, sizeof line, "asyncprobe trace: pid %d (%s), %.2f s%s\n", r.pid,
                r.command.c_str(), r.duration_s,
                r.target_exited ? ", ended by the target's exit" : "");
  out << line;
  std::snprintf(line, sizeof line,
                "probes: %zu uprobes%s on %zu coroutine functions + %zu tracepoints, attached in "
                "%.1f ms (programs loaded in %.1f ms), detached in %.1f ms\n",
                r.attach.uprobes, r.attach.uprobe_multi ? " (uprobe_multi)" : "",
                r.functions_probed, r.attach.tracepoints, r.attach.attach_seconds * 1e3,
                r.attach.load_seconds * 1e3, r.detach_s * 1e3);
  out << line;
  if (r.attach.uprobes_failed > 0) {
    out << "  " << r.attach.uprobes_failed << " uprobes could not be attached";
    if (!r.attach.failures.empty()) out << ", e.g. " << r.attach.failures.front();
    out << "\n";
  }
  if (r.probes.lost > 0) {
    out << "WARNING: " << r.probes.lost
        << " events were lost (ring buffer full): the counts below are lower bounds\n";
  }
  for (const auto& w : r.warnings) out << "warning: " << w << "\n";
}

void write_text_functions(std::ostream& out, const trace::TraceModel& model) {
  char line[512];
  std::vector<size_t> ids = active_functions(model);
  out << "\nCOROUTINE FUNCTIONS: " << ids.size() << " active\n";
  std::snprintf(line, sizeof line, "  %-52s %8s %10s %10s %10s %10s %10s %8s\n",
                "function / suspend point", "resumes", "running", "suspended", "max", "p50", "p99",
                "unknown");
  out << line;
  auto row = [&](const std::string& label, uint64_t resumes, uint64_t running_ns,
                 const trace::DurationStats& suspended, uint64_t unknown) {
    std::snprintf(line, sizeof line, "  %-52s %8" PRIu64 " %10s %10s %10s %10s %10s %8" PRIu64 "\n",
                  label.c_str(), resumes, util::format_duration_ns(running_ns).c_str(),
                  util::format_duration_ns(suspended.total_ns()).c_str(),
                  util::format_duration_ns(suspended.max_ns()).c_str(),
                  util::format_duration_ns(suspended.percentile(50)).c_str(),
                  util::format_duration_ns(suspended.percentile(99)).c_str(), unknown);
    out << line;
  };
  for (size_t id : ids) {
    const trace::FunctionStats& fs = model.stats()[id];
    std::string name = model.functions()[id].name;
    if (fs.starts > 0) name += " (" + std::to_string(fs.starts) + " starts)";
    if (name.size() > 52) {  // long (template) names get a line of their own
      out << "  " << name << "\n";
      name.clear();
    }
    row(name, fs.resumes, fs.running_ns, fs.suspended, fs.suspended_unknown_start);
    for (const auto& [index, ps] : fs.points) {
      if (ps.resumes == 0) continue;
      row("  " + point_label(model, id, index), ps.resumes, ps.running_ns, ps.suspended,
          ps.suspended_unknown_start);
    }
  }
  out << "  (suspended: exact intervals from the end of a run to the next resume; unknown: "
         "resumes whose suspension began before the trace)\n";
}

void write_text_blocking(std::ostream& out, const TraceReport& r, const trace::TraceModel& model) {
  out << "\nBLOCKING CALLS INSIDE COROUTINES (>= " << util::format_duration_ns(r.block_threshold_ns)
      << "): " << model.blocking().size() << "\n";
  for (const auto& b : model.blocking()) {
    out << "  " << trace::syscall_name(b.nr) << " "
        << util::format_duration_ns(b.exit_ts - b.enter_ts)
        << (b.in_progress ? " so far (still blocked at the end)" : "") << " on "
        << thread_label(r, b.tid) << " at " << since_start(r, b.enter_ts) << "\n";
    out << "    in " << function_name(model, b.fn, "?");
    if (const symbolizer::InlineFrame* site = blocking_site(b)) {
      out << " at " << where(site->location.file, site->location.line);
    }
    out << "\n";
    if (!b.stack.empty()) {
      out << "    stack: ";
      for (size_t i = 0; i < b.stack.size(); ++i) out << (i ? " < " : "") << frame_text(b.stack[i]);
      out << "\n";
    }
    out << "    async stack: " << async_text(resolve_async_stack(model, b.async_stack)) << "\n";
  }
  if (model.blocking_dropped() > 0) {
    out << "  ... and " << model.blocking_dropped() << " more not kept\n";
  }
}

void write_text_stalls(std::ostream& out, const TraceReport& r, const trace::TraceModel& model) {
  out << "\nEVENT-LOOP STALLS (>= " << util::format_duration_ns(r.block_threshold_ns)
      << "): " << model.stalls().size() << "\n";
  for (const auto& s : model.stalls()) {
    out << "  " << thread_label(r, s.tid) << ": " << util::format_duration_ns(s.end_ts - s.start_ts)
        << " without returning to its wait at " << since_start(r, s.start_ts) << ", " << s.runs
        << " coroutine runs, "
        << (s.ended_by_nr == UINT32_MAX ? std::string("still stalled at the end")
                                        : "ended by " + trace::syscall_name(s.ended_by_nr))
        << "\n";
    if (!s.have_culprit) continue;
    const double share = s.end_ts > s.start_ts ? 100.0 * static_cast<double>(s.culprit_self_ns) /
                                                     static_cast<double>(s.end_ts - s.start_ts)
                                               : 0.0;
    char line[512];
    std::snprintf(line, sizeof line, "    responsible: %s ran %s (%.0f%% of the stall)",
                  function_name(model, s.culprit_fn, "?").c_str(),
                  util::format_duration_ns(s.culprit_self_ns).c_str(), share);
    out << line;
    if (s.culprit_index >= 0) {
      out << ", resumed " << point_label(model, s.culprit_fn, s.culprit_index);
    }
    out << "\n    async stack: " << async_text(resolve_async_stack(model, s.async_stack)) << "\n";
  }
  if (model.stalls_dropped() > 0) {
    out << "  ... and " << model.stalls_dropped() << " more not kept\n";
  }
}

constexpr size_t kTextGroups = 50;  // groups printed; the JSON has them all
constexpr size_t kTextDepth = 6;    // innermost entries printed per stack, then the outermost
constexpr size_t kTextName = 80;    // long (template) names are shortened past this

std::string stack_entry_text(const AsyncStackEntry& e) {
  std::string s = shorten_function_name(e.function, kTextName);
  return e.state == "running" ? s + " [running]" : s + " @ " + where(e.file, e.line);
}

// The youngest and oldest age of a group's coroutines at the end of the trace.
std::pair<uint64_t, uint64_t> group_ages(const TraceReport& r, const trace::SuspendedGroup& g) {
  if (g.age != trace::SuspendedAge::kExact) {
    const uint64_t span = r.end_ts > r.start_ts ? r.end_ts - r.start_ts : 0;
    return {span, span};
  }
  auto age = [&](uint64_t since) { return r.end_ts > since ? r.end_ts - since : 0; };
  return {age(g.since_max_ts), age(g.since_min_ts)};
}

std::string group_age_text(const TraceReport& r, const trace::SuspendedGroup& g) {
  const auto [young, old] = group_ages(r, g);
  switch (g.age) {
    case trace::SuspendedAge::kExact: {
      if (g.since_min_ts == g.since_max_ts) {
        return "suspended since " + since_start(r, g.since_min_ts) + ", for " +
               util::format_duration_ns(old);
      }
      return "suspended since " + since_start(r, g.since_min_ts) + " .. " +
             since_start(r, g.since_max_ts) + ", for " + util::format_duration_ns(young) + " .. " +
             util::format_duration_ns(old);
    }
    case trace::SuspendedAge::kResumed:
      return "resumed during the trace, suspended for < " + util::format_duration_ns(old) +
             " (when is not known)";
    case trace::SuspendedAge::kBeforeTrace:
      return "suspended before the trace began, for >= " + util::format_duration_ns(old);
    case trace::SuspendedAge::kNotStarted:
      return "created during the trace, never resumed (< " + util::format_duration_ns(old) + ")";
  }
  return "";
}

void write_text_group(std::ostream& out, const TraceReport& r, const trace::SuspendedGroup& g) {
  const std::vector<AsyncStackEntry>& st = g.async_stack;
  if (st.empty()) return;
  out << "  " << g.count << "x " << stack_entry_text(st.front()) << ": " << group_age_text(r, g)
      << "\n";
  // Awaiters: the innermost few, then how many are left out, then the outermost.
  const bool all = g.depth <= kTextDepth + 1 && g.depth <= st.size();
  const size_t shown = all ? g.depth : std::min(kTextDepth, st.size());
  for (size_t i = 1; i < shown; ++i) out << "       < " << stack_entry_text(st[i]) << "\n";
  if (all) return;
  const bool has_outer = g.outermost.has_value() || g.depth == st.size();
  const size_t skipped = g.depth - shown - (has_outer ? 1 : 0);
  if (skipped > 0) out << "       ... " << skipped << " more awaiters\n";
  if (g.outermost) {
    out << "       < " << stack_entry_text(*g.outermost) << "\n";
  } else if (g.depth == st.size()) {
    out << "       < " << stack_entry_text(st.back()) << "\n";
  }
}

void write_text_suspended(std::ostream& out, const TraceReport& r) {
  const trace::SuspendedAtEnd& s = r.suspended;
  out << "\nSTILL SUSPENDED AT THE END: " << s.coroutines << " coroutines in " << s.stacks
      << " async stacks (" << s.groups.size() + s.stacks_not_grouped << " distinct)";
  if (r.running_at_end > 0) out << "; " << r.running_at_end << " running";
  out << "\n";
  if (!s.taken) out << "  (no end-of-trace snapshot)\n";
  for (size_t i = 0; i < s.groups.size() && i < kTextGroups; ++i) {
    write_text_group(out, r, s.groups[i]);
  }
  if (s.groups.size() > kTextGroups) {
    out << "  ... and " << s.groups.size() - kTextGroups << " more distinct stacks (see --json)\n";
  }
  if (s.stacks_not_grouped > 0) {
    out << "  ... and " << s.stacks_not_grouped << " stacks past " << s.kMaxGroups
        << " distinct ones, counted only\n";
  }
}

// Everything the trace threw away, in one line: each makes some count a lower bound.
void write_text_dropped(std::ostream& out, const TraceReport& r, const trace::TraceModel& model) {
  const trace::ProbeStats& p = r.probes;
  const std::pair<uint64_t, const char*> dropped[] = {
      {p.lost, "events lost (ring buffer full)"},
      {p.thread_table_full, "events of threads the probes had no room for"},
      {p.nesting_folded, "nested runs folded (deeper than the probes follow)"},
      {p.index_unreadable, "resumes with an unreadable suspend index"},
      {p.stack_copy_failed, "blocking calls without a stack copy"},
      {p.stack_truncated, "blocking-call stacks truncated"},
      {p.malformed_records, "malformed records ignored"},
      {model.blocking_dropped(), "blocking calls not kept"},
      {model.stalls_dropped(), "stalls not kept"},
      {model.slices_dropped(), "timeline runs not kept"},
      {model.stack_desyncs(), "runs ended that the trace never saw start"},
      {model.unknown_functions(), "records naming an unknown function"},
  };
  std::string text;
  for (const auto& [n, what] : dropped) {
    if (n == 0) continue;
    text += (text.empty() ? "" : ", ") + std::to_string(n) + " " + what;
  }
  if (!text.empty()) out << "DROPPED: " << text << "\n";
}

void write_text_accounting(std::ostream& out, const TraceReport& r,
                           const trace::TraceModel& model) {
  const trace::ProbeStats& c = r.probes;
  out << "\nEVENTS: " << c.seen() << " seen (" << c.resume_hits << " resume, " << c.destroy_hits
      << " destroy, " << c.syscall_hits << " syscalls (" << c.timed_syscalls << " timed), "
      << c.context_switches << " context switches), " << c.records << " records, " << c.lost
      << " lost";
  if (c.lost > 0) {
    out << " (" << c.lost_resumes << " resumes, " << c.lost_blocking_calls << " blocking calls)";
  }
  out << "\n";
  write_text_dropped(out, r, model);
  const OverheadEstimate& o = r.overhead;
  const double pct = r.duration_s > 0 ? o.total_ns() / (r.duration_s * 1e9) * 100.0 : 0.0;
  char line[512];
  std::snprintf(line, sizeof line,
                "OVERHEAD: about %s of target time in %.2f s (%.2f%% of one CPU): %" PRIu64
                " uprobe hits x %.2f us + %" PRIu64 " syscalls x %.2f us + %" PRIu64
                " switches x %.2f us (%s)\n",
                util::format_duration_ns(static_cast<uint64_t>(o.total_ns())).c_str(), r.duration_s,
                pct, o.uprobe_hits, o.uprobe_ns / 1e3, o.syscall_hits, o.syscall_pair_ns / 1e3,
                o.sched_hits, o.sched_ns / 1e3,
                o.calibrated ? "costs measured on this machine at start" : "default costs");
  out << line;
}

json attach_json(const TraceReport& r) {
  return json{{"uprobes", r.attach.uprobes},
              {"uprobes_failed", r.attach.uprobes_failed},
              {"uprobes_duplicate", r.attach.uprobes_duplicate},
              {"uprobe_multi", r.attach.uprobe_multi},
              {"tracepoints", r.attach.tracepoints},
              {"functions", r.functions_probed},
              {"load_s", r.attach.load_seconds},
              {"attach_s", r.attach.attach_seconds},
              {"detach_s", r.detach_s},
              {"failures", r.attach.failures}};
}

json point_json(const trace::TraceModel& model, size_t id, int64_t index,
                const trace::PointStats& ps) {
  trace::SuspendPointLocation loc = model.location(static_cast<uint32_t>(id), index);
  json p;
  p["index"] = index;
  p["kind"] = loc.kind;
  p["file"] = loc.file;
  p["line"] = loc.line;
  p["resumes"] = ps.resumes;
  p["running_ns"] = ps.running_ns;
  p["suspended"] = stats_json(ps.suspended);
  p["suspended_unknown_start"] = ps.suspended_unknown_start;
  return p;
}

json functions_json(const trace::TraceModel& model) {
  json fns = json::array();
  for (size_t id : active_functions(model)) {
    const trace::FunctionStats& fs = model.stats()[id];
    const trace::TraceFunction& tf = model.functions()[id];
    json f;
    f["function"] = tf.name;
    f["object"] = tf.loaded != nullptr ? tf.loaded->target_path : "";
    f["resumes"] = fs.resumes;
    f["starts"] = fs.starts;
    f["destroys"] = fs.destroys;
    f["running_ns"] = fs.running_ns;
    f["offcpu_ns"] = fs.offcpu_ns;
    f["suspended"] = stats_json(fs.suspended);
    f["suspended_unknown_start"] = fs.suspended_unknown_start;
    json pts = json::array();
    for (const auto& [index, ps] : fs.points) {
      if (ps.resumes > 0) pts.push_back(point_json(model, id, index, ps));
    }
    f["suspend_points"] = pts;
    fns.push_back(f);
  }
  return fns;
}

json blocking_json(const TraceReport& r, const trace::TraceModel& model) {
  json blocks = json::array();
  for (const auto& b : model.blocking()) {
    json j;
    j["tid"] = b.tid;
    j["syscall"] = trace::syscall_name(b.nr);
    j["start_s"] = static_cast<double>(static_cast<int64_t>(b.enter_ts - r.start_ts)) / 1e9;
    j["duration_ns"] = b.exit_ts - b.enter_ts;
    j["in_progress"] = b.in_progress;
    j["function"] = function_name(model, b.fn, "");
    j["frame"] = b.frame;
    const symbolizer::InlineFrame* site = blocking_site(b);
    j["site"] = site != nullptr ? json{{"function", site->function},
                                       {"file", site->location.file},
                                       {"line", site->location.line}}
                                : json(nullptr);
    json st = json::array();
    for (const auto& f : b.stack) st.push_back(frame_json(f));
    j["stack"] = st;
    j["stack_truncated"] = b.stack_truncated;
    j["async_stack"] = async_json(resolve_async_stack(model, b.async_stack));
    blocks.push_back(j);
  }
  return blocks;
}

json stalls_json(const TraceReport& r, const trace::TraceModel& model) {
  json stalls = json::array();
  for (const auto& s : model.stalls()) {
    json j;
    j["tid"] = s.tid;
    j["start_s"] = static_cast<double>(static_cast<int64_t>(s.start_ts - r.start_ts)) / 1e9;
    j["duration_ns"] = s.end_ts - s.start_ts;
    j["runs"] = s.runs;
    j["ended_by"] =
        s.ended_by_nr == UINT32_MAX ? json(nullptr) : json(trace::syscall_name(s.ended_by_nr));
    if (s.have_culprit) {
      trace::SuspendPointLocation loc = model.location(s.culprit_fn, s.culprit_index);
      j["responsible"] =
          json{{"function", function_name(model, s.culprit_fn, "")},
               {"frame", s.culprit_frame},
               {"running_ns", s.culprit_self_ns},
               {"resumed_from",
                json{{"file", loc.file}, {"line", loc.line}, {"index", s.culprit_index}}}};
    } else {
      j["responsible"] = nullptr;
    }
    j["async_stack"] = async_json(resolve_async_stack(model, s.async_stack));
    stalls.push_back(j);
  }
  return stalls;
}

json suspended_json(const TraceReport& r) {
  const trace::SuspendedAtEnd& s = r.suspended;
  json groups = json::array();
  for (const trace::SuspendedGroup& g : s.groups) {
    const auto [young, old] = group_ages(r, g);
    json j;
    j["count"] = g.count;
    j["age_kind"] = trace::to_string(g.age);
    const AsyncStackEntry* leaf = g.async_stack.empty() ? nullptr : &g.async_stack.front();
    j["function"] = leaf != nullptr ? leaf->function : "";
    j["file"] = leaf != nullptr ? leaf->file : "";
    j["line"] = leaf != nullptr ? leaf->line : 0;
    j["age_ns"] = old;
    j["age_min_ns"] = young;
    if (g.age == trace::SuspendedAge::kExact) {
      j["since_s"] = json::array({static_cast<double>(g.since_min_ts - r.start_ts) / 1e9,
                                  static_cast<double>(g.since_max_ts - r.start_ts) / 1e9});
    }
    j["frames"] = g.frames;
    j["depth"] = g.depth;
    j["async_stack"] = async_json(g.async_stack);
    j["outermost"] = g.outermost ? async_json({*g.outermost})[0] : json(nullptr);
    groups.push_back(j);
  }
  return json{{"taken", s.taken},
              {"coroutines", s.coroutines},
              {"stacks", s.stacks},
              {"distinct", s.groups.size() + s.stacks_not_grouped},
              {"stacks_not_grouped", s.stacks_not_grouped},
              {"interrupted", s.interrupted},
              {"groups", groups}};
}

json events_json(const TraceReport& r, const trace::TraceModel& model) {
  const trace::ProbeStats& c = r.probes;
  return json{{"seen", c.seen()},
              {"resume_hits", c.resume_hits},
              {"destroy_hits", c.destroy_hits},
              {"syscall_hits", c.syscall_hits},
              {"timed_syscalls", c.timed_syscalls},
              {"syscalls_in_coroutines", c.syscalls_in_coroutines},
              {"context_switches", c.context_switches},
              {"records", c.records},
              {"lost", c.lost},
              {"lost_resumes", c.lost_resumes},
              {"lost_blocking_calls", c.lost_blocking_calls},
              {"stack_copy_failed", c.stack_copy_failed},
              {"stack_truncated", c.stack_truncated},
              {"nesting_folded", c.nesting_folded},
              {"index_unreadable", c.index_unreadable},
              {"thread_table_full", c.thread_table_full},
              {"malformed_records", c.malformed_records},
              {"replay_desyncs", model.stack_desyncs()},
              {"unknown_functions", model.unknown_functions()},
              {"timeline_runs_dropped", model.slices_dropped()}};
}

json overhead_json(const TraceReport& r) {
  const OverheadEstimate& o = r.overhead;
  return json{
      {"calibrated", o.calibrated},
      {"uprobe_ns", o.uprobe_ns},
      {"syscall_pair_ns", o.syscall_pair_ns},
      {"sched_ns", o.sched_ns},
      {"uprobe_hits", o.uprobe_hits},
      {"syscall_hits", o.syscall_hits},
      {"sched_hits", o.sched_hits},
      {"estimated_ns", o.total_ns()},
      {"percent_of_one_cpu", r.duration_s > 0 ? o.total_ns() / (r.duration_s * 1e9) * 100.0 : 0.0}};
}

}  // namespace

void write_trace_text(std::ostream& out, const TraceReport& r, const trace::TraceModel& model) {
  write_text_header(out, r);
  write_text_functions(out, model);
  write_text_blocking(out, r, model);
  write_text_stalls(out, r, model);
  write_text_suspended(out, r);
  write_text_accounting(out, r, model);
}

void write_trace_json(std::ostream& out, const TraceReport& r, const trace::TraceModel& model) {
  json doc;
  doc["pid"] = r.pid;
  doc["command"] = r.command;
  doc["duration_s"] = r.duration_s;
  doc["target_exited"] = r.target_exited;
  doc["block_threshold_ns"] = r.block_threshold_ns;
  doc["attach"] = attach_json(r);
  json threads = json::array();
  for (const auto& [tid, name] : r.thread_names) {
    threads.push_back(json{{"tid", tid}, {"name", name}});
  }
  doc["threads"] = threads;
  doc["functions"] = functions_json(model);
  doc["blocking_calls"] = blocking_json(r, model);
  doc["blocking_calls_dropped"] = model.blocking_dropped();
  doc["stalls"] = stalls_json(r, model);
  doc["stalls_dropped"] = model.stalls_dropped();
  doc["suspended_at_end"] = suspended_json(r);
  doc["running_at_end"] = r.running_at_end;
  doc["events"] = events_json(r, model);
  doc["overhead"] = overhead_json(r);
  doc["warnings"] = r.warnings;
  out << doc.dump(2) << "\n";
}

}  // namespace asyncprobe::output
