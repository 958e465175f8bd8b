#include "userspace/snapshot/async_stacks.h"

#include <algorithm>
#include <functional>
#include <string_view>
#include <tuple>
#include <unordered_map>

namespace asyncprobe::snapshot {

const char* to_string(LinkKind k) {
  switch (k) {
    case LinkKind::kRoot:
      return "root";
    case LinkKind::kLinked:
      return "linked";
    case LinkKind::kDangling:
      return "dangling";
    case LinkKind::kCycle:
      return "cycle";
    case LinkKind::kDepthCut:
      return "depth-cut";
  }
  return "root";
}

size_t AsyncForest::stack_count() const {
  size_t n = 0;
  for (size_t r : roots) {
    if (links[r].link != LinkKind::kDepthCut) ++n;
  }
  return n;
}

size_t AsyncForest::distinct_stack_count() const {
  size_t n = 0;
  for (size_t t : top_nodes) {
    if (nodes[t].link != LinkKind::kDepthCut) ++n;
  }
  return n;
}

bool AsyncForest::uncertain() const {
  return !cycles.empty() || !dangling.empty() || !duplicates.empty();
}

namespace {

// The signature fields of a frame, as a tuple so comparisons are lexicographic and total.
// Function comes first so that nodes with equal counts order by name.
// A frame running on a thread (or a candidate of an uncertain join) adds the thread, signed
// negative when uncertain, and the line it runs at: it never merges with a suspended frame.
using SigTuple = std::tuple<const std::string&, int, const std::string&, int, int64_t, int, int,
                            coro::AwaiterRule, int, int>;

SigTuple signature(const model::CoroFrame& f, LinkKind link) {
  // The index only distinguishes points that no rule could place; with a line, the line is the
  // suspend point the user sees and the index would split identical-looking nodes.
  const int64_t index = f.suspend.line == 0 ? f.suspend.index : -2;
  const bool has_rule = link == LinkKind::kLinked || link == LinkKind::kDangling;
  return SigTuple(f.function, static_cast<int>(f.suspend.kind), f.suspend.file, f.suspend.line,
                  index, static_cast<int>(f.state), static_cast<int>(link),
                  has_rule ? f.awaiter_rule : coro::AwaiterRule::kNone,
                  f.running ? (f.running->uncertain ? -f.running->thread : f.running->thread) : 0,
                  f.running ? f.running->line : 0);
}

struct SigHash {
  size_t operator()(const SigTuple& t) const {
    // Boost-style mixing; strings hashed through string_view to avoid copies.
    size_t h = std::hash<std::string_view>()(std::get<0>(t));
    auto mix = [&h](size_t v) { h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2); };
    mix(static_cast<size_t>(std::get<1>(t)));
    mix(std::hash<std::string_view>()(std::get<2>(t)));
    mix(static_cast<size_t>(std::get<3>(t)));
    mix(static_cast<size_t>(std::get<4>(t)));
    mix(static_cast<size_t>(std::get<5>(t)));
    mix(static_cast<size_t>(std::get<6>(t)));
    mix(static_cast<size_t>(std::get<7>(t)));
    mix(static_cast<size_t>(std::get<8>(t)));
    mix(static_cast<size_t>(std::get<9>(t)));
    return h;
  }
};

class Coalescer {
 public:
  Coalescer(const model::Snapshot& snap, AsyncForest& forest,
            const std::vector<size_t>& child_start, const std::vector<size_t>& child_list)
      : snap_(snap), forest_(forest), child_start_(child_start), child_list_(child_list) {}

  void run() {
    intern();
    std::vector<size_t> top(forest_.roots);
    forest_.top_nodes = group(top, 0);
    // Continuations read best after the stacks they continue.
    std::stable_partition(forest_.top_nodes.begin(), forest_.top_nodes.end(),
                          [&](size_t n) { return forest_.nodes[n].link != LinkKind::kDepthCut; });
    // Breadth-first over the arena: nodes are appended as they are found, so this visits each
    // frame once and needs no recursion whatever the depth.
    std::vector<size_t> kids;
    for (size_t i = 0; i < forest_.nodes.size(); ++i) {
      kids.clear();
      for (size_t f : forest_.nodes[i].frames) {
        for (size_t k = child_start_[f]; k < child_start_[f + 1]; ++k) {
          const size_t c = child_list_[k];
          if (forest_.links[c].parent == f) {
            kids.push_back(c);
          } else if (forest_.links[c].link == LinkKind::kDepthCut) {
            ++forest_.nodes[i].cut_children;
          }
        }
      }
      if (kids.empty()) continue;
      const size_t depth = forest_.nodes[i].depth + 1;
      std::vector<size_t> child_nodes = group(kids, depth);
      forest_.nodes[i].children = std::move(child_nodes);
    }
  }

 private:
  SigTuple sig(size_t f) const { return signature(snap_.frames[f], forest_.links[f].link); }

  // One integer per distinct signature, so grouping compares integers and each frame's strings
  // are hashed and compared once, not once per sort comparison.
  void intern() {
    const size_t n = snap_.frames.size();
    sig_id_.resize(n);
    std::unordered_map<SigTuple, size_t, SigHash> ids;
    for (size_t f = 0; f < n; ++f) {
      sig_id_[f] = ids.emplace(sig(f), ids.size()).first->second;
    }
  }

  // Groups sibling frames by signature into new nodes and returns them in display order.
  std::vector<size_t> group(std::vector<size_t>& frames, size_t depth) {
    std::sort(frames.begin(), frames.end(), [&](size_t a, size_t b) {
      if (sig_id_[a] != sig_id_[b]) return sig_id_[a] < sig_id_[b];
      return a < b;
    });
    std::vector<size_t> made;
    size_t i = 0;
    while (i < frames.size()) {
      size_t j = i + 1;
      while (j < frames.size() && sig_id_[frames[j]] == sig_id_[frames[i]]) ++j;
      made.push_back(make_node(frames, i, j, depth));
      i = j;
    }
    // Display order compares the signatures themselves (ids depend on input order); signatures
    // of siblings differ, so the order is total and independent of how frames were listed.
    std::sort(made.begin(), made.end(), [&](size_t a, size_t b) {
      const StackNode& na = forest_.nodes[a];
      const StackNode& nb = forest_.nodes[b];
      if (na.count() != nb.count()) return na.count() > nb.count();
      return sig(na.frames.front()) < sig(nb.frames.front());
    });
    return made;
  }

  size_t make_node(const std::vector<size_t>& frames, size_t from, size_t to, size_t depth) {
    StackNode n;
    const size_t first = frames[from];  // lowest index of the group: frames sort by index within
    const model::CoroFrame& f = snap_.frames[first];
    n.function = f.function;
    n.kind = f.suspend.kind;
    n.file = f.suspend.file;
    n.line = f.suspend.line;
    n.index = f.suspend.index;
    n.state = f.state;
    n.link = forest_.links[first].link;
    if (n.link == LinkKind::kLinked || n.link == LinkKind::kDangling) n.rule = f.awaiter_rule;
    n.depth = depth;
    n.frames.assign(frames.begin() + static_cast<std::ptrdiff_t>(from),
                    frames.begin() + static_cast<std::ptrdiff_t>(to));
    bool any = false, any_unchanged = false;
    for (size_t x : n.frames) {
      const model::CoroFrame& fr = snap_.frames[x];
      if (fr.unchanged) {
        ++n.unchanged;
        if (!any_unchanged || fr.unchanged_for_s < n.unchanged_for_s)
          n.unchanged_for_s = fr.unchanged_for_s;
        any_unchanged = true;
      }
      if (!fr.stuck) continue;
      ++n.stuck;
      if (!any || fr.stuck_for_s < n.stuck_for_s) n.stuck_for_s = fr.stuck_for_s;
      any = true;
    }
    forest_.nodes.push_back(std::move(n));
    return forest_.nodes.size() - 1;
  }

  const model::Snapshot& snap_;
  AsyncForest& forest_;
  const std::vector<size_t>& child_start_;
  const std::vector<size_t>& child_list_;
  std::vector<size_t> sig_id_;
};

// Address -> first frame with it. Later duplicates stay in the forest as frames of their own,
// but nothing can resolve to them: that keeps every frame's awaiter single-valued.
std::unordered_map<uint64_t, size_t> index_addresses(const model::Snapshot& snap,
                                                     AsyncForest& forest) {
  const size_t n = snap.frames.size();
  std::unordered_map<uint64_t, size_t> by_address;
  by_address.reserve(n);
  std::unordered_map<uint64_t, size_t> dup_slot;  // address -> index into forest.duplicates
  for (size_t i = 0; i < n; ++i) {
    const uint64_t a = snap.frames[i].address;
    auto [it, inserted] = by_address.emplace(a, i);
    if (inserted) continue;
    forest.links[i].duplicate = true;
    auto [slot, fresh] = dup_slot.emplace(a, forest.duplicates.size());
    if (fresh) forest.duplicates.push_back(DuplicateAddress{a, {it->second}});
    forest.duplicates[slot->second].frames.push_back(i);
  }
  return by_address;
}

// Resolve awaiter addresses to frames.
void resolve_awaiters(const model::Snapshot& snap,
                      const std::unordered_map<uint64_t, size_t>& by_address, AsyncForest& forest) {
  for (size_t i = 0; i < snap.frames.size(); ++i) {
    FrameLink& l = forest.links[i];
    const uint64_t aw = snap.frames[i].awaiter;
    if (aw == 0) {
      l.link = LinkKind::kRoot;
      continue;
    }
    auto it = by_address.find(aw);
    if (it == by_address.end()) {
      l.link = LinkKind::kDangling;
      forest.dangling.push_back(DanglingEdge{i, aw});
      continue;
    }
    l.link = LinkKind::kLinked;
    l.awaiter = it->second;
    l.parent = it->second;
  }
}

// Each frame has at most one parent, so the graph is functional: every component is a tree
// or a single cycle with trees hanging off it. Colouring walks find each cycle once, O(n).
void break_cycles(AsyncForest& forest) {
  const size_t n = forest.links.size();
  enum : uint8_t { kWhite, kOnPath, kDone };
  std::vector<uint8_t> colour(n, kWhite);
  std::vector<size_t> path;
  for (size_t s = 0; s < n; ++s) {
    if (colour[s] != kWhite) continue;
    path.clear();
    size_t v = s;
    while (v != kNoFrame && colour[v] == kWhite) {
      colour[v] = kOnPath;
      path.push_back(v);
      v = forest.links[v].parent;
    }
    if (v != kNoFrame && colour[v] == kOnPath) {
      // v starts a cycle: the members are v and everything after it on the path.
      const auto start = std::find(path.begin(), path.end(), v);
      const size_t cut = *std::min_element(start, path.end());
      // Awaits order from the cut frame: walking awaiter pointers goes the other way.
      AwaitCycle c;
      c.frames.push_back(cut);
      std::vector<size_t> up;
      for (size_t u = forest.links[cut].parent; u != cut; u = forest.links[u].parent) {
        up.push_back(u);
      }
      c.frames.insert(c.frames.end(), up.rbegin(), up.rend());
      forest.links[cut].parent = kNoFrame;
      forest.links[cut].link = LinkKind::kCycle;
      forest.cycles.push_back(std::move(c));
    }
    for (size_t p : path) colour[p] = kDone;
  }
}

// Children in CSR form, ascending by frame index for determinism: the children of frame f are
// list[start[f]] .. list[start[f + 1] - 1].
struct ChildIndex {
  std::vector<size_t> start;
  std::vector<size_t> list;
};

ChildIndex index_children(const AsyncForest& forest) {
  const size_t n = forest.links.size();
  ChildIndex ci;
  ci.start.assign(n + 1, 0);
  for (size_t i = 0; i < n; ++i) {
    if (forest.links[i].parent != kNoFrame) ++ci.start[forest.links[i].parent + 1];
  }
  for (size_t i = 0; i < n; ++i) ci.start[i + 1] += ci.start[i];
  ci.list.resize(ci.start[n]);
  std::vector<size_t> fill(ci.start.begin(), ci.start.end() - 1);
  for (size_t i = 0; i < n; ++i) {
    const size_t p = forest.links[i].parent;
    if (p != kNoFrame) ci.list[fill[p]++] = i;
  }
  return ci;
}

// Depth-first from every root with an explicit stack; children that would sit at depth
// max_depth are detached and walked later as continuation roots, so no printed tree is deeper
// than the bound while depth and root still count through the cut.
void assign_depths(const ChildIndex& children, AsyncForest& forest) {
  for (size_t i = 0; i < forest.links.size(); ++i) {
    if (forest.links[i].parent == kNoFrame) forest.roots.push_back(i);
  }
  struct Item {
    size_t frame, depth, tree_depth;
  };
  std::vector<Item> stack;
  for (size_t r = 0; r < forest.roots.size(); ++r) {
    const size_t root_frame = forest.roots[r];
    const bool continuation = forest.links[root_frame].link == LinkKind::kDepthCut;
    const size_t base = continuation ? forest.links[root_frame].depth : 0;
    const size_t true_root = continuation ? forest.links[root_frame].root : root_frame;
    stack.assign(1, Item{root_frame, base, 0});
    while (!stack.empty()) {
      const Item it = stack.back();
      stack.pop_back();
      FrameLink& l = forest.links[it.frame];
      l.depth = it.depth;
      l.root = true_root;
      // Pushed in reverse so children pop in ascending order (only affects tie-free internals).
      for (size_t k = children.start[it.frame + 1]; k-- > children.start[it.frame];) {
        const size_t c = children.list[k];
        if (it.tree_depth + 1 >= forest.max_depth) {
          FrameLink& cl = forest.links[c];
          cl.parent = kNoFrame;
          cl.link = LinkKind::kDepthCut;
          cl.depth = it.depth + 1;
          cl.root = true_root;
          forest.depth_cuts.push_back(DepthCut{c, it.frame, true_root, it.depth + 1});
          forest.roots.push_back(c);
        } else {
          stack.push_back(Item{c, it.depth + 1, it.tree_depth + 1});
        }
      }
    }
  }
  std::sort(forest.depth_cuts.begin(), forest.depth_cuts.end(),
            [](const DepthCut& a, const DepthCut& b) { return a.frame < b.frame; });
}

}  // namespace

AsyncForest build_async_forest(const model::Snapshot& snap, const AsyncStackOptions& opts) {
  AsyncForest forest;
  forest.max_depth = std::max<size_t>(opts.max_depth, 1);
  forest.links.resize(snap.frames.size());
  const std::unordered_map<uint64_t, size_t> by_address = index_addresses(snap, forest);
  resolve_awaiters(snap, by_address, forest);
  break_cycles(forest);
  const ChildIndex children = index_children(forest);
  assign_depths(children, forest);
  Coalescer(snap, forest, children.start, children.list).run();
  return forest;
}

}  // namespace asyncprobe::snapshot
