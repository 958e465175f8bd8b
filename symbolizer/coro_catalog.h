// The coroutine catalog of one module: every coroutine whose split functions the module holds
// (GCC `<ramp>.Frame.actor`/`.destroy`, Clang `<ramp>.resume`/`.destroy`/`.cleanup`), its frame
// layout (suspend-index field, promise offset, frame size) and, on demand, the mapping from
// suspend index to the source line of the co_await.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "symbolizer/await_keyword.h"
#include "symbolizer/index_store_finder.h"
#include "symbolizer/module.h"
#include "userspace/coro/frame_abi.h"

namespace asyncprobe::symbolizer {

enum class CoroCompiler { kGcc, kClang };

struct SuspendPointInfo {
  enum class Kind { kInitial, kAwait, kFinal };
  int64_t index = 0;
  Kind kind = Kind::kAwait;
  SourceLine location;  // line 0 when no rule could place it
  std::string
      rule;  // "index-store", "function-entry", "index-store+source-keyword"; empty when unplaced
};

struct CoroFunction {
  std::string ramp_linkage;  // mangled ramp name, e.g. _Z4leafi
  std::string name;          // demangled, e.g. leaf(int)
  CoroCompiler compiler = CoroCompiler::kGcc;
  uint64_t resume = 0;  // object vaddr of .actor / .resume
  uint64_t resume_size = 0;
  uint64_t destroy = 0;  // .destroy
  uint64_t cleanup = 0;  // Clang .cleanup (elided frames), 0 if none
  uint64_t ramp = 0;     // the coroutine's own function (allocates the frame), 0 if not kept
  uint64_t ramp_size = 0;
  // Suspend-index field; width 0 = unknown.
  uint32_t index_offset = 0;
  uint8_t index_width = 0;
  std::string layout_source;  // "dwarf" or "machine-code"
  uint32_t promise_offset = coro::kDefaultPromiseOffset;
  // The promise's type was in the DWARF (the frame type, or clang's ramp `__promise`):
  // exception_offsets (frame-relative) lists its std::exception_ptr members (none: the promise
  // holds no exception_ptr).
  bool promise_type_known = false;
  std::vector<uint32_t> exception_offsets;
  uint64_t frame_size = 0;  // 0 when unknown
  // The suspend index of the final suspend; -1 when unknown. GCC: from the frame type's awaiter
  // members (see final_index_from_members). Clang marks a finished frame by a NULL resume
  // pointer instead.
  int64_t final_index = -1;
  // Clang, index field unknown: the resume function stores no suspend index and dispatches on
  // none, so the coroutine has one point to resume from; every unfinished frame is there.
  bool single_resume_point = false;
  std::string decl_file;
  int decl_line = 0;
};

class CoroCatalog {
 public:
  explicit CoroCatalog(std::shared_ptr<const Module> module);
  // A catalog of coroutines recognised some other way (an object without symbols).
  CoroCatalog(std::shared_ptr<const Module> module, std::vector<CoroFunction> functions);

  const Module& module() const { return *module_; }
  const std::vector<CoroFunction>& functions() const { return functions_; }
  // Lookup by object vaddr of the resume function.
  const CoroFunction* by_resume(uint64_t vaddr) const;

  // The suspend point for an index read from a frame of `fn` (-1: not read); nullptr when the
  // index is not one this coroutine has. A coroutine with a single resume point answers it for
  // every index. Computed on first use per function and cached (thread-safe).
  const SuspendPointInfo* suspend_point(const CoroFunction& fn, int64_t index) const;
  // All known suspend points of `fn`, by index.
  const std::map<int64_t, SuspendPointInfo>& suspend_points(const CoroFunction& fn) const;

 private:
  void collect_functions();
  void add(CoroFunction fn);
  void read_layout(CoroFunction& fn) const;
  void read_promise_from_ramp(CoroFunction& fn, uint64_t ramp_entry) const;
  std::map<int64_t, SuspendPointInfo> compute_points(const CoroFunction& fn) const;
  // Index value -> the distinct source lines its stores place (("", 0) for a store placed nowhere).
  std::map<int64_t, std::set<std::pair<std::string, int>>> index_store_lines(
      const CoroFunction& fn, const ResumeCodeFacts& facts, int64_t initial) const;
  std::optional<std::pair<std::string, int>> await_suspend_site(const ResumeCodeFacts& facts,
                                                                uint64_t store_address) const;
  // The await_suspend an instruction calls or is inlined from: its call site in the coroutine.
  std::optional<std::pair<std::string, int>> await_suspend_at(const InstructionInfo& in) const;
  // The ramp's code read with its frame followed; nullopt without a ramp or DWARF.
  std::optional<ResumeCodeFacts> ramp_facts(const CoroFunction& fn) const;
  SuspendPointInfo single_point(const CoroFunction& fn) const;
  void add_clang_ramp_points(const CoroFunction& fn,
                             std::map<int64_t, std::set<std::pair<std::string, int>>>& lines) const;

  std::shared_ptr<const Module> module_;
  std::vector<CoroFunction> functions_;
  std::unordered_map<uint64_t, size_t> by_resume_;
  mutable std::mutex mu_;
  mutable std::unordered_map<size_t, std::map<int64_t, SuspendPointInfo>> points_;
  mutable AwaitKeywordFinder keywords_;  // guarded by mu_
};

// GCC numbers a coroutine's suspend points in source order, 2 apart: the initial suspend 2, then
// one per co_await / co_yield, the final suspend last. Each keeps its awaiter in the frame as a
// member named `Is` (initial), `Aw<n>` (co_await), `Yd<n>` (co_yield) or `Fs` (final), with an
// optional `_<scope>_<n>` suffix. The final suspend's index is therefore 2 * (awaits + 2);
// -1 when the members show no initial and final awaiter (not a GCC frame type).
int64_t gcc_final_index(const std::vector<StructMember>& members);

// Derives the ramp's mangled name from a split-function symbol; empty when `symbol` is not one.
// Sets `compiler` and `role` ("resume", "destroy", "cleanup").
std::string ramp_of_split_symbol(const std::string& symbol, CoroCompiler* compiler,
                                 std::string* role);

}  // namespace asyncprobe::symbolizer
