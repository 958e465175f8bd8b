// asyncprobe-preload-helper: computes the coroutine tables of a preloaded process outside it.
//
// The preload library starts this program (as an invisible child: no SIGCHLD) with the list of
// its mapped objects on stdin, one "<id> <path>" line each, and reads table blobs
// (userspace/preload/table_format.h) from its stdout. Symbolizing with DWARF takes from
// milliseconds to seconds per object; doing it here keeps that cost, libdw, libelf and capstone out
// of the target. Blobs arrive in waves, each replacing the module's previous one: symbols of every
// object without coroutines (no DWARF; complete), then for objects with coroutines their functions,
// layouts and lines, then the same with the suspend points placed.
//
// usage: asyncprobe-preload-helper [--debug-dir DIR]... [--lines coroutines|all|none]
// Exit status 0; 2 on a usage error. It never writes to stderr (that is the target's).
//
// At the target's exit the library starts it once more, to render the `asyncprobe run
// --trace-out/--blocking-out` report from the records it writes to stdin (protocol.h,
// ExitReportHeader), with the same writers as asyncprobe:
// usage: asyncprobe-preload-helper --exit-report FILE [--json]
// FILE "-" is stdout (the library makes it the target's stderr). Exit status 0; 1 when the report
// is malformed or FILE cannot be written (one line on stderr, the target's); 2 on a usage error.
#include <elfutils/libdw.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "symbolizer/coro_catalog.h"
#include "symbolizer/debug_file_locator.h"
#include "symbolizer/demangle.h"
#include "symbolizer/elf_object.h"
#include "symbolizer/module.h"
#include "userspace/output/preload_report.h"
#include "userspace/preload/table_format.h"
#include "userspace/process/preload_wire.h"

namespace {

using namespace asyncprobe;
namespace pt = asyncprobe::preload_table;

constexpr size_t kMaxLinesPerModule = 8u << 20;
constexpr size_t kMaxSymbolsPerModule = 4u << 20;

struct Request {
  uint32_t id = 0;
  std::string path;
};

class StringPool {
 public:
  StringPool() { bytes_.push_back('\0'); }
  uint32_t add(const std::string& s) {
    if (s.empty()) return 0;
    auto it = index_.find(s);
    if (it != index_.end()) return it->second;
    uint32_t at = static_cast<uint32_t>(bytes_.size());
    bytes_.insert(bytes_.end(), s.begin(), s.end());
    bytes_.push_back('\0');
    index_.emplace(s, at);
    return at;
  }
  const std::vector<char>& bytes() const { return bytes_; }

 private:
  std::vector<char> bytes_;
  std::unordered_map<std::string, uint32_t> index_;
};

struct Blob {
  uint32_t flags = 0;
  std::vector<pt::CoroRecord> coroutines;
  std::vector<pt::PointRecord> points;
  std::vector<pt::DestroyKey> destroy_keys;
  std::vector<pt::SymbolRecord> symbols;
  std::vector<pt::LineRecord> lines;
  StringPool strings;
};

template <typename T>
void append(std::vector<char>& out, const std::vector<T>& items) {
  const char* p = reinterpret_cast<const char*>(items.data());
  out.insert(out.end(), p, p + items.size() * sizeof(T));
}

bool write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool emit(uint32_t module_id, const Blob& b) {
  pt::TableHeader h{};
  h.magic = pt::kMagic;
  h.version = pt::kVersion;
  h.module_id = module_id;
  h.flags = b.flags;
  h.coroutines = static_cast<uint32_t>(b.coroutines.size());
  h.points = static_cast<uint32_t>(b.points.size());
  h.destroy_keys = static_cast<uint32_t>(b.destroy_keys.size());
  h.symbols = static_cast<uint32_t>(b.symbols.size());
  h.lines = static_cast<uint32_t>(b.lines.size());
  h.string_bytes = static_cast<uint32_t>(b.strings.bytes().size());
  pt::TableLayout layout{};
  pt::table_layout(h, &layout);  // false until total_bytes is set: only the offsets are wanted
  h.total_bytes = layout.end;
  std::vector<char> out;
  out.reserve(h.total_bytes);
  const char* hp = reinterpret_cast<const char*>(&h);
  out.insert(out.end(), hp, hp + sizeof h);
  append(out, b.coroutines);
  append(out, b.points);
  append(out, b.destroy_keys);
  append(out, b.symbols);
  append(out, b.lines);
  out.insert(out.end(), b.strings.bytes().begin(), b.strings.bytes().end());
  return write_all(1, out.data(), out.size());
}

// Line rows of every CU, sorted, with runs of the same file:line merged; an end-of-sequence row
// becomes line 0 so that addresses past a sequence map to nothing.
void collect_lines(const symbolizer::Module& module, Blob* b) {
  Dwarf* dw = dwarf_begin_elf(module.symbol_source().elf(), DWARF_C_READ, nullptr);
  if (dw == nullptr) return;
  std::vector<pt::LineRecord> rows;
  Dwarf_Off off = 0;
  Dwarf_Off next = 0;
  size_t header_size = 0;
  while (rows.size() < kMaxLinesPerModule &&
         dwarf_nextcu(dw, off, &next, &header_size, nullptr, nullptr, nullptr) == 0) {
    Dwarf_Die cu;
    if (dwarf_offdie(dw, off + header_size, &cu) != nullptr) {
      Dwarf_Lines* lines = nullptr;
      size_t n = 0;
      if (dwarf_getsrclines(&cu, &lines, &n) == 0) {
        for (size_t i = 0; i < n && rows.size() < kMaxLinesPerModule; ++i) {
          Dwarf_Line* l = dwarf_onesrcline(lines, i);
          Dwarf_Addr addr = 0;
          int lineno = 0;
          bool end = false;
          if (l == nullptr || dwarf_lineaddr(l, &addr) != 0) continue;
          dwarf_lineno(l, &lineno);
          dwarf_lineendsequence(l, &end);
          const char* src = dwarf_linesrc(l, nullptr, nullptr);
          pt::LineRecord r{};
          r.address = addr;
          r.line = end || lineno <= 0 ? 0 : static_cast<uint32_t>(lineno);
          r.file = r.line == 0 || src == nullptr ? 0 : b->strings.add(src);
          rows.push_back(r);
        }
      }
    }
    off = next;
  }
  dwarf_end(dw);
  std::stable_sort(rows.begin(), rows.end(), [](const pt::LineRecord& a, const pt::LineRecord& c) {
    return a.address < c.address;
  });
  for (const auto& r : rows) {
    if (!b->lines.empty()) {
      pt::LineRecord& last = b->lines.back();
      if (last.address == r.address) {
        // Several rows at one address: the last one describes the instruction (is_stmt order).
        if (r.line != 0 || last.line == 0) last = r;
        continue;
      }
      if (last.file == r.file && last.line == r.line) continue;
    }
    b->lines.push_back(r);
  }
}

void collect_symbols(const symbolizer::ElfObject& primary, const symbolizer::ElfObject* secondary,
                     Blob* b) {
  std::map<uint64_t, const symbolizer::ElfSymbol*> by_start;
  auto add_from = [&](const symbolizer::ElfObject& obj) {
    for (const auto& s : obj.symbols()) {
      if (!s.is_function || s.value == 0) continue;
      auto [it, inserted] = by_start.emplace(s.value, &s);
      // Prefer a global name over a local alias, then the sized one.
      if (!inserted &&
          ((it->second->is_local && !s.is_local) || (it->second->size == 0 && s.size != 0))) {
        it->second = &s;
      }
      if (by_start.size() >= kMaxSymbolsPerModule) return;
    }
  };
  add_from(primary);
  if (secondary != nullptr && secondary != &primary) add_from(*secondary);
  for (const auto& [start, s] : by_start) {
    pt::SymbolRecord r{};
    r.start = start;
    r.size = s->size;
    r.name = b->strings.add(symbolizer::demangle(s->name));
    b->symbols.push_back(r);
  }
}

void collect_coroutines(const symbolizer::CoroCatalog& catalog, bool place_points, Blob* b) {
  // GCC moves unlikely paths of the actor (exception handling among them) into <actor>.cold.
  std::unordered_map<std::string, std::pair<uint64_t, uint64_t>> cold_by_ramp;
  for (const auto& s : catalog.module().symbol_source().symbols()) {
    const std::string suffix = ".cold";
    if (!s.is_function || s.name.size() <= suffix.size() ||
        s.name.compare(s.name.size() - suffix.size(), suffix.size(), suffix) != 0) {
      continue;
    }
    symbolizer::CoroCompiler compiler{};
    std::string role;
    std::string ramp = symbolizer::ramp_of_split_symbol(
        s.name.substr(0, s.name.size() - suffix.size()), &compiler, &role);
    if (!ramp.empty() && role == "resume") cold_by_ramp[ramp] = {s.value, s.size};
  }
  std::vector<const symbolizer::CoroFunction*> fns;
  for (const auto& fn : catalog.functions()) fns.push_back(&fn);
  std::sort(fns.begin(), fns.end(), [](auto* a, auto* c) { return a->resume < c->resume; });
  for (const symbolizer::CoroFunction* fn : fns) {
    pt::CoroRecord r{};
    r.resume = fn->resume;
    r.resume_size = fn->resume_size;
    if (auto it = cold_by_ramp.find(fn->ramp_linkage); it != cold_by_ramp.end()) {
      r.cold = it->second.first;
      r.cold_size = it->second.second;
    }
    r.destroy = fn->destroy;
    r.cleanup = fn->cleanup;
    r.name = b->strings.add(fn->name.empty() ? fn->ramp_linkage : fn->name);
    r.decl_file = b->strings.add(fn->decl_file);
    r.decl_line = fn->decl_line > 0 ? static_cast<uint32_t>(fn->decl_line) : 0;
    r.index_offset = fn->index_offset;
    r.index_width = fn->index_width;
    r.promise_offset = fn->promise_offset;
    r.compiler = fn->compiler == symbolizer::CoroCompiler::kClang ? 1 : 0;
    r.points_begin = static_cast<uint32_t>(b->points.size());
    if (place_points) {
      for (const auto& [index, info] : catalog.suspend_points(*fn)) {
        pt::PointRecord p{};
        p.index = index;
        p.file = info.location.line != 0 ? b->strings.add(info.location.file) : 0;
        p.line = info.location.line > 0 ? static_cast<uint32_t>(info.location.line) : 0;
        p.kind = info.kind == symbolizer::SuspendPointInfo::Kind::kInitial ? pt::kInitial
                 : info.kind == symbolizer::SuspendPointInfo::Kind::kFinal ? pt::kFinal
                                                                           : pt::kAwait;
        b->points.push_back(p);
      }
    }
    r.points_count = static_cast<uint32_t>(b->points.size()) - r.points_begin;
    uint32_t index = static_cast<uint32_t>(b->coroutines.size());
    b->coroutines.push_back(r);
    b->destroy_keys.push_back({fn->destroy, index, 0});
    if (fn->cleanup != 0) b->destroy_keys.push_back({fn->cleanup, index, 1});
  }
  std::sort(b->destroy_keys.begin(), b->destroy_keys.end(),
            [](const pt::DestroyKey& a, const pt::DestroyKey& c) { return a.address < c.address; });
}

enum class LinesMode { kCoroutines, kAll, kNone };

struct Loaded {
  Request req;
  std::shared_ptr<symbolizer::Module> module;
  std::shared_ptr<symbolizer::CoroCatalog> catalog;
};

Blob build(const Loaded& l, LinesMode lines, bool place_points) {
  Blob b;
  const symbolizer::Module& m = *l.module;
  if (m.has_symtab() || !m.symbol_source().symbols().empty()) b.flags |= pt::kHasSymbols;
  if (m.dwarf() != nullptr) b.flags |= pt::kHasDwarf;
  collect_coroutines(*l.catalog, place_points, &b);
  if (place_points) b.flags |= pt::kPointsPlaced;
  collect_symbols(m.symbol_source(), &m.object(), &b);
  bool want_lines =
      lines == LinesMode::kAll || (lines == LinesMode::kCoroutines && !b.coroutines.empty());
  if (want_lines && m.dwarf() != nullptr) collect_lines(m, &b);
  return b;
}

// The first, quick look at an object: its symbols (from its debug file when it has one), no
// DWARF. Enough to name every frame of a stack; complete for objects without coroutines.
struct QuickLook {
  std::unique_ptr<symbolizer::ElfObject> object;
  std::unique_ptr<symbolizer::ElfObject> debug;
  bool has_coroutines = false;
};

bool quick_look(const Request& r, const symbolizer::DebugSearchPaths& paths, QuickLook* q) {
  std::string err;
  q->object = symbolizer::ElfObject::open(r.path, &err);
  if (q->object == nullptr) return false;
  if (!q->object->has_symtab() || !q->object->has_debug_info()) {
    std::string debug = symbolizer::find_debug_file(*q->object, r.path, paths);
    if (!debug.empty()) q->debug = symbolizer::ElfObject::open(debug, &err);
  }
  const symbolizer::ElfObject& source = q->debug != nullptr ? *q->debug : *q->object;
  for (const auto& s : source.symbols()) {
    symbolizer::CoroCompiler compiler{};
    std::string role;
    if (s.is_function && !symbolizer::ramp_of_split_symbol(s.name, &compiler, &role).empty() &&
        role == "resume") {
      q->has_coroutines = true;
      break;
    }
  }
  return true;
}

// --exit-report FILE [--json]: see the top of the file.
int exit_report_main(int argc, char** argv) {
  if (argc < 3 || argc > 4 || (argc == 4 && std::strcmp(argv[3], "--json") != 0)) return 2;
  std::string path = argv[2];
  bool json = argc == 4;
  std::string stream;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = read(0, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    stream.append(buf, static_cast<size_t>(n));
  }
  process::PreloadExitReport r;
  std::string why;
  if (!process::decode_exit_report(stream, &r, &why)) {
    std::cerr << "asyncprobe-preload: " << why << "\n";
    return 1;
  }
  std::ostringstream text;
  if (r.kind == preload_proto::kExitTrace && json) {
    output::write_trace_report_json(text, r.trace);
  } else if (r.kind == preload_proto::kExitTrace) {
    output::write_trace_report_text(text, r.trace);
  } else if (json) {
    output::write_blocking_report_json(text, r.blocking);
  } else {
    output::write_blocking_report_text(text, r.blocking);
  }
  if (path == "-") {
    std::cout << text.str() << std::flush;
    return std::cout ? 0 : 1;
  }
  std::ofstream out(path, std::ios::trunc);
  out << text.str();
  out.close();
  if (!out) {
    std::cerr << "asyncprobe-preload: cannot write " << path << "\n";
    return 1;
  }
  return 0;
}

// The options the library passes; false on anything else.
bool parse_args(int argc, char** argv, symbolizer::DebugSearchPaths* paths, LinesMode* lines) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--debug-dir" && i + 1 < argc) {
      paths->debug_roots.insert(paths->debug_roots.begin(), argv[++i]);
    } else if (a == "--lines" && i + 1 < argc) {
      std::string v = argv[++i];
      *lines = v == "all"    ? LinesMode::kAll
               : v == "none" ? LinesMode::kNone
                             : LinesMode::kCoroutines;
    } else {
      return false;
    }
  }
  return true;
}

// "<id> <path>" lines until end of input.
std::vector<Request> read_requests(std::istream& in) {
  std::vector<Request> requests;
  std::string line;
  while (std::getline(in, line)) {
    size_t sp = line.find(' ');
    if (sp == std::string::npos || sp == 0) continue;
    Request r;
    r.id = static_cast<uint32_t>(std::strtoul(line.substr(0, sp).c_str(), nullptr, 10));
    r.path = line.substr(sp + 1);
    requests.push_back(std::move(r));
  }
  return requests;
}

// Pass 1: symbols of every object (milliseconds each), emitted at once for the objects without
// coroutines; those with coroutines are returned for pass 2. False when the library stopped
// reading.
bool symbols_pass(const std::vector<Request>& requests, const symbolizer::DebugSearchPaths& paths,
                  std::vector<Request>* with_coroutines) {
  for (const auto& r : requests) {
    Blob b;
    QuickLook q;
    try {
      if (!quick_look(r, paths, &q)) {
        b.flags = pt::kUnreadable;
      } else {
        collect_symbols(q.debug != nullptr ? *q.debug : *q.object, q.object.get(), &b);
        b.flags |= pt::kHasSymbols;
        if (!q.has_coroutines) b.flags |= pt::kPointsPlaced;
      }
    } catch (const std::exception&) {
      b = Blob{};
      b.flags = pt::kUnreadable;
    }
    // An object with coroutines already has the library's own table of them (from their
    // symbols); a symbols-only blob would hide them until pass 2.
    if (q.has_coroutines) {
      with_coroutines->push_back(r);
    } else if (!emit(r.id, b)) {
      return false;
    }
  }
  return true;
}

// Pass 2: the objects with coroutines, with DWARF: layouts and lines first, then the suspend
// points (the slow part).
void dwarf_pass(const std::vector<Request>& with_coroutines,
                const symbolizer::DebugSearchPaths& paths, LinesMode lines) {
  symbolizer::ModuleCache cache(paths);
  std::vector<Loaded> loaded;
  for (const auto& r : with_coroutines) {
    Loaded l;
    l.req = r;
    try {
      std::string err;
      l.module = cache.get(r.path, r.path, &err);
      if (l.module == nullptr) continue;
      l.catalog = std::make_shared<symbolizer::CoroCatalog>(l.module);
      if (!emit(r.id, build(l, lines, false))) return;
      loaded.push_back(std::move(l));
    } catch (const std::exception&) {
    }
  }
  for (const auto& l : loaded) {
    try {
      if (!emit(l.req.id, build(l, lines, true))) return;
    } catch (const std::exception&) {
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  // Started from inside a process that may block signals: start clean.
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  signal(SIGPIPE, SIG_DFL);
  if (argc > 1 && std::strcmp(argv[1], "--exit-report") == 0) return exit_report_main(argc, argv);
  symbolizer::DebugSearchPaths paths;
  LinesMode lines = LinesMode::kCoroutines;
  if (!parse_args(argc, argv, &paths, &lines)) return 2;
  std::vector<Request> with_coroutines;
  if (!symbols_pass(read_requests(std::cin), paths, &with_coroutines)) return 0;
  dwarf_pass(with_coroutines, paths, lines);
  return 0;
}
