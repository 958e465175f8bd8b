#include "userspace/report_json.h"

#include <cinttypes>
#include <cstdio>
#include <string>

#include <nlohmann/json.hpp>

namespace asyncprobe {

namespace {

// Insertion order keeps "schema" first and related fields together for human readers.
using json = nlohmann::ordered_json;

// Addresses are strings: JSON numbers lose precision past 2^53 in most consumers.
std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
  return buf;
}

json id_or_null(size_t i) { return i == kNoFrame ? json(nullptr) : json(i); }

json suspend_json(SuspendPoint::Kind kind, const std::string& file, int line, json index) {
  return json{{"kind", to_string(kind)}, {"file", file}, {"line", line}, {"index", index}};
}

json coroutine_json(const Snapshot& snap, const AsyncForest& forest, size_t i) {
  const CoroFrame& f = snap.frames[i];
  const FrameLink& l = forest.links[i];
  json s = suspend_json(f.suspend.kind, f.suspend.file, f.suspend.line, f.suspend.index);
  s["rule"] = f.suspend.rule;
  json j{{"id", i},
         {"address", hex(f.address)},
         {"resume_fn", hex(f.resume_fn)},
         {"destroy_fn", hex(f.destroy_fn)},
         {"function", f.function},
         {"object", f.object},
         {"state", to_string(f.state)},
         {"suspend", std::move(s)},
         {"awaiter_id", id_or_null(l.awaiter)},
         {"awaiter_address", f.awaiter == 0 ? json(nullptr) : json(hex(f.awaiter))},
         {"awaiter_rule", f.awaiter == 0 ? json(nullptr) : json(f.awaiter_rule)},
         {"generic_link", f.awaiter != 0 && is_generic_rule(f.awaiter_rule)},
         {"link", to_string(l.link)},
         {"parent_id", id_or_null(l.parent)},
         {"root_id", id_or_null(l.root)},
         {"depth", l.depth},
         {"duplicate", l.duplicate},
         {"on_stack", f.on_stack},
         {"stuck", f.stuck},
         {"stuck_for_s", f.stuck_for_s}};
  return j;
}

class StackWriter {
 public:
  StackWriter(const AsyncForest& forest, size_t max_nesting)
      : forest_(forest), max_nesting_(max_nesting < 1 ? 1 : max_nesting) {}

  json run() {
    json stacks = json::array();
    for (size_t t : forest_.top_nodes) stacks.push_back(node(t, 1));
    // Subtrees cut off by the nesting bound, each as an entry that names its parent node; new
    // ones may be queued while emitting, hence the index loop.
    for (size_t i = 0; i < pending_.size(); ++i) {
      json entry = node(pending_[i].second, 1);
      entry["continues_node"] = pending_[i].first;
      stacks.push_back(std::move(entry));
    }
    return stacks;
  }

 private:
  // Recursion is bounded by max_nesting_, whatever the depth of the tree.
  json node(size_t id, size_t level) {
    const StackNode& n = forest_.nodes[id];
    json j{{"node_id", id},
           {"count", n.count()},
           {"function", n.function},
           {"suspend",
            suspend_json(n.kind, n.file, n.line, n.line == 0 ? json(n.index) : json(nullptr))},
           {"state", to_string(n.state)},
           {"link", to_string(n.link)},
           {"awaiter_rule", n.rule.empty() ? json(nullptr) : json(n.rule)},
           {"generic_link", n.link == LinkKind::kLinked && is_generic_rule(n.rule)},
           {"uncertain", n.uncertain()},
           {"stuck", n.stuck},
           {"stuck_for_s", n.stuck_for_s},
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

  const AsyncForest& forest_;
  size_t max_nesting_;
  std::vector<std::pair<size_t, size_t>> pending_;  // (parent node, child node)
};

}  // namespace

nlohmann::ordered_json snapshot_to_json(const Snapshot& snap, const AsyncForest& forest,
                                        const std::vector<StuckGroup>& stuck,
                                        const JsonReportOptions& opts) {
  size_t by_state[3] = {0, 0, 0};
  size_t stuck_frames = 0;
  for (const CoroFrame& f : snap.frames) {
    const auto s = static_cast<size_t>(f.state);
    if (s < 3) ++by_state[s];
    if (f.stuck) ++stuck_frames;
  }

  json doc;
  doc["schema"] = kSnapshotSchema;
  doc["pid"] = snap.pid;
  doc["command"] = snap.command;
  doc["executable"] = snap.executable;
  doc["summary"] = json{{"coroutines", snap.frames.size()},
                        {"stacks", forest.stack_count()},
                        {"distinct_stacks", forest.distinct_stack_count()},
                        {"threads", snap.threads.size()},
                        {"suspended", by_state[static_cast<size_t>(FrameState::kSuspended)]},
                        {"done", by_state[static_cast<size_t>(FrameState::kDone)]},
                        {"unknown", by_state[static_cast<size_t>(FrameState::kUnknown)]},
                        {"stuck", stuck_frames},
                        {"bytes_scanned", snap.bytes_scanned},
                        {"scan_seconds", snap.scan_seconds},
                        {"window_seconds", snap.window_seconds},
                        {"stuck_detection", snap.window_seconds > 0.0},
                        {"max_depth", forest.max_depth},
                        {"uncertain", forest.uncertain()},
                        {"depth_cut", forest.depth_cut()}};

  json coroutines = json::array();
  for (size_t i = 0; i < snap.frames.size(); ++i) {
    coroutines.push_back(coroutine_json(snap, forest, i));
  }
  doc["coroutines"] = std::move(coroutines);
  doc["stacks"] = StackWriter(forest, opts.max_nesting).run();

  json groups = json::array();
  for (const StuckGroup& g : stuck) {
    groups.push_back(json{{"count", g.count()},
                          {"function", g.function},
                          {"suspend", suspend_json(g.kind, g.file, g.line,
                                                   g.line == 0 ? json(g.index) : json(nullptr))},
                          {"stuck_for_s", g.stuck_for_s},
                          {"max_stuck_for_s", g.max_stuck_for_s},
                          {"frame_ids", g.frames}});
  }
  doc["stuck"] = std::move(groups);

  json threads = json::array();
  for (const ThreadInfo& t : snap.threads) {
    threads.push_back(json{{"tid", t.tid},
                           {"name", t.name},
                           {"state", std::string(1, t.state)},
                           {"syscall", t.syscall},
                           {"syscall_nr", t.syscall_nr},
                           {"sp", hex(t.sp)},
                           {"pc", hex(t.pc)},
                           {"stack_lo", hex(t.stack_lo)},
                           {"stack_hi", hex(t.stack_hi)}});
  }
  doc["threads"] = std::move(threads);
  doc["warnings"] = snap.warnings;

  json cycles = json::array();
  for (const AwaitCycle& c : forest.cycles) {
    cycles.push_back(json{{"frame_ids", c.frames}, {"cut_id", c.frames.front()}});
  }
  json dangling = json::array();
  for (const DanglingEdge& d : forest.dangling) {
    dangling.push_back(json{{"id", d.frame}, {"awaiter_address", hex(d.awaiter)}});
  }
  json cuts = json::array();
  for (const DepthCut& d : forest.depth_cuts) {
    cuts.push_back(
        json{{"id", d.frame}, {"parent_id", d.parent}, {"root_id", d.root}, {"depth", d.depth}});
  }
  json dups = json::array();
  for (const DuplicateAddress& d : forest.duplicates) {
    dups.push_back(json{{"address", hex(d.address)}, {"frame_ids", d.frames}});
  }
  doc["anomalies"] = json{{"cycles", std::move(cycles)},
                          {"dangling", std::move(dangling)},
                          {"depth_cuts", std::move(cuts)},
                          {"duplicates", std::move(dups)}};
  return doc;
}

void write_json_report(std::ostream& out, const Snapshot& snap, const AsyncForest& forest,
                       const std::vector<StuckGroup>& stuck, const JsonReportOptions& opts) {
  const json doc = snapshot_to_json(snap, forest, stuck, opts);
  out << doc.dump(opts.indent < 0 ? -1 : opts.indent, ' ', false, json::error_handler_t::replace)
      << '\n';
}

void write_json_report(std::ostream& out, const Snapshot& snap, const JsonReportOptions& opts) {
  const AsyncForest forest = build_async_forest(snap);
  write_json_report(out, snap, forest, group_stuck(snap), opts);
}

}  // namespace asyncprobe
