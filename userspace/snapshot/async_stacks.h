// Async stacks: turns the flat list of frames in a Snapshot into a forest (who awaits whom) and
// coalesces identical sibling subtrees into counted nodes, the way `python -m asyncio pstree` and
// `dumpasync --coalesce` do. The input is read from a live process and may be torn or hostile, so
// every walk here is iterative and bounded: cycles are cut, over-deep stacks are split, duplicate
// addresses are tolerated, and each of these is reported rather than hidden.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "userspace/model/snapshot_model.h"

namespace asyncprobe::snapshot {

inline constexpr size_t kNoFrame = static_cast<size_t>(-1);

// How a frame is attached to the forest.
enum class LinkKind {
  kRoot,      // awaiter == 0: the outermost coroutine of its stack
  kLinked,    // awaiter found among the frames: placed under it
  kDangling,  // awaiter set but not among the frames: shown as a root, uncertain
  kCycle,     // its awaiter edge closes a cycle and was cut here: shown as a root, uncertain
  kDepthCut,  // would sit at depth >= max_depth: shown as a continuation root, uncertain
};
const char* to_string(LinkKind k);

// Placement of one frame, aligned with Snapshot::frames.
struct FrameLink {
  LinkKind link = LinkKind::kRoot;
  size_t parent = kNoFrame;   // frame this one hangs under in the forest (kNoFrame for roots)
  size_t awaiter = kNoFrame;  // frame the awaiter address resolved to, even when the edge was cut
  size_t root = kNoFrame;     // outermost frame of its stack (followed through depth cuts)
  size_t depth = 0;           // 0 at the root, counted through depth cuts
  bool duplicate = false;     // an earlier frame has the same address; edges resolve to that one
};

// frames[0] awaits frames[1] awaits ... awaits frames[0]. frames[0] (the lowest index in the
// cycle) is where the cycle was cut: its awaiter edge was dropped and it became a root.
struct AwaitCycle {
  std::vector<size_t> frames;
};

struct DanglingEdge {
  size_t frame = kNoFrame;
  uint64_t awaiter = 0;  // the address that matched no frame
};

struct DepthCut {
  size_t frame = kNoFrame;   // re-rooted frame
  size_t parent = kNoFrame;  // frame it was detached from
  size_t root = kNoFrame;    // outermost frame of the stack that was cut
  size_t depth = 0;          // depth it would have had
};

struct DuplicateAddress {
  uint64_t address = 0;
  std::vector<size_t> frames;  // all frames with that address, ascending; the first one wins
};

// One coalesced node: frames that share a signature at the same place in sibling subtrees.
// Signature: function, suspend kind, file, line, state, plus how the frame is linked (link kind,
// and the awaiter rule for linked/dangling frames) so that certain and uncertain edges never merge;
// when the line is unknown (0) the raw suspend index joins it, so unplaced points stay apart; a
// running frame (CoroFrame::running) adds its thread and line, so all of a node's frames run
// there or none does.
struct StackNode {
  std::string function;
  model::SuspendPoint::Kind kind = model::SuspendPoint::Kind::kUnknown;
  std::string file;
  int line = 0;
  int64_t index = -1;  // suspend index of the first frame (the same for all when line == 0)
  model::FrameState state = model::FrameState::kUnknown;
  LinkKind link = LinkKind::kRoot;
  coro::AwaiterRule rule = coro::AwaiterRule::kNone;  // awaiter rule (kLinked / kDangling)
  std::vector<size_t> frames;    // merged frames, ascending; count() == frames.size()
  std::vector<size_t> children;  // indices into AsyncForest::nodes, in display order
  size_t depth = 0;              // depth within its printed tree (0 for a top-level node)
  size_t stuck = 0;              // how many of the frames are marked stuck
  double stuck_for_s = 0.0;      // smallest stuck_for_s among stuck frames: a bound valid for all
  size_t unchanged = 0;          // how many looked unchanged, not known whether resumed
  double unchanged_for_s = 0.0;  // smallest unchanged_for_s among those
  size_t cut_children = 0;       // children of these frames detached by the depth bound

  size_t count() const { return frames.size(); }
  // Placed by a guess: its awaiter edge was missing or closed a cycle.
  bool uncertain() const { return link == LinkKind::kDangling || link == LinkKind::kCycle; }
};

struct AsyncStackOptions {
  size_t max_depth = 4096;  // frames per printed stack; deeper frames start a continuation
};

struct AsyncForest {
  std::vector<FrameLink> links;   // one per Snapshot::frames entry
  std::vector<size_t> roots;      // root frames: stack roots by index, then depth-cut continuations
  std::vector<StackNode> nodes;   // coalesced nodes (arena; parents before children)
  std::vector<size_t> top_nodes;  // top-level nodes in display order (continuations last)
  std::vector<AwaitCycle> cycles;
  std::vector<DanglingEdge> dangling;
  std::vector<DepthCut> depth_cuts;
  std::vector<DuplicateAddress> duplicates;
  size_t max_depth = 0;  // the bound that was applied

  // Async stacks: roots other than depth-cut continuations.
  size_t stack_count() const;
  // Distinct stacks after coalescing: top-level nodes other than depth-cut continuations.
  size_t distinct_stack_count() const;
  // Some placement rests on broken data: a cycle, a dangling edge or a duplicated address.
  bool uncertain() const;
  // Some stack was deeper than max_depth and was split.
  bool depth_cut() const { return !depth_cuts.empty(); }
};

// Builds the forest and its coalesced view. Never throws on data (only std::bad_alloc), never
// loops: O(n log n) in the number of frames whatever the awaiter links say.
AsyncForest build_async_forest(const model::Snapshot& snap, const AsyncStackOptions& opts = {});

}  // namespace asyncprobe::snapshot
