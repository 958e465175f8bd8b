#include "userspace/output/trace_report.h"
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

uint64_t total_lost(const kernel::TraceCounters& c) { return c[TRACE_CTR_LOST]; }

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

void write_trace_text(std::ostream& out, const TraceReport& r, const trace::TraceModel& model) {
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
  if (total_lost(r.counters) > 0) {
    out << "WARNING: " << total_lost(r.counters)
        << " events were lost (ring buffer full): the counts below are lower bounds\n";
  }
  for (const auto& w : r.warnings) out << "warning: " << w << "\n";

  // Functions and suspend points.
  std::vector<size_t> ids = active_functions(model);
  out << "\nCOROUTINE FUNCTIONS: " << ids.size() << " active\n";
  std::snprintf(line, sizeof line, "  %-52s %8s %10s %10s %10s %10s %10s %8s\n",
                "function / suspend point", "resumes", "running", "suspended", "max", "p50", "p99",
                "unknown");
  out << line;
  for (size_t id : ids) {
    const trace::FunctionStats& fs = model.stats()[id];
    std::string name = model.functions()[id].name;
    if (fs.starts > 0) name += " (" + std::to_string(fs.starts) + " starts)";
    if (name.size() > 52) {  // long (template) names get a line of their own
      out << "  " << name << "\n";
      name.clear();
    }
    std::snprintf(line, sizeof line, "  %-52s %8" PRIu64 " %10s %10s %10s %10s %10s %8" PRIu64 "\n",
                  name.c_str(), fs.resumes, util::format_duration_ns(fs.running_ns).c_str(),
                  util::format_duration_ns(fs.suspended.total_ns()).c_str(),
                  util::format_duration_ns(fs.suspended.max_ns()).c_str(),
                  util::format_duration_ns(fs.suspended.percentile(50)).c_str(),
                  util::format_duration_ns(fs.suspended.percentile(99)).c_str(),
                  fs.suspended_unknown_start);
    out << line;
    for (const auto& [index, ps] : fs.points) {
      if (ps.resumes == 0) continue;
      std::string label = "  " + point_label(model, id, index);
      std::snprintf(line, sizeof line,
                    "  %-52s %8" PRIu64 " %10s %10s %10s %10s %10s %8" PRIu64 "\n", label.c_str(),
                    ps.resumes, util::format_duration_ns(ps.running_ns).c_str(),
                    util::format_duration_ns(ps.suspended.total_ns()).c_str(),
                    util::format_duration_ns(ps.suspended.max_ns()).c_str(),
                    util::format_duration_ns(ps.suspended.percentile(50)).c_str(),
                    util::format_duration_ns(ps.suspended.percentile(99)).c_str(),
                    ps.suspended_unknown_start);
      out << line;
    }
  }
  out << "  (suspended: exact intervals from the end of a run to the next resume; unknown: "
         "resumes whose suspension began before the trace)\n";

  // Blocking calls.
  out << "\nBLOCKING CALLS INSIDE COROUTINES (>= " << util::format_duration_ns(r.block_threshold_ns)
      << "): " << model.blocking().size() << "\n";
  for (const auto& b : model.blocking()) {
    out << "  " << kernel::syscall_name(b.nr) << " "
        << util::format_duration_ns(b.exit_ts - b.enter_ts)
        << (b.in_progress ? " so far (still blocked at the end)" : "") << " on "
        << thread_label(r, b.tid) << " at " << since_start(r, b.enter_ts) << "\n";
    const std::string fn = b.fn < model.functions().size() ? model.functions()[b.fn].name : "?";
    out << "    in " << fn;
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

  // Stalls.
  out << "\nEVENT-LOOP STALLS (>= " << util::format_duration_ns(r.block_threshold_ns)
      << "): " << model.stalls().size() << "\n";
  for (const auto& s : model.stalls()) {
    out << "  " << thread_label(r, s.tid) << ": " << util::format_duration_ns(s.end_ts - s.start_ts)
        << " without returning to its wait at " << since_start(r, s.start_ts) << ", " << s.runs
        << " coroutine runs, "
        << (s.ended_by_nr == UINT32_MAX ? std::string("still stalled at the end")
                                        : "ended by " + kernel::syscall_name(s.ended_by_nr))
        << "\n";
    if (s.have_culprit) {
      const std::string fn =
          s.culprit_fn < model.functions().size() ? model.functions()[s.culprit_fn].name : "?";
      double share = s.end_ts > s.start_ts ? 100.0 * static_cast<double>(s.culprit_self_ns) /
                                                 static_cast<double>(s.end_ts - s.start_ts)
                                           : 0.0;
      std::snprintf(line, sizeof line, "    responsible: %s ran %s (%.0f%% of the stall)",
                    fn.c_str(), util::format_duration_ns(s.culprit_self_ns).c_str(), share);
      out << line;
      if (s.culprit_index >= 0) {
        out << ", resumed " << point_label(model, s.culprit_fn, s.culprit_index);
      }
      out << "\n    async stack: " << async_text(resolve_async_stack(model, s.async_stack)) << "\n";
    }
  }

  // Still suspended.
  out << "\nSTILL SUSPENDED AT THE END: " << r.suspended.size() << " coroutines (oldest first)";
  if (r.running_at_end > 0) out << "; " << r.running_at_end << " running";
  out << "\n";
  size_t shown = 0;
  for (const auto& s : r.suspended) {
    if (++shown > 50) {
      out << "  ... and " << (r.suspended.size() - 50) << " more (see --json)\n";
      break;
    }
    std::string age;
    if (s.age_kind == "exact") {
      age = util::format_duration_ns(s.age_ns);
    } else if (s.age_kind == "before-trace") {
      age = ">= " + util::format_duration_ns(s.age_ns);
    } else {
      age = "< " + util::format_duration_ns(s.age_ns);
    }
    std::snprintf(line, sizeof line, "  %-12s ", age.c_str());
    out << line << async_text(s.async_stack);
    if (s.age_kind == "before-trace") out << "  (suspended before the trace began)";
    if (s.age_kind == "not-started") out << "  (created during the trace, never resumed)";
    out << "\n";
  }

  // Accounting.
  const kernel::TraceCounters& c = r.counters;
  uint64_t hits = c[TRACE_CTR_RESUME_HITS] + c[TRACE_CTR_DESTROY_HITS] + c[TRACE_CTR_SYS_ALL_HITS] +
                  c[TRACE_CTR_SCHED_HITS];
  out << "\nEVENTS: " << hits << " seen (" << c[TRACE_CTR_RESUME_HITS] << " resume, "
      << c[TRACE_CTR_DESTROY_HITS] << " destroy, " << c[TRACE_CTR_SYS_ALL_HITS] << " syscalls ("
      << c[TRACE_CTR_SYS_ENTER_HITS] << " timed), " << c[TRACE_CTR_SCHED_HITS]
      << " context switches), " << c[TRACE_CTR_EMITTED] << " records, " << total_lost(c) << " lost";
  if (total_lost(c) > 0) {
    out << " (" << c[TRACE_CTR_LOST_RESUME] << " resumes, " << c[TRACE_CTR_LOST_BLOCK]
        << " blocking calls)";
  }
  out << "\n";
  const OverheadEstimate& o = r.overhead;
  double pct = r.duration_s > 0 ? o.total_ns() / (r.duration_s * 1e9) * 100.0 : 0.0;
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

void write_trace_json(std::ostream& out, const TraceReport& r, const trace::TraceModel& model) {
  json doc;
  doc["pid"] = r.pid;
  doc["command"] = r.command;
  doc["duration_s"] = r.duration_s;
  doc["target_exited"] = r.target_exited;
  doc["block_threshold_ns"] = r.block_threshold_ns;
  doc["attach"] = json{{"uprobes", r.attach.uprobes},
                       {"uprobes_failed", r.attach.uprobes_failed},
                       {"uprobes_duplicate", r.attach.uprobes_duplicate},
                       {"uprobe_multi", r.attach.uprobe_multi},
                       {"tracepoints", r.attach.tracepoints},
                       {"functions", r.functions_probed},
                       {"load_s", r.attach.load_seconds},
                       {"attach_s", r.attach.attach_seconds},
                       {"detach_s", r.detach_s},
                       {"failures", r.attach.failures}};
  json threads = json::array();
  for (const auto& [tid, name] : r.thread_names)
    threads.push_back(json{{"tid", tid}, {"name", name}});
  doc["threads"] = threads;

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
      if (ps.resumes == 0) continue;
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
      pts.push_back(p);
    }
    f["suspend_points"] = pts;
    fns.push_back(f);
  }
  doc["functions"] = fns;

  json blocks = json::array();
  for (const auto& b : model.blocking()) {
    json j;
    j["tid"] = b.tid;
    j["syscall"] = kernel::syscall_name(b.nr);
    j["start_s"] = static_cast<double>(static_cast<int64_t>(b.enter_ts - r.start_ts)) / 1e9;
    j["duration_ns"] = b.exit_ts - b.enter_ts;
    j["in_progress"] = b.in_progress;
    j["function"] = b.fn < model.functions().size() ? model.functions()[b.fn].name : "";
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
  doc["blocking_calls"] = blocks;
  doc["blocking_calls_dropped"] = model.blocking_dropped();

  json stalls = json::array();
  for (const auto& s : model.stalls()) {
    json j;
    j["tid"] = s.tid;
    j["start_s"] = static_cast<double>(static_cast<int64_t>(s.start_ts - r.start_ts)) / 1e9;
    j["duration_ns"] = s.end_ts - s.start_ts;
    j["runs"] = s.runs;
    j["ended_by"] =
        s.ended_by_nr == UINT32_MAX ? json(nullptr) : json(kernel::syscall_name(s.ended_by_nr));
    if (s.have_culprit) {
      trace::SuspendPointLocation loc = model.location(s.culprit_fn, s.culprit_index);
      j["responsible"] = json{
          {"function",
           s.culprit_fn < model.functions().size() ? model.functions()[s.culprit_fn].name : ""},
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
  doc["stalls"] = stalls;

  json sus = json::array();
  for (const auto& s : r.suspended) {
    sus.push_back(json{{"frame", s.frame},
                       {"function", s.function},
                       {"file", s.file},
                       {"line", s.line},
                       {"age_ns", s.age_ns},
                       {"age_kind", s.age_kind},
                       {"async_stack", async_json(s.async_stack)}});
  }
  doc["suspended_at_end"] = sus;
  doc["running_at_end"] = r.running_at_end;

  const kernel::TraceCounters& c = r.counters;
  doc["events"] = json{{"seen", c[TRACE_CTR_RESUME_HITS] + c[TRACE_CTR_DESTROY_HITS] +
                                    c[TRACE_CTR_SYS_ALL_HITS] + c[TRACE_CTR_SCHED_HITS]},
                       {"resume_hits", c[TRACE_CTR_RESUME_HITS]},
                       {"destroy_hits", c[TRACE_CTR_DESTROY_HITS]},
                       {"syscall_hits", c[TRACE_CTR_SYS_ALL_HITS]},
                       {"timed_syscalls", c[TRACE_CTR_SYS_ENTER_HITS]},
                       {"syscalls_in_coroutines", c[TRACE_CTR_IN_CORO_SYSCALLS]},
                       {"context_switches", c[TRACE_CTR_SCHED_HITS]},
                       {"records", c[TRACE_CTR_EMITTED]},
                       {"lost", c[TRACE_CTR_LOST]},
                       {"lost_resumes", c[TRACE_CTR_LOST_RESUME]},
                       {"lost_blocking_calls", c[TRACE_CTR_LOST_BLOCK]},
                       {"stack_copy_failed", c[TRACE_CTR_STACK_FAIL]},
                       {"stack_truncated", c[TRACE_CTR_STACK_TRUNC]},
                       {"nesting_folded", c[TRACE_CTR_DEPTH_FOLD]},
                       {"index_unreadable", c[TRACE_CTR_INDEX_FAIL]},
                       {"thread_table_full", c[TRACE_CTR_NO_THREAD_STATE]},
                       {"malformed_records", model.malformed()},
                       {"replay_desyncs", model.stack_desyncs()}};
  const OverheadEstimate& o = r.overhead;
  doc["overhead"] = json{
      {"calibrated", o.calibrated},
      {"uprobe_ns", o.uprobe_ns},
      {"syscall_pair_ns", o.syscall_pair_ns},
      {"sched_ns", o.sched_ns},
      {"uprobe_hits", o.uprobe_hits},
      {"syscall_hits", o.syscall_hits},
      {"sched_hits", o.sched_hits},
      {"estimated_ns", o.total_ns()},
      {"percent_of_one_cpu", r.duration_s > 0 ? o.total_ns() / (r.duration_s * 1e9) * 100.0 : 0.0}};
  doc["warnings"] = r.warnings;
  out << doc.dump(2) << "\n";
}

}  // namespace asyncprobe::output
