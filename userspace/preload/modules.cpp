#include "userspace/preload/modules.h"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "userspace/coro/frame_abi.h"
#include "userspace/preload/elf_scan.h"
#include "userspace/preload/signal_safe.h"

namespace asyncprobe::preload {

namespace pt = preload_table;

std::atomic<size_t> Modules::count_{0};
ModuleRecord* Modules::records_[Modules::kCapacity];

namespace {

std::mutex g_refresh_mu;

template <typename T, typename Key>
const T* upper_before(const T* items, uint32_t n, uint64_t key, Key key_of) {
  // The last item whose key <= key, or nullptr.
  uint32_t lo = 0, hi = n;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (key_of(items[mid]) <= key) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo == 0 ? nullptr : &items[lo - 1];
}

struct Seen {
  std::string path;
  uint64_t bias = 0;
  uint64_t first_vaddr = 0;
  std::vector<ElfW(Phdr)> phdrs;
  bool is_main = false;
  bool is_vdso = false;
};

int collect(struct dl_phdr_info* info, size_t, void* arg) {
  auto* out = static_cast<std::vector<Seen>*>(arg);
  Seen s;
  s.bias = info->dlpi_addr;
  const char* name = info->dlpi_name != nullptr ? info->dlpi_name : "";
  if (out->empty() && name[0] == '\0') {
    s.is_main = true;
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n > 0) s.path.assign(buf, static_cast<size_t>(n));
  } else {
    s.path = name;
    s.is_vdso = name[0] != '/';
  }
  bool first = true;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    s.phdrs.push_back(info->dlpi_phdr[i]);
    if (info->dlpi_phdr[i].p_type == PT_LOAD && first) {
      s.first_vaddr = info->dlpi_phdr[i].p_vaddr;
      first = false;
    }
  }
  if (!first) out->push_back(std::move(s));
  return 0;
}

uint64_t self_marker_address() { return reinterpret_cast<uint64_t>(&self_marker_address); }

}  // namespace

size_t Modules::refresh() {
  std::lock_guard<std::mutex> lock(g_refresh_mu);
  std::vector<Seen> seen;
  dl_iterate_phdr(collect, &seen);
  size_t n = count_.load(std::memory_order_relaxed);
  std::vector<bool> still(n, false);
  size_t added = 0;
  for (auto& s : seen) {
    bool known = false;
    for (size_t i = 0; i < n; ++i) {
      ModuleRecord* r = records_[i];
      if (!r->unloaded.load(std::memory_order_relaxed) && r->bias == s.bias && s.path == r->path) {
        still[i] = true;
        known = true;
        break;
      }
    }
    if (known || n + added >= kCapacity) continue;
    auto* r = new ModuleRecord();
    r->id = static_cast<uint32_t>(n + added);
    r->path = strdup(s.path.c_str());
    r->bias = s.bias;
    r->is_main = s.is_main;
    r->is_vdso = s.is_vdso;
    r->lo = UINT64_MAX;
    for (const auto& ph : s.phdrs) {
      if (ph.p_type == PT_LOAD) {
        uint64_t lo = s.bias + ph.p_vaddr;
        uint64_t hi = lo + ph.p_memsz;
        if (lo < r->lo) r->lo = lo;
        if (hi > r->hi) r->hi = hi;
        if ((ph.p_flags & PF_X) != 0 && r->nexec < ModuleRecord::kMaxExec) {
          r->exec_lo[r->nexec] = lo;
          r->exec_hi[r->nexec] = hi;
          r->nexec++;
        }
      } else if (ph.p_type == PT_GNU_EH_FRAME) {
        r->eh_frame_hdr = s.bias + ph.p_vaddr;
      }
    }
    r->is_self = r->contains_code(self_marker_address());
    records_[n + added] = r;
    ++added;
  }
  for (size_t i = 0; i < n; ++i) {
    if (!still[i]) records_[i]->unloaded.store(true, std::memory_order_release);
  }
  count_.store(n + added, std::memory_order_release);
  return added;
}

const ModuleRecord* Modules::by_code(uint64_t addr) {
  size_t n = count();
  for (size_t i = 0; i < n; ++i) {
    const ModuleRecord* r = records_[i];
    if (!r->unloaded.load(std::memory_order_acquire) && r->contains_code(addr)) return r;
  }
  return nullptr;
}

const ModuleRecord* Modules::by_address(uint64_t addr) {
  size_t n = count();
  for (size_t i = 0; i < n; ++i) {
    const ModuleRecord* r = records_[i];
    if (!r->unloaded.load(std::memory_order_acquire) && addr >= r->lo && addr < r->hi) return r;
  }
  return nullptr;
}

bool Modules::coroutine_by_destroy(uint64_t destroy_abs, CoroRef* out) {
  const ModuleRecord* m = by_code(destroy_abs);
  if (m == nullptr) return false;
  TableView v = m->view();
  if (!v.valid()) return false;
  bool cleanup = false;
  const pt::CoroRecord* c = v.coroutine_by_destroy(destroy_abs - m->bias, &cleanup);
  if (c == nullptr) return false;
  *out = CoroRef{m, v, c, cleanup};
  return true;
}

bool Modules::coroutine_at_pc(uint64_t pc, CoroRef* out) {
  const ModuleRecord* m = by_code(pc);
  if (m == nullptr) return false;
  TableView v = m->view();
  if (!v.valid()) return false;
  const pt::CoroRecord* c = v.coroutine_at(pc - m->bias);
  if (c == nullptr) return false;
  *out = CoroRef{m, v, c, false};
  return true;
}

bool Modules::tables_complete() {
  size_t n = count();
  for (size_t i = 0; i < n; ++i) {
    const ModuleRecord* r = records_[i];
    if (r->unloaded.load(std::memory_order_acquire) || r->is_self || r->is_vdso) continue;
    TableView v = r->view();
    if (!v.valid()) return false;
    if ((v.header->flags & (pt::kPointsPlaced | pt::kUnreadable)) == 0) return false;
  }
  return true;
}

const pt::CoroRecord* TableView::coroutine_at(uint64_t rel) const {
  // Resume ranges are sorted; cold parts are few: check them linearly.
  const pt::CoroRecord* c = upper_before(coroutines, header->coroutines, rel,
                                         [](const pt::CoroRecord& r) { return r.resume; });
  if (c != nullptr && rel < c->resume + (c->resume_size != 0 ? c->resume_size : 1)) return c;
  for (uint32_t i = 0; i < header->coroutines; ++i) {
    const pt::CoroRecord& r = coroutines[i];
    if (r.cold != 0 && rel >= r.cold && rel < r.cold + r.cold_size) return &r;
  }
  return nullptr;
}

const pt::CoroRecord* TableView::coroutine_by_destroy(uint64_t rel, bool* is_cleanup) const {
  const pt::DestroyKey* k = upper_before(destroy_keys, header->destroy_keys, rel,
                                         [](const pt::DestroyKey& d) { return d.address; });
  if (k == nullptr || k->address != rel) return nullptr;
  if (is_cleanup != nullptr) *is_cleanup = k->is_cleanup != 0;
  return &coroutines[k->coroutine];
}

const pt::SymbolRecord* TableView::symbol_at(uint64_t rel) const {
  const pt::SymbolRecord* s = upper_before(symbols, header->symbols, rel,
                                           [](const pt::SymbolRecord& r) { return r.start; });
  if (s == nullptr) return nullptr;
  uint64_t size = s->size != 0 ? s->size : 4096;  // unsized symbols: a bounded guess
  return rel < s->start + size ? s : nullptr;
}

const pt::LineRecord* TableView::line_at(uint64_t rel) const {
  const pt::LineRecord* l =
      upper_before(lines, header->lines, rel, [](const pt::LineRecord& r) { return r.address; });
  return l != nullptr && l->line != 0 ? l : nullptr;
}

const pt::PointRecord* TableView::point(const pt::CoroRecord& c, int64_t index) const {
  for (uint32_t i = 0; i < c.points_count; ++i) {
    const pt::PointRecord& p = points[c.points_begin + i];
    if (p.index == index) return &p;
  }
  return nullptr;
}

TableView make_table_view(const void* blob, size_t size) {
  TableView v;
  if (size < sizeof(pt::TableHeader)) return v;
  const auto* h = static_cast<const pt::TableHeader*>(blob);
  pt::TableLayout l{};
  if (!pt::table_layout(*h, &l) || l.end != size) return v;
  const char* base = static_cast<const char*>(blob);
  TableView t;
  t.header = h;
  t.coroutines = reinterpret_cast<const pt::CoroRecord*>(base + l.coroutines);
  t.points = reinterpret_cast<const pt::PointRecord*>(base + l.points);
  t.destroy_keys = reinterpret_cast<const pt::DestroyKey*>(base + l.destroy_keys);
  t.symbols = reinterpret_cast<const pt::SymbolRecord*>(base + l.symbols);
  t.lines = reinterpret_cast<const pt::LineRecord*>(base + l.lines);
  t.strings = base + l.strings;
  // Everything the lookups rely on: terminated strings, offsets in range, sorted keys.
  if (t.strings[h->string_bytes - 1] != '\0') return v;
  auto str_ok = [&](uint32_t off) { return off < h->string_bytes; };
  for (uint32_t i = 0; i < h->coroutines; ++i) {
    const pt::CoroRecord& c = t.coroutines[i];
    if (!str_ok(c.name) || !str_ok(c.decl_file)) return v;
    if (c.points_begin > h->points || c.points_count > h->points - c.points_begin) return v;
    if (i > 0 && t.coroutines[i - 1].resume > c.resume) return v;
  }
  for (uint32_t i = 0; i < h->points; ++i) {
    if (!str_ok(t.points[i].file)) return v;
  }
  for (uint32_t i = 0; i < h->destroy_keys; ++i) {
    if (t.destroy_keys[i].coroutine >= h->coroutines) return v;
    if (i > 0 && t.destroy_keys[i - 1].address > t.destroy_keys[i].address) return v;
  }
  for (uint32_t i = 0; i < h->symbols; ++i) {
    if (!str_ok(t.symbols[i].name)) return v;
    if (i > 0 && t.symbols[i - 1].start > t.symbols[i].start) return v;
  }
  for (uint32_t i = 0; i < h->lines; ++i) {
    if (!str_ok(t.lines[i].file)) return v;
    if (i > 0 && t.lines[i - 1].address > t.lines[i].address) return v;
  }
  return t;
}

void install_symbol_table(ModuleRecord* m, const std::vector<SymbolCoroutine>& coroutines) {
  if (coroutines.empty() || m->tables.load(std::memory_order_acquire) != nullptr) return;
  std::vector<pt::CoroRecord> coros;
  std::vector<pt::DestroyKey> keys;
  for (const auto& c : coroutines) {
    pt::CoroRecord r{};
    r.resume = c.resume;
    r.resume_size = c.resume_size;
    r.destroy = c.destroy;
    r.cleanup = c.cleanup;
    r.promise_offset = coro::kDefaultPromiseOffset;
    r.compiler = c.gcc ? 0 : 1;
    uint32_t index = static_cast<uint32_t>(coros.size());
    coros.push_back(r);
    keys.push_back({c.destroy, index, 0});
    if (c.cleanup != 0) keys.push_back({c.cleanup, index, 1});
  }
  std::sort(keys.begin(), keys.end(),
            [](const pt::DestroyKey& a, const pt::DestroyKey& b) { return a.address < b.address; });
  pt::TableHeader h{};
  h.magic = pt::kMagic;
  h.version = pt::kVersion;
  h.module_id = m->id;
  h.coroutines = static_cast<uint32_t>(coros.size());
  h.destroy_keys = static_cast<uint32_t>(keys.size());
  h.string_bytes = 1;
  pt::TableLayout l{};
  pt::table_layout(h, &l);
  h.total_bytes = l.end;
  void* p =
      mmap(nullptr, h.total_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return;
  char* base = static_cast<char*>(p);
  std::memcpy(base, &h, sizeof h);
  std::memcpy(base + l.coroutines, coros.data(), coros.size() * sizeof(pt::CoroRecord));
  std::memcpy(base + l.destroy_keys, keys.data(), keys.size() * sizeof(pt::DestroyKey));
  base[l.strings] = '\0';
  mprotect(p, h.total_bytes, PROT_READ);  // read-only: never mistaken for frames by a snapshot
  TableView v = make_table_view(p, h.total_bytes);
  if (!v.valid()) {
    munmap(p, h.total_bytes);
    return;
  }
  const TableView* none = nullptr;
  auto* view = new TableView(v);
  if (!m->tables.compare_exchange_strong(none, view, std::memory_order_acq_rel)) delete view;
}

bool frame_matches(uint64_t frame, const Modules::CoroRef& c) {
  if (frame == 0 || (frame & 7) != 0) return false;
  uint64_t words[coro::kHeaderBytes / 8];
  if (!safe_read(frame, words, sizeof words)) return false;
  uint64_t destroy = c.coro->destroy + c.module->bias;
  uint64_t cleanup = c.coro->cleanup != 0 ? c.coro->cleanup + c.module->bias : 0;
  const uint64_t destroy_word = words[coro::kDestroyOffset / 8];
  if (destroy_word != destroy && (cleanup == 0 || destroy_word != cleanup)) return false;
  const uint64_t resume_word = words[coro::kResumeOffset / 8];
  return resume_word == 0 || resume_word == c.resume_abs();
}

int64_t read_suspend_index(uint64_t frame, const Modules::CoroRef& c) {
  uint8_t width = c.coro->index_width;
  if (width == 0 || width > 8) return -1;
  uint64_t v = 0;
  if (!safe_read(frame + c.coro->index_offset, &v, width)) return -1;
  return static_cast<int64_t>(v);
}

}  // namespace asyncprobe::preload
