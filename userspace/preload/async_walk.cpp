#include "userspace/preload/async_walk.h"

namespace asyncprobe::preload {

namespace pt = preload_table;

namespace {

bool try_candidate(uint64_t value, const Modules::CoroRef& ref, RunningCoroutine* out, size_t i) {
  if (!frame_matches(value, ref)) return false;
  out->frame = value;
  out->ref = ref;
  out->stack_index = i;
  return true;
}

// A frame address `addr` of any known coroutine, suspended (resume pointer set): the header
// check every awaiter edge must pass.
bool suspended_frame_at(uint64_t addr, Modules::CoroRef* ref) {
  if (addr == 0 || (addr & 7) != 0) return false;
  uint64_t words[coro::kHeaderBytes / 8];
  if (!safe_read(addr, words, sizeof words)) return false;
  if (!Modules::coroutine_by_destroy(words[coro::kDestroyOffset / 8], ref)) return false;
  return words[coro::kResumeOffset / 8] == ref->resume_abs();
}

}  // namespace

bool find_running_coroutine(const StackFrame* frames, size_t n, size_t from,
                            RunningCoroutine* out) {
  for (size_t i = from; i < n; ++i) {
    const StackFrame& f = frames[i];
    uint64_t lookup = f.pc_exact ? f.pc : f.pc - 1;
    Modules::CoroRef ref;
    if (!Modules::coroutine_at_pc(lookup, &ref)) continue;
    // Compilers keep the frame pointer in a callee-saved register (optimised code) or spill it
    // to the activation's stack frame (-O0): registers first, then the slots from the top. A
    // landing pad may have reused that register (GCC's unhandled-exception path); the caller
    // that resumed the coroutine still holds the handle, so its activation is searched next.
    static constexpr int kCalleeSaved[] = {kRbx, kRbp, kR12, kR13, kR14, kR15};
    for (size_t k = i; k < n && k <= i + 2; ++k) {
      const StackFrame& g = frames[k];
      for (int r : kCalleeSaved) {
        if (g.regs.has(r) && try_candidate(g.regs.get(r), ref, out, i)) return true;
      }
      if (g.pc_exact) {
        for (int r = 0; r < kRegCount; ++r) {
          if (r != kRip && g.regs.has(r) && try_candidate(g.regs.get(r), ref, out, i)) return true;
        }
      }
      uint64_t hi = g.cfa != 0 ? g.cfa : g.sp + 512;
      if (g.sp != 0 && hi > g.sp && hi - g.sp <= (64u << 10)) {
        for (uint64_t slot = (hi - 8) & ~uint64_t{7}; slot >= g.sp; slot -= 8) {
          uint64_t v;
          if (safe_load(slot, &v) && try_candidate(v, ref, out, i)) return true;
          if (slot < 8) break;
        }
      }
    }
  }
  return false;
}

namespace {

AwaitLink make_link(uint64_t frame, const Modules::CoroRef& ref, coro::AwaiterRule rule) {
  AwaitLink link;
  link.frame = frame;
  link.ref = ref;
  link.rule = rule;
  link.index = read_suspend_index(frame, ref);
  link.point = link.index >= 0 ? ref.view.point(*ref.coro, link.index) : nullptr;
  return link;
}

// The awaiter of `last` by the library rules (coro/awaiter_rules.h); false when none. Live means
// suspended here: the walk starts at the running coroutine, and all its awaiters are suspended.
bool next_awaiter(const AwaitLink& last, AwaitLink* next) {
  uint64_t promise[coro::kPromiseWords];
  if (!safe_read(last.frame + last.ref.coro->promise_offset, promise, sizeof promise)) return false;
  auto find_live = [](uint64_t addr, uint64_t* promise_offset) {
    Modules::CoroRef ref;
    if (!suspended_frame_at(addr, &ref)) return false;
    *promise_offset = ref.coro->promise_offset;
    return true;
  };
  coro::AwaiterEdge edge = coro::awaiter_from_promise(last.frame, promise, find_live);
  Modules::CoroRef ref;
  if (edge.frame == 0 || !suspended_frame_at(edge.frame, &ref)) return false;
  *next = make_link(edge.frame, ref, edge.rule);
  return true;
}

}  // namespace

size_t walk_awaiters(const RunningCoroutine& start, AwaitLink* out, size_t max) {
  if (max == 0) return 0;
  size_t n = 0;
  out[n++] = make_link(start.frame, start.ref, coro::AwaiterRule::kRunning);
  while (n < max) {
    AwaitLink next;
    if (!next_awaiter(out[n - 1], &next)) break;
    bool seen = false;
    for (size_t k = 0; k < n; ++k) seen |= out[k].frame == next.frame;
    if (seen) break;
    out[n++] = next;
  }
  return n;
}

const char* base_name(const char* path) {
  const char* b = path;
  for (const char* p = path; *p != '\0'; ++p) {
    if (*p == '/') b = p + 1;
  }
  return b;
}

PcInfo describe_pc(uint64_t pc, bool exact) {
  PcInfo info;
  uint64_t lookup = exact ? pc : pc - 1;
  const ModuleRecord* m = Modules::by_code(lookup);
  if (m == nullptr) return info;
  info.module = m;
  TableView v = m->view();
  if (!v.valid()) return info;
  uint64_t rel = lookup - m->bias;
  if (const pt::CoroRecord* c = v.coroutine_at(rel)) {
    info.function = v.str(c->name);
    info.coroutine = true;
    info.function_offset = pc - m->bias - c->resume;
    if (rel >= c->cold && c->cold != 0 && rel < c->cold + c->cold_size)
      info.function_offset = pc - m->bias - c->cold;
  } else if (const pt::SymbolRecord* s = v.symbol_at(rel)) {
    info.function = v.str(s->name);
    info.function_offset = pc - m->bias - s->start;
  }
  if (const pt::LineRecord* l = v.line_at(rel)) {
    info.file = v.str(l->file);
    info.line = l->line;
  }
  return info;
}

void append_pc(Text& t, uint64_t pc, bool exact) {
  PcInfo info = describe_pc(pc, exact);
  if (info.function != nullptr) {
    t.str(info.function);
    if (info.coroutine) t.str(" [coroutine]");
  } else {
    t.str("??");
  }
  if (info.line != 0) t.str(" at ").str(info.file).ch(':').udec(info.line);
  if (info.module != nullptr) {
    t.str(" (").str(base_name(info.module->path)).ch('+').hex(pc - info.module->bias).ch(')');
  }
}

void append_coroutine_name(Text& t, const Modules::CoroRef& ref) {
  const char* name = ref.view.str(ref.coro->name);
  if (name[0] != '\0') {
    t.str(name);
  } else {
    t.str("coroutine ").str(base_name(ref.module->path)).ch('+').hex(ref.coro->resume);
  }
}

void append_await_link(Text& t, const AwaitLink& link, bool running, uint64_t running_pc) {
  append_coroutine_name(t, link.ref);
  if (running) {
    t.str(" running");
    PcInfo info = describe_pc(running_pc, false);
    if (info.line != 0) t.str(" at ").str(info.file).ch(':').udec(info.line);
  } else if (link.point != nullptr && link.point->line != 0) {
    t.str(link.point->kind == pt::kInitial ? " not started, at " : " awaiting at ");
    t.str(link.ref.view.str(link.point->file)).ch(':').udec(link.point->line);
  } else {
    t.str(" awaiting (suspend point ");
    if (link.index >= 0) {
      t.dec(link.index).str(": line unknown)");
    } else {
      t.str("unknown)");
    }
  }
  t.str(" [frame ").hex(link.frame).ch(']');
}

}  // namespace asyncprobe::preload
