#include "userspace/output/report_json.h"
#include "userspace/util/format.h"

#include <cinttypes>
#include <cstdio>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace asyncprobe::output {

namespace {

// Insertion order keeps "schema" first and related fields together for human readers.
using json = nlohmann::ordered_json;

// Addresses are strings: JSON numbers lose precision past 2^53 in most consumers.
json id_or_null(size_t i) { return i == snapshot::kNoFrame ? json(nullptr) : json(i); }

json suspend_json(model::SuspendPoint::Kind kind, const std::string& file, int line, json index) {
  return json{{"kind", to_string(kind)}, {"file", file}, {"line", line}, {"index", index}};
}

json exception_json(const model::HeldException& e) {
  return json{{"type", e.type.empty() ? json(nullptr) : json(e.type)},
              {"what", e.has_what ? json(e.what) : json(nullptr)},
              {"what_truncated", e.what_truncated},
              {"object", util::hex(e.object)},
              {"error", e.error.empty() ? json(nullptr) : json(e.error)}};
}

// Where a running coroutine is (docs/SNAPSHOT_FORMAT.md, "running"), or null.
json running_json(const std::optional<model::RunningOn>& r) {
  if (!r) return json(nullptr);
  return json{{"thread", r->thread}, {"syscall", r->syscall},     {"file", r->file},
              {"line", r->line},     {"uncertain", r->uncertain}, {"rule", r->rule}};
}

// The thread a coroutine runs on: only when it is the running one (not a candidate).
json thread_of(const model::CoroFrame& f) {
  return f.state == model::FrameState::kRunning && f.running ? json(f.running->thread)
                                                             : json(nullptr);
}

json coroutine_json(const model::Snapshot& snap, const snapshot::AsyncForest& forest, size_t i) {
  const model::CoroFrame& f = snap.frames[i];
  const snapshot::FrameLink& l = forest.links[i];
  json s = suspend_json(f.suspend.kind, f.suspend.file, f.suspend.line, f.suspend.index);
  s["rule"] = f.suspend.rule;
  json j{{"id", i},
         {"address", util::hex(f.address)},
         {"resume_fn", util::hex(f.resume_fn)},
         {"destroy_fn", util::hex(f.destroy_fn)},
         {"function", f.function},
         {"object", f.object},
         {"state", to_string(f.state)},
         {"suspend", std::move(s)},
         {"awaiter_id", id_or_null(l.awaiter)},
         {"awaiter_address", f.awaiter == 0 ? json(nullptr) : json(util::hex(f.awaiter))},
         {"awaiter_rule", f.awaiter == 0 ? json(nullptr) : json(coro::rule_name(f.awaiter_rule))},
         {"generic_link", f.awaiter != 0 && coro::is_generic(f.awaiter_rule)},
         {"link", to_string(l.link)},
         {"parent_id", id_or_null(l.parent)},
         {"root_id", id_or_null(l.root)},
         {"depth", l.depth},
         {"duplicate", l.duplicate},
         {"on_stack", f.on_stack},
         {"elided", f.elided},
         {"stuck", f.stuck},
         {"stuck_for_s", f.stuck_for_s},
         {"unchanged", f.unchanged},
         {"unchanged_for_s", f.unchanged_for_s},
         {"stuck_evidence", to_string(f.stuck_evidence)},
         {"resumes", f.resumes < 0 ? json(nullptr) : json(f.resumes)},
         {"exception", f.exception ? exception_json(*f.exception) : json(nullptr)},
         {"orphaned", f.orphaned},
         {"thread", thread_of(f)},
         {"running", running_json(f.running)}};
  return j;
}

// Appends `s` as a JSON string exactly as dump() writes it (a test holds the two equal). Strings
// with non-ASCII bytes go through nlohmann itself for its UTF-8 check and replacement.
void append_string(std::string& out, const std::string& s) {
  for (const char ch : s) {
    if (static_cast<unsigned char>(ch) >= 0x80) {
      out += json(s).dump(-1, ' ', false, json::error_handler_t::replace);
      return;
    }
  }
  out += '"';
  for (const char ch : s) {
    switch (ch) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(ch));
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

// One coroutine as compact JSON text, the same bytes as coroutine_json(...).dump(-1) but without
// building the value: this row is written once per coroutine and dominates large reports.
std::string coroutine_row(const model::Snapshot& snap, const snapshot::AsyncForest& forest,
                          size_t i) {
  const model::CoroFrame& f = snap.frames[i];
  const snapshot::FrameLink& l = forest.links[i];
  auto id = [](size_t v) {
    return v == snapshot::kNoFrame ? std::string("null") : std::to_string(v);
  };
  auto flag = [](bool b) { return b ? "true" : "false"; };
  std::string r;
  r.reserve(640);
  r += "{\"id\":" + std::to_string(i);
  r += ",\"address\":\"" + util::hex(f.address) + '"';
  r += ",\"resume_fn\":\"" + util::hex(f.resume_fn) + '"';
  r += ",\"destroy_fn\":\"" + util::hex(f.destroy_fn) + '"';
  r += ",\"function\":";
  append_string(r, f.function);
  r += ",\"object\":";
  append_string(r, f.object);
  r += ",\"state\":\"";
  r += to_string(f.state);
  r += "\",\"suspend\":{\"kind\":\"";
  r += to_string(f.suspend.kind);
  r += "\",\"file\":";
  append_string(r, f.suspend.file);
  r += ",\"line\":" + std::to_string(f.suspend.line);
  r += ",\"index\":" + std::to_string(f.suspend.index);
  r += ",\"rule\":";
  append_string(r, f.suspend.rule);
  r += "},\"awaiter_id\":" + id(l.awaiter);
  r += ",\"awaiter_address\":";
  r += f.awaiter == 0 ? std::string("null") : '"' + util::hex(f.awaiter) + '"';
  r += ",\"awaiter_rule\":";
  if (f.awaiter == 0) {
    r += "null";
  } else {
    append_string(r, coro::rule_name(f.awaiter_rule));
  }
  r += ",\"generic_link\":";
  r += flag(f.awaiter != 0 && coro::is_generic(f.awaiter_rule));
  r += ",\"link\":\"";
  r += to_string(l.link);
  r += "\",\"parent_id\":" + id(l.parent);
  r += ",\"root_id\":" + id(l.root);
  r += ",\"depth\":" + std::to_string(l.depth);
  r += ",\"duplicate\":";
  r += flag(l.duplicate);
  r += ",\"on_stack\":";
  r += flag(f.on_stack);
  r += ",\"elided\":";
  r += flag(f.elided);
  r += ",\"stuck\":";
  r += flag(f.stuck);
  // nlohmann's own number format (shortest round trip, ".0" on integers, null for NaN).
  r += ",\"stuck_for_s\":" + json(f.stuck_for_s).dump();
  r += ",\"unchanged\":";
  r += flag(f.unchanged);
  r += ",\"unchanged_for_s\":" + json(f.unchanged_for_s).dump();
  r += ",\"stuck_evidence\":\"";
  r += to_string(f.stuck_evidence);
  r += "\",\"resumes\":" + (f.resumes < 0 ? std::string("null") : std::to_string(f.resumes));
  r += ",\"exception\":";
  r += f.exception
           ? exception_json(*f.exception).dump(-1, ' ', false, json::error_handler_t::replace)
           : std::string("null");
  r += ",\"orphaned\":";
  r += flag(f.orphaned);
  r += ",\"thread\":" + thread_of(f).dump();
  r += ",\"running\":";
  r += running_json(f.running).dump(-1, ' ', false, json::error_handler_t::replace);
  r += '}';
  return r;
}

// Emits stack entries one at a time: the top-level trees in display order, then the subtrees the
// nesting bound cut off, each naming the node it continues.
class StackWriter {
 public:
  StackWriter(const snapshot::AsyncForest& forest, size_t max_nesting)
      : forest_(forest), max_nesting_(max_nesting < 1 ? 1 : max_nesting) {}

  template <class Emit>
  void each(Emit&& emit) {
    for (size_t t : forest_.top_nodes) emit(node(t, 1));
    // New cut-offs may be queued while emitting, hence the index loop.
    for (size_t i = 0; i < pending_.size(); ++i) {
      json entry = node(pending_[i].second, 1);
      entry["continues_node"] = pending_[i].first;
      emit(entry);
    }
  }

 private:
  // Recursion is bounded by max_nesting_, whatever the depth of the tree.
  json node(size_t id, size_t level) {
    const snapshot::StackNode& n = forest_.nodes[id];
    json j{{"node_id", id},
           {"count", n.count()},
           {"function", n.function},
           {"suspend",
            suspend_json(n.kind, n.file, n.line, n.line == 0 ? json(n.index) : json(nullptr))},
           {"state", to_string(n.state)},
           {"link", to_string(n.link)},
           {"awaiter_rule",
            n.rule == coro::AwaiterRule::kNone ? json(nullptr) : json(coro::rule_name(n.rule))},
           {"generic_link", n.link == snapshot::LinkKind::kLinked && coro::is_generic(n.rule)},
           {"uncertain", n.uncertain()},
           {"stuck", n.stuck},
           {"stuck_for_s", n.stuck_for_s},
           {"unchanged", n.unchanged},
           {"unchanged_for_s", n.unchanged_for_s},
           {"depth_cut_children", n.cut_children},
           {"frame_ids", n.frames}};
    json kids = json::array();
    if (level >= max_nesting_ && !n.children.empty()) {
      for (size_t c : n.children) pending_.emplace_back(id, c);
      j["children_continued"] = true;
    } else {
      for (size_t c : n.children) kids.push_back(node(c, level + 1));
    }
    j["children"] = std::move(kids);
    return j;
  }

  const snapshot::AsyncForest& forest_;
  size_t max_nesting_;
  std::vector<std::pair<size_t, size_t>> pending_;  // (parent node, child node)
};

json summary_json(const model::Snapshot& snap, const snapshot::AsyncForest& forest) {
  size_t suspended = 0, done = 0, unknown = 0, running = 0, stuck = 0, unchanged = 0;
  for (const model::CoroFrame& f : snap.frames) {
    suspended += f.state == model::FrameState::kSuspended;
    done += f.state == model::FrameState::kDone;
    unknown += f.state == model::FrameState::kUnknown;
    running += f.state == model::FrameState::kRunning;
    stuck += f.stuck;
    unchanged += f.unchanged;
  }
  const model::StuckProbeInfo& p = snap.stuck_probe;
  json probe{{"ran", p.ran},
             {"note", p.note},
             {"functions", p.functions},
             {"functions_hot", p.functions_hot},
             {"functions_failed", p.functions_failed},
             {"frames", p.frames},
             {"hits", p.hits},
             {"covered_s", p.covered_s},
             {"attach_s", p.attach_s},
             {"detach_s", p.detach_s}};
  return json{{"coroutines", snap.frames.size()},
              {"stacks", forest.stack_count()},
              {"distinct_stacks", forest.distinct_stack_count()},
              {"threads", snap.threads.size()},
              {"suspended", suspended},
              {"done", done},
              {"unknown", unknown},
              {"running", running},
              {"stuck", stuck},
              {"unchanged", unchanged},
              {"bytes_scanned", snap.bytes_scanned},
              {"scan_seconds", snap.scan_seconds},
              {"window_seconds", snap.window_seconds},
              {"stuck_detection", snap.window_seconds > 0.0},
              {"stuck_probe", std::move(probe)},
              {"max_depth", forest.max_depth},
              {"uncertain", forest.uncertain()},
              {"depth_cut", forest.depth_cut()}};
}

json stuck_group_json(const snapshot::StuckGroup& g) {
  return json{{"count", g.count()},
              {"function", g.function},
              {"suspend",
               suspend_json(g.kind, g.file, g.line, g.line == 0 ? json(g.index) : json(nullptr))},
              {"leaves", g.leaves()},
              {"stuck_for_s", g.stuck_for_s},
              {"max_stuck_for_s", g.max_stuck_for_s},
              {"frame_ids", g.frames}};
}

json lock_wait_json(const model::LockWait& w) {
  return json{{"address", util::hex(w.address)},
              {"type", w.type},
              {"owner", w.owner},
              {"owner_died", w.owner_died}};
}

json native_stack_json(const std::vector<model::NativeFrame>& frames) {
  json out = json::array();
  for (const model::NativeFrame& f : frames) {
    out.push_back(json{{"pc", util::hex(f.pc)},
                       {"function", f.function.empty() ? json(nullptr) : json(f.function)},
                       {"file", f.file.empty() ? json(nullptr) : json(f.file)},
                       {"line", f.line}});
  }
  return out;
}

// One diagnosis: the fields of its kind only (docs/SNAPSHOT_FORMAT.md, "diagnoses").
json diagnosis_json(const model::Diagnosis& d) {
  json j{{"kind", model::to_string(d.kind)}};
  using K = model::Diagnosis::Kind;
  if (d.kind == K::kThreadDeadlock || d.kind == K::kLockOwnerGone) {
    j["threads"] = d.threads;
    json locks = json::array();
    for (const model::Diagnosis::Lock& l : d.locks) {
      locks.push_back(json{{"address", util::hex(l.address)},
                           {"type", l.type},
                           {"owner", l.owner},
                           {"owner_alive", l.owner_alive},
                           {"owner_died", l.owner_died},
                           {"waiters", l.waiters}});
    }
    j["locks"] = std::move(locks);
  } else {
    j["frame_ids"] = d.frame_ids;
  }
  if (d.exception) j["exception"] = exception_json(*d.exception);
  j["summary"] = d.summary;
  return j;
}

json diagnoses_json(const model::Snapshot& snap) {
  json out = json::array();
  for (const model::Diagnosis& d : snap.diagnoses) out.push_back(diagnosis_json(d));
  return out;
}

json thread_json(const model::ThreadInfo& t) {
  return json{
      {"tid", t.tid},
      {"name", t.name},
      {"state", std::string(1, t.state)},
      {"syscall", t.syscall},
      {"syscall_nr", t.syscall_nr},
      {"sp", util::hex(t.sp)},
      {"pc", util::hex(t.pc)},
      {"stack_lo", util::hex(t.stack_lo)},
      {"stack_hi", util::hex(t.stack_hi)},
      {"lock_wait", t.lock_wait ? lock_wait_json(*t.lock_wait) : json(nullptr)},
      {"native_stack", native_stack_json(t.native_stack)},
      {"running_coroutine", t.running_frame < 0 ? json(nullptr) : json(t.running_frame)},
      {"running_function", t.running_function.empty() ? json(nullptr) : json(t.running_function)},
      {"resume_native_frame",
       t.resume_native_frame < 0 ? json(nullptr) : json(t.resume_native_frame)},
      {"running_candidates", t.running_candidates}};
}

json anomalies_json(const snapshot::AsyncForest& forest) {
  json cycles = json::array();
  for (const snapshot::AwaitCycle& c : forest.cycles) {
    cycles.push_back(json{{"frame_ids", c.frames}, {"cut_id", c.frames.front()}});
  }
  json dangling = json::array();
  for (const snapshot::DanglingEdge& d : forest.dangling) {
    dangling.push_back(json{{"id", d.frame}, {"awaiter_address", util::hex(d.awaiter)}});
  }
  json cuts = json::array();
  for (const snapshot::DepthCut& d : forest.depth_cuts) {
    cuts.push_back(
        json{{"id", d.frame}, {"parent_id", d.parent}, {"root_id", d.root}, {"depth", d.depth}});
  }
  json dups = json::array();
  for (const snapshot::DuplicateAddress& d : forest.duplicates) {
    dups.push_back(json{{"address", util::hex(d.address)}, {"frame_ids", d.frames}});
  }
  return json{{"cycles", std::move(cycles)},
              {"dangling", std::move(dangling)},
              {"depth_cuts", std::move(cuts)},
              {"duplicates", std::move(dups)}};
}

// Writes the top-level object field by field, so a document of a million coroutines never exists
// in memory at once. Compact output is byte for byte nlohmann's dump(); pretty output puts each
// coroutine on one line and keeps small flat values inline.
class Emitter {
 public:
  Emitter(std::ostream& out, int indent) : out_(out), indent_(indent < 0 ? -1 : indent) {}

  void begin() { out_ << '{'; }
  void end() { out_ << newline(0) << "}\n"; }

  void field(const char* key, const json& v) {
    put_key(key);
    put(v, 1);
  }

  void begin_array(const char* key) {
    put_key(key);
    out_ << '[';
    first_element_ = true;
  }
  void element(const json& v) {
    out_ << (first_element_ ? "" : ",") << newline(2);
    first_element_ = false;
    put(v, 2);
  }
  // An element already rendered as compact JSON text.
  void element_text(const std::string& text) {
    out_ << (first_element_ ? "" : ",") << newline(2) << text;
    first_element_ = false;
  }
  void end_array() {
    if (!first_element_) out_ << newline(1);
    out_ << ']';
  }

 private:
  bool pretty() const { return indent_ >= 0; }

  std::string newline(int level) const {
    return pretty() ? "\n" + std::string(static_cast<size_t>(level * indent_), ' ') : "";
  }

  void put_key(const char* key) {
    out_ << (first_field_ ? "" : ",") << newline(1) << '"' << key << "\":" << (pretty() ? " " : "");
    first_field_ = false;
  }

  void put(const json& v, int level) {
    if (!pretty()) {
      out_ << v.dump(-1, ' ', false, json::error_handler_t::replace);
      return;
    }
    std::string text;
    layout(text, v, level);
    out_ << text;
  }

  static std::string scalar(const json& v) {
    return v.dump(-1, ' ', false, json::error_handler_t::replace);
  }

  // Small flat values stay on one line: an id list of a thousand frames or a suspend point
  // spread over one line per item would bury the tree. Bigger values, and lists of strings
  // (warnings), go one item per line.
  static bool inline_value(const json& v) {
    if (!v.is_structured()) return true;
    if (v.is_object() && v.size() > 5) return false;
    for (const auto& item : v) {
      if (item.is_structured() || (v.is_array() && item.is_string())) return false;
    }
    return true;
  }

  void layout(std::string& out, const json& v, int level) const {
    if (!v.is_structured()) {
      out += scalar(v);
      return;
    }
    const bool obj = v.is_object();
    if (v.empty()) {
      out += obj ? "{}" : "[]";
      return;
    }
    const bool flat = inline_value(v);
    out += obj ? '{' : '[';
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (!first) out += flat ? ", " : ",";
      first = false;
      if (!flat) out += newline(level + 1);
      if (obj) out += scalar(json(it.key())) + ": ";
      // Depth is bounded: stack entries nest at most max_nesting nodes.
      layout(out, it.value(), level + 1);
    }
    if (!flat) out += newline(level);
    out += obj ? '}' : ']';
  }

  std::ostream& out_;
  int indent_;
  bool first_field_ = true;
  bool first_element_ = true;
};

}  // namespace

nlohmann::ordered_json snapshot_to_json(const model::Snapshot& snap,
                                        const snapshot::AsyncForest& forest,
                                        const std::vector<snapshot::StuckGroup>& stuck,
                                        const JsonReportOptions& opts) {
  json doc;
  doc["schema"] = kSnapshotSchema;
  doc["pid"] = snap.pid;
  doc["command"] = snap.command;
  doc["executable"] = snap.executable;
  doc["summary"] = summary_json(snap, forest);
  doc["diagnoses"] = diagnoses_json(snap);
  doc["diagnosis_limits"] = snap.diagnosis_limits;
  json coroutines = json::array();
  for (size_t i = 0; i < snap.frames.size(); ++i) {
    coroutines.push_back(coroutine_json(snap, forest, i));
  }
  doc["coroutines"] = std::move(coroutines);
  json stacks = json::array();
  StackWriter(forest, opts.max_nesting).each([&](json e) { stacks.push_back(std::move(e)); });
  doc["stacks"] = std::move(stacks);
  json groups = json::array();
  for (const snapshot::StuckGroup& g : stuck) groups.push_back(stuck_group_json(g));
  doc["stuck"] = std::move(groups);
  json threads = json::array();
  for (const model::ThreadInfo& t : snap.threads) threads.push_back(thread_json(t));
  doc["threads"] = std::move(threads);
  doc["warnings"] = snap.warnings;
  doc["anomalies"] = anomalies_json(forest);
  return doc;
}

void write_json_report(std::ostream& out, const model::Snapshot& snap,
                       const snapshot::AsyncForest& forest,
                       const std::vector<snapshot::StuckGroup>& stuck,
                       const JsonReportOptions& opts) {
  // Same fields, same order as snapshot_to_json (a test holds them equal), streamed.
  Emitter e(out, opts.indent);
  e.begin();
  e.field("schema", kSnapshotSchema);
  e.field("pid", snap.pid);
  e.field("command", snap.command);
  e.field("executable", snap.executable);
  e.field("summary", summary_json(snap, forest));
  e.field("diagnoses", diagnoses_json(snap));
  e.field("diagnosis_limits", snap.diagnosis_limits);
  e.begin_array("coroutines");
  for (size_t i = 0; i < snap.frames.size(); ++i) e.element_text(coroutine_row(snap, forest, i));
  e.end_array();
  e.begin_array("stacks");
  StackWriter(forest, opts.max_nesting).each([&](const json& entry) { e.element(entry); });
  e.end_array();
  e.begin_array("stuck");
  for (const snapshot::StuckGroup& g : stuck) e.element(stuck_group_json(g));
  e.end_array();
  e.begin_array("threads");
  for (const model::ThreadInfo& t : snap.threads) e.element(thread_json(t));
  e.end_array();
  e.field("warnings", snap.warnings);
  e.field("anomalies", anomalies_json(forest));
  e.end();
}

void write_json_report(std::ostream& out, const model::Snapshot& snap,
                       const JsonReportOptions& opts) {
  const snapshot::AsyncForest forest = snapshot::build_async_forest(snap);
  write_json_report(out, snap, forest, snapshot::group_stuck(snap), opts);
}

}  // namespace asyncprobe::output
