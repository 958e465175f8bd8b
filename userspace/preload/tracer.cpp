#include "userspace/preload/tracer.h"

#include <capstone/capstone.h>
#include <cpuid.h>
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <string>

#include "userspace/preload/code_patch.h"
#include "userspace/preload/config.h"
#include "userspace/preload/elf_scan.h"
#include "userspace/preload/library.h"
#include "userspace/preload/modules.h"
#include "userspace/preload/signal_safe.h"

extern "C" {
extern const unsigned char asyncprobe_tramp_clang[];
extern const unsigned char asyncprobe_tramp_gcc[];
extern const uint32_t asyncprobe_tramp_layout_clang[10];
extern const uint32_t asyncprobe_tramp_layout_gcc[10];
void asyncprobe_trace_slow_stub();
void asyncprobe_dl_hook();
void asyncprobe_trace_slow(uint64_t frame, uint32_t id) __attribute__((visibility("hidden")));
void asyncprobe_dl_activity() __attribute__((visibility("hidden")));
}

namespace asyncprobe::preload {

namespace {

constexpr uint64_t kEventCapacity = 65536;
constexpr uint64_t kCountersOffset = 4096;
constexpr uint64_t kCounterStride = 32;  // resumes, starts, destroy dispatches, spare
constexpr uint64_t kEventsOffset = kCountersOffset + uint64_t{kMaxTracedFunctions} * kCounterStride;
constexpr uint64_t kBufferBytes = kEventsOffset + kEventCapacity * 16;
constexpr size_t kTrampolineSlot = 320;
constexpr size_t kPatchBytes = 5;

enum BufferState : uint32_t { kActive = 1, kRetired = 2 };

struct Event {
  uint64_t frame;
  uint32_t id;
  uint32_t kind;  // 0 resume, 1 start (GCC ramp running the body)
};

enum Layout { kSize, kFlags, kTls, kCntResume, kCntStart, kCntDispatch, kIdx, kId1, kStub, kId2 };

// Layout shared with trampoline.S.
struct ThreadBuffer {
  uint64_t head;
  uint64_t capacity;
  uint64_t mask;
  uint64_t events_offset;
  uint64_t lost;
  uint64_t pad0[3];
  uint64_t tail;
  uint64_t last_drain_ns;
  uint64_t lost_reported;
  uint64_t pad1[5];
  std::atomic<uint32_t> state;
  int32_t tid;
  ThreadBuffer* next;

  // counters()[id * 4 + k]: k = 0 resumes, 1 starts, 2 destroy dispatches.
  uint64_t* counters() {
    return reinterpret_cast<uint64_t*>(reinterpret_cast<char*>(this) + kCountersOffset);
  }
  Event* events() {
    return reinterpret_cast<Event*>(reinterpret_cast<char*>(this) + kEventsOffset);
  }
};
static_assert(offsetof(ThreadBuffer, head) == 0);
static_assert(offsetof(ThreadBuffer, capacity) == 8);
static_assert(offsetof(ThreadBuffer, mask) == 16);
static_assert(offsetof(ThreadBuffer, events_offset) == 24);
static_assert(offsetof(ThreadBuffer, lost) == 32);
static_assert(offsetof(ThreadBuffer, tail) == 64);
static_assert(sizeof(Event) == 16);

__thread ThreadBuffer* t_buffer __attribute__((tls_model("initial-exec"))) = nullptr;
__thread bool t_in_slow __attribute__((tls_model("initial-exec"))) = false;

alignas(64) volatile uint8_t g_flags = 0;
std::atomic<ThreadBuffer*> g_buffers{nullptr};
pthread_key_t g_exit_key;
std::atomic<uint64_t> g_slow_lost{0};

// Counters of buffers that were handed to a new thread after their thread exited.
std::mutex g_fold_mu;
uint64_t* g_folded = nullptr;  // kMaxTracedFunctions counters
// Never destroyed: the exit reports run after static destructors may have.
std::vector<std::pair<int, uint64_t>>& g_folded_threads =
    *new std::vector<std::pair<int, uint64_t>>();

TracedFunction g_functions[kMaxTracedFunctions];
std::atomic<uint32_t> g_function_count{0};
std::atomic<uint32_t> g_patched{0};
std::atomic<uint32_t> g_unpatched{0};
std::mutex g_patch_mu;

// capstone, loaded on demand so that programs run without tracing never map it.
struct Capstone {
  decltype(&cs_open) open = nullptr;
  decltype(&cs_option) option = nullptr;
  decltype(&cs_disasm) disasm = nullptr;
  decltype(&cs_free) free = nullptr;
  decltype(&cs_close) close = nullptr;
  csh handle = 0;
  bool ok = false;
} g_cs;

int64_t g_tls_offset = 0;
bool g_ready = false;

void on_thread_exit(void* p) {
  auto* b = static_cast<ThreadBuffer*>(p);
  if (b == nullptr) return;
  if (t_buffer == b) t_buffer = nullptr;
  b->state.store(kRetired, std::memory_order_release);
}

void fold_into_global(ThreadBuffer* b) {
  // Caller holds g_fold_mu.
  uint64_t* c = b->counters();
  uint64_t total = 0;
  uint32_t n = g_function_count.load(std::memory_order_acquire);
  for (uint64_t i = 0; i < uint64_t{n} * 4; ++i) {
    if (c[i] != 0) {
      g_folded[i] += c[i];
      if (i % 4 == 0) total += c[i];
      c[i] = 0;
    }
  }
  if (total != 0) g_folded_threads.emplace_back(b->tid, total);
}

ThreadBuffer* acquire_buffer() {
  // Reuse a buffer whose thread exited and whose events were all drained.
  for (ThreadBuffer* b = g_buffers.load(std::memory_order_acquire); b != nullptr; b = b->next) {
    if (b->state.load(std::memory_order_acquire) != kRetired) continue;
    bool events_off = (g_flags & kTraceEvents) == 0;
    if (!events_off && __atomic_load_n(&b->head, __ATOMIC_ACQUIRE) != b->tail) continue;
    uint32_t expected = kRetired;
    if (!b->state.compare_exchange_strong(expected, kActive)) continue;
    std::lock_guard<std::mutex> lock(g_fold_mu);
    fold_into_global(b);
    b->tail = b->head;
    b->tid = self_tid();
    return b;
  }
  void* p = mmap(nullptr, kBufferBytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  auto* b = new (p) ThreadBuffer();
  b->capacity = kEventCapacity;
  b->mask = kEventCapacity - 1;
  b->events_offset = kEventsOffset;
  b->tid = self_tid();
  b->last_drain_ns = monotonic_ns();
  b->state.store(kActive, std::memory_order_relaxed);
  ThreadBuffer* head = g_buffers.load(std::memory_order_relaxed);
  do {
    b->next = head;
  } while (!g_buffers.compare_exchange_weak(head, b, std::memory_order_release,
                                            std::memory_order_relaxed));
  return b;
}

// ---- relocation of displaced instructions ------------------------------------------------

struct Relocated {
  unsigned char bytes[96];
  size_t size = 0;
  size_t displaced = 0;  // bytes of original code moved
};

size_t skip_prefixes(const uint8_t* b, size_t n) {
  size_t i = 0;
  while (i < n && (b[i] == 0x2e || b[i] == 0x3e || b[i] == 0xf2)) ++i;  // hints, bnd
  return i;
}

bool emit(Relocated* r, const void* p, size_t n) {
  if (r->size + n > sizeof r->bytes) return false;
  std::memcpy(r->bytes + r->size, p, n);
  r->size += n;
  return true;
}

bool emit_rel32(Relocated* r, const uint8_t* opcode, size_t opcode_len, uint64_t at,
                uint64_t target) {
  uint64_t end = at + r->size + opcode_len + 4;
  if (!rel32_reachable(end, target)) return false;
  int32_t rel = static_cast<int32_t>(static_cast<int64_t>(target - end));
  return emit(r, opcode, opcode_len) && emit(r, &rel, 4);
}

// Moves the instructions covering the first kPatchBytes of `entry` to `dest`. False when one of
// them cannot be moved.
bool relocate_entry(uint64_t entry, const uint8_t* code, size_t code_len, uint64_t dest,
                    Relocated* out) {
  cs_insn* insn = nullptr;
  size_t count = g_cs.disasm(g_cs.handle, code, std::min<size_t>(code_len, 64), entry, 6, &insn);
  if (count == 0) return false;
  bool ok = true;
  size_t covered = 0;
  for (size_t i = 0; i < count && covered < kPatchBytes && ok; ++i) {
    const cs_insn& in = insn[i];
    const cs_detail* d = in.detail;
    bool is_jump = false, is_call = false, is_ret = false, is_int = false;
    for (uint8_t g = 0; g < d->groups_count; ++g) {
      is_jump |= d->groups[g] == CS_GRP_JUMP;
      is_call |= d->groups[g] == CS_GRP_CALL;
      is_ret |= d->groups[g] == CS_GRP_RET || d->groups[g] == CS_GRP_IRET;
      is_int |= d->groups[g] == CS_GRP_INT;
    }
    uint64_t here = dest + out->size;
    if (is_call || is_ret || is_int) {
      ok = false;  // a return address or an exit inside the trampoline: never
    } else if (is_jump) {
      if (in.id == X86_INS_JRCXZ || in.id == X86_INS_JECXZ || in.id == X86_INS_LOOP ||
          in.id == X86_INS_LOOPE || in.id == X86_INS_LOOPNE || d->x86.op_count != 1 ||
          d->x86.operands[0].type != X86_OP_IMM) {
        ok = false;  // indirect jumps could stay, but a function entry does not start with one
      } else {
        uint64_t target = static_cast<uint64_t>(d->x86.operands[0].imm);
        if (target > entry && target < entry + kPatchBytes) {
          ok = false;
        } else {
          size_t p = skip_prefixes(in.bytes, in.size);
          uint8_t b0 = in.bytes[p];
          if (b0 == 0xeb || b0 == 0xe9) {
            const uint8_t op[] = {0xe9};
            ok = emit_rel32(out, op, 1, dest, target);
          } else if (b0 >= 0x70 && b0 <= 0x7f) {
            const uint8_t op[] = {0x0f, static_cast<uint8_t>(0x80 | (b0 & 0x0f))};
            ok = emit_rel32(out, op, 2, dest, target);
          } else if (b0 == 0x0f && p + 1 < in.size && in.bytes[p + 1] >= 0x80 &&
                     in.bytes[p + 1] <= 0x8f) {
            const uint8_t op[] = {0x0f, in.bytes[p + 1]};
            ok = emit_rel32(out, op, 2, dest, target);
          } else {
            ok = false;
          }
        }
      }
    } else {
      bool rip_relative = false;
      for (uint8_t k = 0; k < d->x86.op_count; ++k) {
        rip_relative |=
            d->x86.operands[k].type == X86_OP_MEM && d->x86.operands[k].mem.base == X86_REG_RIP;
      }
      if (!rip_relative) {
        ok = emit(out, in.bytes, in.size);
      } else if (d->x86.encoding.disp_offset == 0 || d->x86.encoding.disp_size != 4) {
        ok = false;
      } else {
        uint64_t target = in.address + in.size + static_cast<uint64_t>(d->x86.disp);
        uint64_t new_end = here + in.size;
        if (!rel32_reachable(new_end, target)) {
          ok = false;
        } else {
          uint8_t copy[16];
          std::memcpy(copy, in.bytes, in.size);
          int32_t disp = static_cast<int32_t>(static_cast<int64_t>(target - new_end));
          std::memcpy(copy + d->x86.encoding.disp_offset, &disp, 4);
          ok = emit(out, copy, in.size);
        }
      }
    }
    covered += in.size;
  }
  g_cs.free(insn, count);
  out->displaced = covered;
  return ok && covered >= kPatchBytes;
}

// Does any direct branch of the function land inside the bytes we displace? A cheap byte scan
// first; the exact check (linear disassembly) only when the scan finds a candidate.
bool branch_into(uint64_t entry, const uint8_t* code, size_t size, size_t displaced) {
  bool suspicious = false;
  for (size_t i = 0; i < size && !suspicious; ++i) {
    uint8_t b = code[i];
    int64_t target = -1;
    if ((b == 0xeb || (b >= 0x70 && b <= 0x7f)) && i + 1 < size) {
      target = static_cast<int64_t>(i) + 2 + static_cast<int8_t>(code[i + 1]);
    } else if ((b == 0xe9 || b == 0xe8) && i + 4 < size) {
      int32_t rel;
      std::memcpy(&rel, code + i + 1, 4);
      target = static_cast<int64_t>(i) + 5 + rel;
    } else if (b == 0x0f && i + 5 < size && code[i + 1] >= 0x80 && code[i + 1] <= 0x8f) {
      int32_t rel;
      std::memcpy(&rel, code + i + 2, 4);
      target = static_cast<int64_t>(i) + 6 + rel;
    }
    suspicious = target > 0 && target < static_cast<int64_t>(displaced);
  }
  if (!suspicious) return false;
  cs_insn* insn = nullptr;
  size_t count = g_cs.disasm(g_cs.handle, code, size, entry, 0, &insn);
  bool into = false;
  for (size_t i = 0; i < count && !into; ++i) {
    const cs_detail* d = insn[i].detail;
    bool branch = false;
    for (uint8_t g = 0; g < d->groups_count; ++g) {
      branch |= d->groups[g] == CS_GRP_JUMP || d->groups[g] == CS_GRP_CALL;
    }
    if (branch && d->x86.op_count == 1 && d->x86.operands[0].type == X86_OP_IMM) {
      uint64_t t = static_cast<uint64_t>(d->x86.operands[0].imm);
      into = t > entry && t < entry + displaced;
    }
  }
  if (count > 0) g_cs.free(insn, count);
  // A function we could not disassemble to the end is judged by what we saw; the scan's hint
  // alone is not proof.
  return into;
}

template <typename T>
void put(unsigned char* base, uint32_t off, T v) {
  std::memcpy(base + off, &v, sizeof v);
}

struct PatchPlan {
  uint32_t id;
  uint64_t entry;
  Relocated reloc;
};

bool is_reg64(unsigned r) {
  switch (r) {
    case X86_REG_RAX:
    case X86_REG_RBX:
    case X86_REG_RCX:
    case X86_REG_RDX:
    case X86_REG_RSI:
    case X86_REG_RDI:
    case X86_REG_RBP:
    case X86_REG_R8:
    case X86_REG_R9:
    case X86_REG_R10:
    case X86_REG_R11:
    case X86_REG_R12:
    case X86_REG_R13:
    case X86_REG_R14:
    case X86_REG_R15:
      return true;
    default:
      return false;
  }
}

// GCC's actor starts by dispatching on its 16-bit suspend index (`movzwl OFF(frame), reg`, then
// a test of bit 0). Follows the frame pointer from %rdi through register moves and stack spills
// (-O0) over the first instructions and returns OFF, or -1.
int32_t find_gcc_index_offset(uint64_t entry, const uint8_t* code, size_t size) {
  cs_insn* insn = nullptr;
  size_t count = g_cs.disasm(g_cs.handle, code, std::min<size_t>(size, 512), entry, 48, &insn);
  unsigned regs[16];
  size_t nregs = 0;
  regs[nregs++] = X86_REG_RDI;
  int64_t slots[16];
  size_t nslots = 0;
  auto holds = [&](unsigned r) { return std::find(regs, regs + nregs, r) != regs + nregs; };
  auto slot_holds = [&](int64_t d) {
    return std::find(slots, slots + nslots, d) != slots + nslots;
  };
  int32_t found = -1;
  for (size_t i = 0; i < count && found < 0; ++i) {
    const cs_insn& in = insn[i];
    const cs_x86& x = in.detail->x86;
    bool stop = false;
    for (uint8_t g = 0; g < in.detail->groups_count; ++g) {
      stop |= in.detail->groups[g] == CS_GRP_JUMP || in.detail->groups[g] == CS_GRP_CALL ||
              in.detail->groups[g] == CS_GRP_RET;
    }
    if (stop) break;
    if (x.op_count != 2) continue;
    const cs_x86_op& src = x.operands[1];
    const cs_x86_op& dst = x.operands[0];
    if (in.id == X86_INS_MOVZX && src.type == X86_OP_MEM && src.size == 2 &&
        src.mem.index == X86_REG_INVALID && holds(src.mem.base) && src.mem.disp >= 0 &&
        src.mem.disp < 65536) {
      found = static_cast<int32_t>(src.mem.disp);
      break;
    }
    if (in.id != X86_INS_MOV) {
      // Anything else writing a register that held the frame may have replaced it.
      if (dst.type == X86_OP_REG && holds(dst.reg))
        *std::find(regs, regs + nregs, dst.reg) = X86_REG_INVALID;
      continue;
    }
    if (dst.type == X86_OP_REG && src.type == X86_OP_REG && is_reg64(dst.reg)) {
      if (holds(src.reg)) {
        if (!holds(dst.reg) && nregs < 16) regs[nregs++] = dst.reg;
      } else if (holds(dst.reg)) {
        *std::find(regs, regs + nregs, dst.reg) = X86_REG_INVALID;
      }
    } else if (dst.type == X86_OP_MEM && src.type == X86_OP_REG && holds(src.reg) &&
               (dst.mem.base == X86_REG_RBP || dst.mem.base == X86_REG_RSP) && nslots < 16) {
      slots[nslots++] = dst.mem.disp;
    } else if (dst.type == X86_OP_REG && src.type == X86_OP_MEM && is_reg64(dst.reg) &&
               (src.mem.base == X86_REG_RBP || src.mem.base == X86_REG_RSP) &&
               slot_holds(src.mem.disp)) {
      if (!holds(dst.reg) && nregs < 16) regs[nregs++] = dst.reg;
    } else if (dst.type == X86_OP_REG && holds(dst.reg)) {
      *std::find(regs, regs + nregs, dst.reg) = X86_REG_INVALID;
    }
  }
  if (count > 0) g_cs.free(insn, count);
  return found;
}

// The module's resume functions, by address, each once.
std::vector<ResumeSymbol> resume_functions_of(const ModuleRecord& m) {
  std::vector<ResumeSymbol> syms = scan_resume_functions(m.path, config().debug_dirs);
  std::sort(syms.begin(), syms.end(),
            [](const ResumeSymbol& a, const ResumeSymbol& b) { return a.vaddr < b.vaddr; });
  syms.erase(
      std::unique(syms.begin(), syms.end(),
                  [](const ResumeSymbol& a, const ResumeSymbol& b) { return a.vaddr == b.vaddr; }),
      syms.end());
  return syms;
}

// Writes the trampoline of `f` (its template, counters, then the relocated entry instructions
// and a jump back) into `slot`. False when the entry cannot be moved safely: `f` stays unpatched.
bool build_trampoline(const TracedFunction& f, const uint8_t* code, uint64_t size,
                      unsigned char* slot, PatchPlan* plan) {
  const uint32_t* L = f.gcc ? asyncprobe_tramp_layout_gcc : asyncprobe_tramp_layout_clang;
  const unsigned char* tmpl = f.gcc ? asyncprobe_tramp_gcc : asyncprobe_tramp_clang;
  const size_t tsize = L[kSize];
  const uint64_t entry = f.resume;
  const uint64_t slot_addr = reinterpret_cast<uint64_t>(slot);
  if (!relocate_entry(entry, code, size, slot_addr + tsize, &plan->reloc) ||
      branch_into(entry, code, size, plan->reloc.displaced) ||
      !emit_rel32(&plan->reloc, reinterpret_cast<const uint8_t*>("\xe9"), 1, slot_addr + tsize,
                  entry + plan->reloc.displaced) ||
      tsize + plan->reloc.size > kTrampolineSlot ||
      !rel32_reachable(entry + kPatchBytes, slot_addr)) {
    return false;
  }
  uint64_t counters = kCountersOffset + uint64_t{f.id} * kCounterStride;
  std::memcpy(slot, tmpl, tsize);
  put<uint64_t>(slot, L[kFlags], reinterpret_cast<uint64_t>(&g_flags));
  put<int32_t>(slot, L[kTls], static_cast<int32_t>(g_tls_offset));
  put<int32_t>(slot, L[kCntResume], static_cast<int32_t>(counters));
  if (f.gcc) {
    put<int32_t>(slot, L[kCntStart], static_cast<int32_t>(counters + 8));
    put<int32_t>(slot, L[kCntDispatch], static_cast<int32_t>(counters + 16));
    put<int32_t>(slot, L[kIdx], f.index_offset);
  }
  put<uint32_t>(slot, L[kId1], f.id);
  put<uint64_t>(slot, L[kStub], reinterpret_cast<uint64_t>(&asyncprobe_trace_slow_stub));
  put<uint32_t>(slot, L[kId2], f.id);
  std::memcpy(slot + tsize, plan->reloc.bytes, plan->reloc.size);
  return true;
}

// Points each planned entry at its trampoline (slot i of `region`) with a 5-byte jump.
void install_jumps(unsigned char* region, const std::vector<PatchPlan>& plans) {
  for (size_t i = 0; i < plans.size(); ++i) {
    const PatchPlan& p = plans[i];
    uint64_t slot_addr = reinterpret_cast<uint64_t>(region + i * kTrampolineSlot);
    unsigned char jmp[kPatchBytes] = {0xe9};
    int32_t rel = static_cast<int32_t>(static_cast<int64_t>(slot_addr - (p.entry + kPatchBytes)));
    std::memcpy(jmp + 1, &rel, 4);
    if (write_code(p.entry, jmp, kPatchBytes)) {
      g_functions[p.id].traced = true;
      g_patched.fetch_add(1);
    } else {
      g_unpatched.fetch_add(1);
    }
  }
}

void patch_module(const ModuleRecord& m) {
  if (m.is_self || m.is_vdso || m.path[0] != '/') return;
  std::vector<ResumeSymbol> syms = resume_functions_of(m);
  if (syms.empty()) return;
  size_t region_bytes = syms.size() * kTrampolineSlot;
  auto* region = static_cast<unsigned char*>(map_near(m.lo, m.hi, region_bytes));
  std::vector<PatchPlan> plans;
  for (const auto& s : syms) {
    uint64_t entry = s.vaddr + m.bias;
    uint32_t id = g_function_count.load(std::memory_order_relaxed);
    if (id >= kMaxTracedFunctions) {
      g_unpatched.fetch_add(1);
      continue;
    }
    TracedFunction& f = g_functions[id];
    f.id = id;
    f.module_id = m.id;
    f.resume = entry;
    f.traced = false;
    f.gcc = s.gcc;
    f.index_offset = -1;
    bool in_code = m.contains_code(entry) && m.contains_code(entry + s.size - 1);
    const auto* code = reinterpret_cast<const uint8_t*>(entry);
    if (in_code && f.gcc) f.index_offset = find_gcc_index_offset(entry, code, s.size);
    g_function_count.store(id + 1, std::memory_order_release);
    // A GCC actor whose index we cannot read would count starts and destroys as resumes: leave
    // it unpatched rather than report wrong counts.
    if (region == nullptr || !in_code || (f.gcc && f.index_offset < 0)) {
      g_unpatched.fetch_add(1);
      continue;
    }
    PatchPlan plan{id, entry, {}};
    if (!build_trampoline(f, code, s.size, region + plans.size() * kTrampolineSlot, &plan)) {
      g_unpatched.fetch_add(1);
      continue;
    }
    plans.push_back(plan);
  }
  if (region == nullptr) return;
  if (plans.empty() || !seal_code(region, region_bytes)) {
    munmap(region, (region_bytes + 4095) & ~size_t{4095});
    g_unpatched.fetch_add(static_cast<uint32_t>(plans.size()));
    return;
  }
  install_jumps(region, plans);
}

bool load_capstone(const char** why) {
  void* lib = dlopen("libcapstone.so.4", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) lib = dlopen("libcapstone.so", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    *why = "libcapstone.so.4 not found (install libcapstone4)";
    return false;
  }
  g_cs.open = reinterpret_cast<decltype(g_cs.open)>(dlsym(lib, "cs_open"));
  g_cs.option = reinterpret_cast<decltype(g_cs.option)>(dlsym(lib, "cs_option"));
  g_cs.disasm = reinterpret_cast<decltype(g_cs.disasm)>(dlsym(lib, "cs_disasm"));
  g_cs.free = reinterpret_cast<decltype(g_cs.free)>(dlsym(lib, "cs_free"));
  g_cs.close = reinterpret_cast<decltype(g_cs.close)>(dlsym(lib, "cs_close"));
  if (g_cs.open == nullptr || g_cs.option == nullptr || g_cs.disasm == nullptr ||
      g_cs.free == nullptr || g_cs.open(CS_ARCH_X86, CS_MODE_64, &g_cs.handle) != CS_ERR_OK) {
    *why = "libcapstone could not be initialised";
    return false;
  }
  g_cs.option(g_cs.handle, CS_OPT_DETAIL, CS_OPT_ON);
  g_cs.ok = true;
  return true;
}

}  // namespace

bool tracer_init(const char** why) {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(1, &a, &b, &c, &d) == 0 || (c & bit_OSXSAVE) == 0) {
    *why = "the CPU or kernel does not support XSAVE";
    return false;
  }
  if (!load_capstone(why)) return false;
  uint64_t tp;
  asm("movq %%fs:0, %0" : "=r"(tp));
  g_tls_offset = static_cast<int64_t>(reinterpret_cast<uint64_t>(&t_buffer) - tp);
  if (g_tls_offset < INT32_MIN || g_tls_offset > INT32_MAX) {
    *why = "thread-local storage out of reach";
    return false;
  }
  if (pthread_key_create(&g_exit_key, on_thread_exit) != 0) {
    *why = "no pthread key left";
    return false;
  }
  g_folded = static_cast<uint64_t*>(mmap(nullptr, kMaxTracedFunctions * kCounterStride,
                                         PROT_READ | PROT_WRITE,
                                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  if (g_folded == MAP_FAILED) {
    g_folded = nullptr;
    *why = "out of memory";
    return false;
  }
  g_ready = true;
  return true;
}

void tracer_patch_new_modules(size_t first_module) {
  if (!g_ready) return;
  std::lock_guard<std::mutex> lock(g_patch_mu);
  size_t n = Modules::count();
  for (size_t i = first_module; i < n; ++i) {
    const ModuleRecord* m = Modules::at(i);
    if (!m->unloaded.load()) patch_module(*m);
  }
}

size_t tracer_function_count() { return g_function_count.load(std::memory_order_acquire); }
const TracedFunction& tracer_function(size_t id) { return g_functions[id]; }
uint32_t tracer_patched_count() { return g_patched.load(); }
uint32_t tracer_unpatched_count() { return g_unpatched.load(); }

void tracer_set_flags(uint8_t flags) { __atomic_store_n(&g_flags, flags, __ATOMIC_RELEASE); }
uint8_t tracer_flags() { return __atomic_load_n(&g_flags, __ATOMIC_ACQUIRE); }

void tracer_sum_counts(std::vector<EntryCounts>* counts) {
  uint32_t n = g_function_count.load(std::memory_order_acquire);
  counts->assign(n, EntryCounts{});
  auto add = [&](const uint64_t* c) {
    for (uint32_t i = 0; i < n; ++i) {
      (*counts)[i].resumes += __atomic_load_n(&c[i * 4 + 0], __ATOMIC_RELAXED);
      (*counts)[i].starts += __atomic_load_n(&c[i * 4 + 1], __ATOMIC_RELAXED);
      (*counts)[i].dispatches += __atomic_load_n(&c[i * 4 + 2], __ATOMIC_RELAXED);
    }
  };
  std::lock_guard<std::mutex> lock(g_fold_mu);
  if (g_folded != nullptr) add(g_folded);
  for (ThreadBuffer* b = g_buffers.load(std::memory_order_acquire); b != nullptr; b = b->next)
    add(b->counters());
}

void tracer_thread_totals(std::vector<std::pair<int, uint64_t>>* out) {
  out->clear();
  uint32_t n = g_function_count.load(std::memory_order_acquire);
  std::lock_guard<std::mutex> lock(g_fold_mu);
  *out = g_folded_threads;
  for (ThreadBuffer* b = g_buffers.load(std::memory_order_acquire); b != nullptr; b = b->next) {
    const uint64_t* c = b->counters();
    uint64_t total = 0;
    for (uint32_t i = 0; i < n; ++i) total += __atomic_load_n(&c[size_t{i} * 4], __ATOMIC_RELAXED);
    if (total != 0) out->emplace_back(b->tid, total);
  }
}

void tracer_drain(std::vector<preload_proto::ResumeEvent>* out, uint64_t* lost, uint64_t now_ns) {
  for (ThreadBuffer* b = g_buffers.load(std::memory_order_acquire); b != nullptr; b = b->next) {
    uint64_t head = __atomic_load_n(&b->head, __ATOMIC_ACQUIRE);
    uint64_t tail = b->tail;
    uint64_t n = head - tail;
    uint64_t start = b->last_drain_ns;
    for (uint64_t i = tail; i != head; ++i) {
      const Event& e = b->events()[i & b->mask];
      preload_proto::ResumeEvent r{};
      r.frame = e.frame;
      r.function = e.id;
      r.kind = e.kind;
      r.tid = static_cast<uint32_t>(b->tid);
      r.time_ns = start + (now_ns - start) * (i - tail + 1) / n;
      out->push_back(r);
    }
    __atomic_store_n(&b->tail, head, __ATOMIC_RELEASE);
    b->last_drain_ns = now_ns;
    uint64_t l = __atomic_load_n(&b->lost, __ATOMIC_RELAXED);
    *lost += l - b->lost_reported;
    b->lost_reported = l;
  }
  *lost += g_slow_lost.exchange(0);
}

bool install_dl_hook() {
  uint64_t target = _r_debug.r_brk;
  if (target == 0) return false;
  const auto* p = reinterpret_cast<const uint8_t*>(target);
  size_t body = 0;
  if (p[0] == 0xc3) {
    body = 1;
  } else if (p[0] == 0xf3 && p[1] == 0x0f && p[2] == 0x1e && p[3] == 0xfa && p[4] == 0xc3) {
    body = 5;
  } else {
    return false;
  }
  // The bytes we overwrite past the `ret` must be alignment padding up to the next function.
  uint64_t next_aligned = (target + body + 15) & ~uint64_t{15};
  if (next_aligned < target + kPatchBytes) return false;
  for (uint64_t a = target + body; a < next_aligned; ++a) {
    uint8_t b = *reinterpret_cast<const uint8_t*>(a);
    if (b != 0x90 && b != 0xcc && b != 0x66 && b != 0x2e && b != 0x0f && b != 0x1f && b != 0x84 &&
        b != 0x00 && b != 0x40 && b != 0x44 && b != 0x80) {
      return false;
    }
  }
  const ModuleRecord* ld = Modules::by_code(target);
  uint64_t lo = ld != nullptr ? ld->lo : target, hi = ld != nullptr ? ld->hi : target + 1;
  auto* stub = static_cast<unsigned char*>(map_near(lo, hi, 4096));
  if (stub == nullptr) return false;
  // jmp *0(%rip); .quad asyncprobe_dl_hook: no register touched.
  const unsigned char jmp_abs[6] = {0xff, 0x25, 0, 0, 0, 0};
  std::memcpy(stub, jmp_abs, 6);
  uint64_t hook = reinterpret_cast<uint64_t>(&asyncprobe_dl_hook);
  std::memcpy(stub + 6, &hook, 8);
  if (!seal_code(stub, 4096)) return false;
  unsigned char jmp[kPatchBytes] = {0xe9};
  uint64_t stub_addr = reinterpret_cast<uint64_t>(stub);
  if (!rel32_reachable(target + kPatchBytes, stub_addr)) return false;
  int32_t rel = static_cast<int32_t>(static_cast<int64_t>(stub_addr - (target + kPatchBytes)));
  std::memcpy(jmp + 1, &rel, 4);
  // Signals must not run loader code while its page is not executable.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  bool ok = write_code(target, jmp, kPatchBytes);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return ok;
}

}  // namespace asyncprobe::preload

using namespace asyncprobe::preload;

extern "C" void asyncprobe_trace_slow(uint64_t frame, uint32_t id) {
  uint8_t flags = g_flags;
  if (flags == 0) return;
  if (t_buffer == nullptr) {
    if (t_in_slow) {
      g_slow_lost.fetch_add(1);
      return;
    }
    t_in_slow = true;
    ThreadBuffer* b = acquire_buffer();
    if (b != nullptr) pthread_setspecific(g_exit_key, b);
    t_buffer = b;
    t_in_slow = false;
    if (b == nullptr) {
      g_slow_lost.fetch_add(1);
      return;
    }
  }
  ThreadBuffer* b = t_buffer;
  if (id >= kMaxTracedFunctions) return;
  uint32_t kind = 0;
  const TracedFunction& f = g_functions[id];
  if (f.gcc && f.index_offset >= 0) {
    uint16_t index =
        *reinterpret_cast<const uint16_t*>(frame + static_cast<uint64_t>(f.index_offset));
    if ((index & 1) != 0) {
      b->counters()[id * 4 + 2]++;
      return;
    }
    if (index == 0) kind = 1;
  }
  b->counters()[id * 4 + kind]++;
  if ((flags & kTraceEvents) == 0) return;
  uint64_t head = b->head;
  if (head - __atomic_load_n(&b->tail, __ATOMIC_ACQUIRE) >= b->capacity) {
    b->lost++;
    return;
  }
  Event& e = b->events()[head & b->mask];
  e.frame = frame;
  e.id = id;
  e.kind = kind;
  __atomic_store_n(&b->head, head + 1, __ATOMIC_RELEASE);
}

extern "C" void asyncprobe_dl_activity() {
  if (_r_debug.r_state == r_debug::RT_CONSISTENT) on_modules_changed();
}
