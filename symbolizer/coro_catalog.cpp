// How the coroutine catalog works (moved here from docs/ARCHITECTURE.md, next to the code).
//
// For each module, the coroutines whose split functions it holds:
//
// - GCC: `<encoding>.actor` / `.destroy`, named after the frame type `<ramp>.Frame`; the ramp's
//   mangled name is the length-prefixed `_Z...` identifier at the end. Clang: `<ramp>.resume`,
//   `.destroy`, `.cleanup`.
// - Frame layout: GCC's DWARF type `<ramp>.Frame` (`_Coro_resume_index`, `_Coro_promise`); Clang's
//   `<ramp>.coro_frame_ty` or the type of `__coro_frame` (`__coro_index`, `__promise`). Clang 14
//   and optimised Clang 19 have neither, so the index field is found in machine code: the resume
//   function dispatches on the index first, so the first frame field it reads that also receives
//   constant stores is the index; otherwise the field with the most distinct constants stored.
// - Suspend index -> `file:line`. Both compilers store the new index (a constant) just before the
//   awaiter's `await_suspend` runs. `index_store_finder` disassembles the resume function
//   (capstone) and runs a forward dataflow over its control-flow graph that tracks which registers
//   and stack slots hold the frame pointer and which registers hold constants; the result is every
//   `store constant -> frame+offset`. For each store of index N, `CoroCatalog` follows the
//   straight-line code after it to the `await_suspend` call (a `call` to a function named
//   `...await_suspend...`, through the PLT if need be) or inlined `await_suspend` (DWARF inline
//   chain); that call site, seen from the coroutine body, is the `co_await`. Past a jump or a jump
//   target the code may be shared by several `co_await`s (tail merging), so the search stops there.
//   Without that evidence the store's own line is used, unless it is the function's first line
//   (Clang's merged stores) or, for GCC, its closing line (where GCC puts the store of a
//   value-returning `co_await`), or lies in another file. Anything else is reported unknown.
//   Verified on g++ 12, clang++ 14 and clang++ 19 at -O0, -O2 and -O3 by the fixture tests.
// - Clang with one point to resume from (an eager coroutine with one co_await, a lazy one whose
//   body never suspends): the resume function stores and reads no index, so the field cannot be
//   found there; the point is the first one the ramp reaches, placed from the ramp's code
//   (see CoroCatalog::single_point). An eager Clang coroutine's first co_await has index 0, the
//   number a lazy one's initial suspend has: the ramp's index store followed by an await_suspend
//   tells which.
// - A co_await spread over lines: Clang places the `co_await` keyword's line, GCC the
//   expression's last line (and for a value-returning co_await the keyword's line is nowhere in
//   its line table). For GCC the keyword's line is read from the source file when it is readable
//   (await_keyword.h); otherwise GCC's line stays.
// - Index semantics: GCC 2 = initial suspend, 4, 6 ... in source order, the last = final, odd =
//   destroy dispatch, 0/1 exception paths. Clang 0 = initial, then 1, 2 ...; Clang may never store
//   the final index (a finished frame is recognised by its NULL resume pointer).
//
// Why machine code rather than source order or Clang 21's `__coro_resume_N` labels: the labels do
// not exist for GCC or Clang < 21, and source order is not the index order once the optimiser has
// removed suspend points; the index stores are what the running program actually executes.

#include "symbolizer/coro_catalog.h"

#include <algorithm>
#include <cctype>
#include <set>

#include "symbolizer/await_keyword.h"
#include "symbolizer/demangle.h"
#include "symbolizer/index_store_finder.h"
#include "userspace/coro/split_names.h"

namespace asyncprobe::symbolizer {

namespace {

constexpr size_t kMaxResumeBytes = 1 << 20;
constexpr size_t kDefaultResumeBytes = 16384;

// GCC names split functions after the frame type: `<encoding of actor(ramp.Frame*)>.actor`, where
// the frame type's source name `<ramp>.Frame` appears length-prefixed at the end. Find the
// `_Z...` start whose decimal length prefix covers exactly the rest of the string.
std::string gcc_ramp_from_frame_suffix(const std::string& s, size_t frame_suffix_len) {
  for (size_t i = 1; i + frame_suffix_len < s.size(); ++i) {
    if (s[i] != '_' || s[i + 1] != 'Z' || !std::isdigit(static_cast<unsigned char>(s[i - 1]))) {
      continue;
    }
    size_t j = i;
    while (j > 0 && std::isdigit(static_cast<unsigned char>(s[j - 1]))) --j;
    if (i - j > 9) continue;
    size_t len = std::stoul(s.substr(j, i - j));
    if (len == s.size() - i) return s.substr(i, len - frame_suffix_len);
  }
  return "";
}

}  // namespace

std::string ramp_of_split_symbol(const std::string& symbol, CoroCompiler* compiler,
                                 std::string* role) {
  const coro::SplitName split = coro::parse_split_name(symbol);
  switch (split.part) {
    case coro::SplitPart::kNone:
      return "";
    case coro::SplitPart::kResume:
      *role = "resume";
      break;
    case coro::SplitPart::kDestroy:
      *role = "destroy";
      break;
    case coro::SplitPart::kCleanup:
      *role = "cleanup";
      break;
  }
  if (!split.gcc) {
    *compiler = CoroCompiler::kClang;
    return std::string(split.key);
  }
  *compiler = CoroCompiler::kGcc;
  return gcc_ramp_from_frame_suffix(std::string(split.key), 6);  // 6: ".Frame"
}

CoroCatalog::CoroCatalog(std::shared_ptr<const Module> module) : module_(std::move(module)) {
  collect_functions();
}

CoroCatalog::CoroCatalog(std::shared_ptr<const Module> module, std::vector<CoroFunction> functions)
    : module_(std::move(module)) {
  for (auto& fn : functions) add(std::move(fn));
}

void CoroCatalog::add(CoroFunction fn) {
  size_t idx = functions_.size();
  by_resume_.emplace(fn.resume, idx);
  functions_.push_back(std::move(fn));
}

void CoroCatalog::collect_functions() {
  struct Parts {
    CoroCompiler compiler = CoroCompiler::kGcc;
    const ElfSymbol* resume = nullptr;
    const ElfSymbol* destroy = nullptr;
    const ElfSymbol* cleanup = nullptr;
  };
  std::map<std::string, Parts> by_ramp;
  std::unordered_map<std::string, const ElfSymbol*> function_addrs;
  for (const auto& sym : module_->symbol_source().symbols()) {
    if (!sym.is_function || sym.value == 0) continue;
    function_addrs.emplace(sym.name, &sym);
    CoroCompiler compiler{};
    std::string role;
    std::string ramp = ramp_of_split_symbol(sym.name, &compiler, &role);
    if (ramp.empty()) continue;
    Parts& p = by_ramp[ramp];
    p.compiler = compiler;
    if (role == "resume") p.resume = &sym;
    if (role == "destroy") p.destroy = &sym;
    if (role == "cleanup") p.cleanup = &sym;
  }
  for (const auto& [ramp, parts] : by_ramp) {
    if (parts.resume == nullptr || parts.destroy == nullptr) continue;
    CoroFunction fn;
    fn.ramp_linkage = ramp;
    fn.name = demangle(ramp);
    fn.compiler = parts.compiler;
    fn.resume = parts.resume->value;
    fn.resume_size = parts.resume->size;
    fn.destroy = parts.destroy->value;
    fn.cleanup = parts.cleanup != nullptr ? parts.cleanup->value : 0;
    auto ramp_addr = function_addrs.find(ramp);
    if (ramp_addr != function_addrs.end()) {
      fn.ramp = ramp_addr->second->value;
      fn.ramp_size = ramp_addr->second->size;
    }
    read_layout(fn);
    // GCC's actor carries no declaration line; the ramp does, when it kept a body of its own.
    if (fn.decl_line == 0 && fn.ramp != 0 && module_->dwarf() != nullptr) {
      if (auto decl = module_->dwarf()->function_decl(fn.ramp)) {
        fn.decl_file = decl->file;
        fn.decl_line = decl->line;
      }
    }
    if (!fn.promise_type_known && fn.ramp != 0) read_promise_from_ramp(fn, fn.ramp);
    add(std::move(fn));
  }
}

// Clang at -O1 and above (and clang 14 at any level) emits no frame type the catalog can use,
// but the ramp keeps its `__promise` variable with the promise's class. The promise sits where
// coroutine_handle<P>::promise() looks for it in every frame: after the two function pointers,
// rounded up to alignof(P).
void CoroCatalog::read_promise_from_ramp(CoroFunction& fn, uint64_t ramp_entry) const {
  const DwarfInfo* dw = module_->dwarf();
  if (dw == nullptr) return;
  std::optional<VariableType> promise = dw->class_type_of_variable(ramp_entry, "__promise");
  if (!promise || promise->alignment == 0 || promise->alignment > 4096) return;
  const uint64_t a = promise->alignment;
  const uint64_t offset = (coro::kHeaderBytes + a - 1) / a * a;
  fn.promise_offset = static_cast<uint32_t>(offset);
  fn.promise_type_known = true;
  for (uint64_t e : promise->exception_ptr_offsets) {
    if (e + 8 <= promise->byte_size) {
      fn.exception_offsets.push_back(static_cast<uint32_t>(offset + e));
    }
  }
}

void CoroCatalog::read_layout(CoroFunction& fn) const {
  const DwarfInfo* dw = module_->dwarf();
  if (dw != nullptr) {
    std::optional<StructLayout> layout;
    const char* index_member = "_Coro_resume_index";
    const char* promise_member = "_Coro_promise";
    if (fn.compiler == CoroCompiler::kGcc) {
      layout = dw->coroutine_frame_type(fn.ramp_linkage + ".Frame");
      if (!layout) layout = dw->coroutine_frame_type(fn.ramp_linkage + ".frame");
    } else {
      index_member = "__coro_index";
      promise_member = "__promise";
      layout = dw->coroutine_frame_type(fn.ramp_linkage + ".coro_frame_ty");
      if (!layout) layout = dw->pointee_of_variable(fn.resume, "__coro_frame");
    }
    if (layout) {
      fn.frame_size = layout->byte_size;
      if (fn.compiler == CoroCompiler::kGcc) fn.final_index = gcc_final_index(layout->members);
      if (const StructMember* p = layout->find(promise_member)) {
        fn.promise_offset = static_cast<uint32_t>(p->offset);
        fn.promise_type_known = true;
        for (uint64_t e : p->exception_ptr_offsets) {
          if (p->offset + e + 8 <= (layout->byte_size != 0 ? layout->byte_size : UINT32_MAX)) {
            fn.exception_offsets.push_back(static_cast<uint32_t>(p->offset + e));
          }
        }
      }
      if (const StructMember* m = layout->find(index_member);
          m != nullptr && m->size > 0 && m->size <= 8) {
        fn.index_offset = static_cast<uint32_t>(m->offset);
        fn.index_width = static_cast<uint8_t>(m->size);
        fn.layout_source = "dwarf";
      }
    }
    if (auto decl = dw->function_decl(fn.resume)) {
      fn.decl_file = decl->file;
      fn.decl_line = decl->line;
    }
  }
  if (fn.index_width == 0) {
    std::vector<uint8_t> code;
    size_t len = fn.resume_size != 0 ? std::min<size_t>(fn.resume_size, kMaxResumeBytes)
                                     : kDefaultResumeBytes;
    if (module_->object().read_code(fn.resume, len, &code)) {
      ResumeCodeFacts facts = analyze_resume_code(code.data(), code.size(), fn.resume);
      if (auto field = guess_index_field(facts)) {
        fn.index_offset = field->first;
        fn.index_width = field->second;
        fn.layout_source = "machine-code";
      } else if (fn.compiler == CoroCompiler::kClang && facts.decoded) {
        // Clang gives every suspend point but the first (which the ramp reaches) an index
        // store in the resume function, and dispatches on the index there. None at all: only
        // one point can be resumed from (the function starts right after it), and the field, if
        // Clang kept one, is never read.
        fn.single_resume_point = true;
      }
    }
  }
}

const CoroFunction* CoroCatalog::by_resume(uint64_t vaddr) const {
  auto it = by_resume_.find(vaddr);
  return it == by_resume_.end() ? nullptr : &functions_[it->second];
}

std::optional<std::pair<std::string, int>> CoroCatalog::await_suspend_at(
    const InstructionInfo& in) const {
  const DwarfInfo* dw = module_->dwarf();
  if (dw == nullptr) return std::nullopt;
  auto frames = dw->frames_at(in.address);
  if (frames.empty() || frames.back().location.line == 0) return std::nullopt;
  const auto site = std::make_pair(frames.back().location.file, frames.back().location.line);
  for (size_t k = 0; k + 1 < frames.size(); ++k) {
    if (frames[k].function.find("await_suspend") != std::string::npos) return site;
  }
  if (in.is_call && in.target != 0) {
    std::string callee = module_->object().plt_target(in.target);
    if (callee.empty()) {
      const ElfSymbol* sym = module_->symbol_source().function_at(in.target);
      if (sym == nullptr) sym = module_->object().function_at(in.target);
      if (sym != nullptr) callee = sym->name;
    }
    if (demangle(callee).find("await_suspend") != std::string::npos) return site;
  }
  return std::nullopt;
}

std::optional<std::pair<std::string, int>> CoroCatalog::await_suspend_site(
    const ResumeCodeFacts& facts, uint64_t store_address) const {
  // Both compilers store the new index and then call (or inline) the awaiter's await_suspend.
  // Its call site, seen from the coroutine body, is the co_await. Follow the straight-line code
  // after the store only: past a jump or a jump target the code may be shared by several
  // co_awaits (tail merging), and its line would name the wrong one.
  const auto& ins = facts.instructions;
  auto it = std::lower_bound(ins.begin(), ins.end(), store_address,
                             [](const InstructionInfo& i, uint64_t a) { return i.address < a; });
  if (it == ins.end() || it->address != store_address) return std::nullopt;
  for (int steps = 0; it != ins.end() && steps < 64; ++steps, ++it) {
    if (steps > 0) {
      if (it->is_join) break;
      if (auto site = await_suspend_at(*it)) return site;
    }
    if (it->ends_block) break;
  }
  return std::nullopt;
}

namespace {

// The awaiter kind of a GCC frame member name: "Is", "Aw", "Yd", "Fs", or empty.
std::string gcc_awaiter_kind(const std::string& name) {
  if (name.size() < 2) return "";
  std::string kind = name.substr(0, 2);
  if (kind != "Is" && kind != "Aw" && kind != "Yd" && kind != "Fs") return "";
  // Is / Fs: nothing or a suffix follows; Aw / Yd: a number, then maybe a suffix.
  size_t i = 2;
  if (kind == "Aw" || kind == "Yd") {
    size_t digits = i;
    while (i < name.size() && std::isdigit(static_cast<unsigned char>(name[i])) != 0) ++i;
    if (i == digits) return "";
  }
  for (; i < name.size(); ++i) {
    if (name[i] != '_' && std::isdigit(static_cast<unsigned char>(name[i])) == 0) return "";
  }
  return kind;
}

}  // namespace

int64_t gcc_final_index(const std::vector<StructMember>& members) {
  int64_t awaits = 0;
  bool initial = false;
  bool final = false;
  for (const auto& m : members) {
    std::string kind = gcc_awaiter_kind(m.name);
    if (kind == "Aw" || kind == "Yd") ++awaits;
    initial |= kind == "Is";
    final |= kind == "Fs";
  }
  if (!initial || !final) return -1;
  return 2 * (awaits + 2);
}

namespace {

// The initial suspend: placed at the function's declaration line.
SuspendPointInfo initial_point(const CoroFunction& fn, int64_t initial) {
  SuspendPointInfo init;
  init.index = initial;
  init.kind = SuspendPointInfo::Kind::kInitial;
  init.location = SourceLine{fn.decl_file, fn.decl_line, 0};
  init.rule = fn.decl_line != 0 ? "function-entry" : "";
  return init;
}

// The function's closing line: the largest line of its own file seen at the outermost level.
int closing_line(const DwarfInfo* dw, const ResumeCodeFacts& facts, const CoroFunction& fn) {
  int last_line = 0;
  if (dw == nullptr) return last_line;
  for (const auto& in : facts.instructions) {
    auto frames = dw->frames_at(in.address);
    if (!frames.empty() && frames.back().location.file == fn.decl_file) {
      last_line = std::max(last_line, frames.back().location.line);
    }
  }
  return last_line;
}

// The suspend point of an index value, placed when its stores agree on one line.
SuspendPointInfo point_from_lines(const CoroFunction& fn, int64_t value,
                                  const std::set<std::pair<std::string, int>>& where) {
  SuspendPointInfo sp;
  sp.index = value;
  // Final only where the frame type says the final suspend is: the last index stored is not
  // it when the final suspend is unreachable (a `for (;;)` loop) or its store was optimised
  // away. Clang tells a finished frame by its NULL resume pointer instead.
  sp.kind =
      value == fn.final_index ? SuspendPointInfo::Kind::kFinal : SuspendPointInfo::Kind::kAwait;
  // A co_await is in the coroutine's own source file; a line in another file (a header the
  // store was inlined from) places nothing.
  bool foreign = where.size() == 1 && !fn.decl_file.empty() && where.begin()->first != fn.decl_file;
  if (where.size() == 1 && where.begin()->second != 0 && !foreign) {
    sp.location = SourceLine{where.begin()->first, where.begin()->second, 0};
    sp.rule = "index-store";
  }
  return sp;
}

}  // namespace

std::map<int64_t, std::set<std::pair<std::string, int>>> CoroCatalog::index_store_lines(
    const CoroFunction& fn, const ResumeCodeFacts& facts, int64_t initial) const {
  const DwarfInfo* dw = module_->dwarf();
  const int last_line = closing_line(dw, facts, fn);
  // value -> the distinct source lines placed for the instructions that store it
  std::map<int64_t, std::set<std::pair<std::string, int>>> lines;
  for (const auto& s : facts.stores) {
    if (s.offset != fn.index_offset || s.width != fn.index_width || s.value < 0) continue;
    if (fn.compiler == CoroCompiler::kGcc && (s.value & 1) != 0) continue;  // destroy dispatch
    // GCC's actor also runs the initial suspend. Clang's resume function never does (the ramp
    // reaches it): a Clang store of index 0 there is a co_await of an eager coroutine, whose
    // initial suspend never suspends and so has no index.
    if (fn.compiler == CoroCompiler::kGcc && s.value == initial) continue;
    // GCC stores 0 on the unhandled-exception path; it is not a suspend point.
    if (fn.compiler == CoroCompiler::kGcc && s.value == 0) continue;
    auto& set = lines[s.value];
    if (dw == nullptr) continue;
    if (auto where = await_suspend_site(facts, s.address)) {
      set.insert(*where);
      continue;
    }
    // No await_suspend in the straight-line code after the store: the store's own line, unless
    // it is the function's first line (Clang's merged stores) or, for GCC, its closing line
    // (where GCC puts the store of a value-returning co_await).
    auto frames = dw->frames_at(s.address);
    int line = frames.empty() ? 0 : frames.back().location.line;
    bool gcc_closing = fn.compiler == CoroCompiler::kGcc && line == last_line;
    if (line == 0 || line == fn.decl_line || gcc_closing) {
      set.emplace("", 0);
      continue;
    }
    set.emplace(frames.back().location.file, line);
  }
  return lines;
}

std::optional<ResumeCodeFacts> CoroCatalog::ramp_facts(const CoroFunction& fn) const {
  std::vector<uint8_t> code;
  size_t len =
      fn.ramp_size != 0 ? std::min<size_t>(fn.ramp_size, kMaxResumeBytes) : kDefaultResumeBytes;
  if (fn.ramp == 0 || module_->dwarf() == nullptr ||
      !module_->object().read_code(fn.ramp, len, &code)) {
    return std::nullopt;
  }
  return analyze_ramp_code(code.data(), code.size(), fn.ramp, fn.resume);
}

void CoroCatalog::add_clang_ramp_points(
    const CoroFunction& fn, std::map<int64_t, std::set<std::pair<std::string, int>>>& lines) const {
  // The ramp stores the index of the first suspend point it reaches. Followed by an await_suspend
  // away from the declaration line, that point is a co_await (an eager coroutine); otherwise it
  // is the initial suspend, which keeps its place at the declaration.
  auto facts = ramp_facts(fn);
  if (!facts) return;
  for (const auto& s : facts->stores) {
    if (s.offset != fn.index_offset || s.width != fn.index_width || s.value < 0) continue;
    auto where = await_suspend_site(*facts, s.address);
    if (where && where->second != fn.decl_line) lines[s.value].insert(*where);
  }
}

SuspendPointInfo CoroCatalog::single_point(const CoroFunction& fn) const {
  // Only one point to resume from (see CoroFunction::single_resume_point): the first one the ramp
  // reaches. A lazy coroutine's ramp runs nothing of the body, so no await_suspend of the body is
  // in it (Clang -O0 calls the initial suspend's, on the declaration line): the point is the
  // initial suspend. An eager one's ramp runs the body up to its co_await, whose await_suspend
  // (called or inlined) names the line. The index field, if Clang kept one, is not needed.
  SuspendPointInfo sp;
  sp.index = 0;
  auto facts = ramp_facts(fn);
  if (!facts) return sp;  // no ramp to read: suspended, place unknown
  std::set<std::pair<std::string, int>> where;
  for (const auto& in : facts->instructions) {
    auto site = await_suspend_at(in);
    if (site && site->second != fn.decl_line) where.insert(*site);
  }
  if (where.empty()) return initial_point(fn, 0);
  return point_from_lines(fn, 0, where);
}

std::map<int64_t, SuspendPointInfo> CoroCatalog::compute_points(const CoroFunction& fn) const {
  std::map<int64_t, SuspendPointInfo> points;
  const int64_t initial = fn.compiler == CoroCompiler::kGcc ? 2 : 0;
  if (fn.single_resume_point) {
    points[0] = single_point(fn);
    return points;
  }
  points[initial] = initial_point(fn, initial);
  if (fn.index_width == 0) return points;

  std::vector<uint8_t> code;
  size_t len =
      fn.resume_size != 0 ? std::min<size_t>(fn.resume_size, kMaxResumeBytes) : kDefaultResumeBytes;
  if (!module_->object().read_code(fn.resume, len, &code)) return points;
  ResumeCodeFacts facts = analyze_resume_code(code.data(), code.size(), fn.resume);
  auto lines = index_store_lines(fn, facts, initial);
  if (fn.compiler == CoroCompiler::kClang) add_clang_ramp_points(fn, lines);
  for (const auto& [value, where] : lines) {
    points[value] = point_from_lines(fn, value, where);
    SuspendPointInfo& sp = points[value];
    if (fn.compiler == CoroCompiler::kGcc && sp.kind == SuspendPointInfo::Kind::kAwait &&
        sp.location.line != 0) {
      // GCC places a multi-line co_await on its last line; the keyword's line is in the source.
      int keyword = keywords_.keyword_line(sp.location.file, sp.location.line, fn.decl_line);
      if (keyword != sp.location.line) {
        sp.location.line = keyword;
        sp.rule += "+source-keyword";
      }
    }
  }
  if (fn.final_index >= 0 && points.count(fn.final_index) == 0) {
    // No store of it was read (unreachable, or merged): a frame there is still at its final
    // suspend, with the place unknown.
    SuspendPointInfo fin;
    fin.index = fn.final_index;
    fin.kind = SuspendPointInfo::Kind::kFinal;
    points[fn.final_index] = fin;
  }
  return points;
}

const std::map<int64_t, SuspendPointInfo>& CoroCatalog::suspend_points(
    const CoroFunction& fn) const {
  size_t idx = static_cast<size_t>(&fn - functions_.data());
  std::lock_guard<std::mutex> lock(mu_);
  auto it = points_.find(idx);
  if (it == points_.end()) it = points_.emplace(idx, compute_points(fn)).first;
  return it->second;
}

const SuspendPointInfo* CoroCatalog::suspend_point(const CoroFunction& fn, int64_t index) const {
  const auto& points = suspend_points(fn);
  // One point to resume from: every unfinished frame is there, whatever its index field holds.
  if (fn.single_resume_point && !points.empty()) return &points.begin()->second;
  auto it = points.find(index);
  return it == points.end() ? nullptr : &it->second;
}

}  // namespace asyncprobe::symbolizer
