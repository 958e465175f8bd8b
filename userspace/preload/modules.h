// The objects mapped in this process (from dl_iterate_phdr) and, once the helper delivered them,
// their coroutine tables. Records are created in normal context and never freed or moved, so the
// crash handler reads them without locks: a reader sees `count()` records, each fully built.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "userspace/preload/table_format.h"

namespace asyncprobe::preload {

struct TableView {
  const preload_table::TableHeader* header = nullptr;
  const preload_table::CoroRecord* coroutines = nullptr;
  const preload_table::PointRecord* points = nullptr;
  const preload_table::DestroyKey* destroy_keys = nullptr;
  const preload_table::SymbolRecord* symbols = nullptr;
  const preload_table::LineRecord* lines = nullptr;
  const char* strings = nullptr;

  bool valid() const { return header != nullptr; }
  const char* str(uint32_t off) const { return off < header->string_bytes ? strings + off : ""; }
  // All lookups take module-relative addresses.
  const preload_table::CoroRecord* coroutine_at(uint64_t rel) const;  // resume or cold range
  const preload_table::CoroRecord* coroutine_by_destroy(uint64_t rel, bool* is_cleanup) const;
  const preload_table::SymbolRecord* symbol_at(uint64_t rel) const;
  const preload_table::LineRecord* line_at(uint64_t rel) const;  // nullptr or a row with line > 0
  const preload_table::PointRecord* point(const preload_table::CoroRecord& c, int64_t index) const;
  uint32_t coroutine_index(const preload_table::CoroRecord* c) const {
    return static_cast<uint32_t>(c - coroutines);
  }
};

// Checks a blob (bounds, string offsets, sort order) and returns its view; invalid view if bad.
TableView make_table_view(const void* blob, size_t size);

struct ModuleRecord {
  uint32_t id = 0;
  const char* path = "";  // never freed
  uint64_t bias = 0;
  uint64_t lo = 0, hi = 0;  // span of the PT_LOAD segments
  static constexpr int kMaxExec = 4;
  int nexec = 0;
  uint64_t exec_lo[kMaxExec] = {};
  uint64_t exec_hi[kMaxExec] = {};
  uint64_t eh_frame_hdr = 0;  // absolute, 0 if none
  bool is_self = false;       // libasyncprobe-preload itself
  bool is_vdso = false;
  bool is_main = false;
  // Set once by the table loader (a quick blob first, then the complete one).
  std::atomic<const TableView*> tables{nullptr};
  std::atomic<bool> unloaded{false};

  bool contains_code(uint64_t addr) const {
    for (int i = 0; i < nexec; ++i) {
      if (addr >= exec_lo[i] && addr < exec_hi[i]) return true;
    }
    return false;
  }
  TableView view() const {
    const TableView* t = tables.load(std::memory_order_acquire);
    return t != nullptr ? *t : TableView{};
  }
};

class Modules {
 public:
  static constexpr size_t kCapacity = 8192;
  // Rescans dl_iterate_phdr: records new objects, marks vanished ones. Normal context; serialised
  // by an internal mutex. Returns how many new records were made; their ids are count()-n..
  static size_t refresh();
  static size_t count() { return count_.load(std::memory_order_acquire); }
  static ModuleRecord* at(size_t i) { return records_[i]; }
  // Async-signal-safe lookups.
  static const ModuleRecord* by_code(uint64_t addr);     // a loaded module whose code holds addr
  static const ModuleRecord* by_address(uint64_t addr);  // anywhere in [lo, hi)
  // Coroutine whose destroy or cleanup function is `destroy_abs`.
  struct CoroRef {
    const ModuleRecord* module = nullptr;
    TableView view;
    const preload_table::CoroRecord* coro = nullptr;
    bool via_cleanup = false;
    uint64_t resume_abs() const { return coro->resume + module->bias; }
  };
  static bool coroutine_by_destroy(uint64_t destroy_abs, CoroRef* out);
  static bool coroutine_at_pc(uint64_t pc, CoroRef* out);
  // Is every loaded module's table complete (or known to have none)?
  static bool tables_complete();

 private:
  static std::atomic<size_t> count_;
  static ModuleRecord* records_[kCapacity];
};

// Publishes a first table for `m` made from its coroutines' symbols (no names, no lines, promise
// assumed at +16), unless it already has one: enough to recognise its frames before the
// helper's tables arrive. Normal context.
struct SymbolCoroutine;
void install_symbol_table(ModuleRecord* m, const std::vector<SymbolCoroutine>& coroutines);

// True when the frame at `frame` has the header of coroutine `c`: (resume or NULL, destroy or
// cleanup). Reads through safe_read.
bool frame_matches(uint64_t frame, const Modules::CoroRef& c);
// Reads the suspend index of a frame of `c`; -1 when unknown.
int64_t read_suspend_index(uint64_t frame, const Modules::CoroRef& c);

}  // namespace asyncprobe::preload
