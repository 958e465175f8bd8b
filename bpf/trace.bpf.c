// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* asyncprobe trace: coroutine resumes, blocking syscalls inside coroutines and event-loop stalls
 * of one process. Userspace (userspace/kernel/trace_session.cpp) attaches:
 *   trace_resume   uprobe at the entry of every coroutine resume function (GCC .actor, Clang
 *                  .resume), bpf_cookie = function id; the frame is the first argument
 *   trace_destroy  uprobe at the entry of every destroy / cleanup function
 *                  (both also as *_multi, for uprobe_multi links: one link per file)
 *   trace_sys_enter / trace_sys_exit   raw tracepoints sys_enter / sys_exit (every syscall of
 *                  the target; the syscall_class map picks the ones we time)
 *   trace_sched_switch   raw tracepoint sched_switch (off-CPU time inside runs, run ends)
 *   trace_thread_exit    raw tracepoint sched_process_exit
 * No uretprobes: symmetric transfer tail-calls from one resume function into the next, so
 * return probes would fire chained and late. Instead a run's end is found by comparing stack
 * pointers and return addresses (docs/TRACE.md, "When a run ends"): a run whose resume function
 * was entered with stack pointer S is over as soon as the thread is seen with a stack pointer
 * above S, or the return address at S has been overwritten. */
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "dwarf_regs.h"
#include "trace.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by userspace before loading. */
const volatile __u32 target_tgid = 0;
const volatile __u64 block_threshold_ns = 10000000;
const volatile __u64 stall_threshold_ns = 10000000;
/* Wake the consumer only once this much is waiting: it polls every 100 ms anyway, and a wakeup
 * per event would cost the target more than the event itself. */
const volatile __u64 wakeup_bytes = 1 << 20;

const struct trace_thread zero_thread = {};

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 16 << 20); /* resized by userspace */
} events SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1); /* resized by userspace to the number of functions */
  __type(key, __u32);
  __type(value, struct trace_fn);
} fns SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 8192);
  __type(key, __u32);
  __type(value, struct trace_thread);
} threads SEC(".maps");

#define TRACE_SYSCALL_SLOTS 512
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, TRACE_SYSCALL_SLOTS);
  __type(key, __u32);
  __type(value, __u32);
} syscall_class SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, TRACE_CTR_COUNT);
  __type(key, __u32);
  __type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 idx) {
  __u64* v = bpf_map_lookup_elem(&counters, &idx);
  if (v) __sync_fetch_and_add(v, 1);
}

/* Reserves an event; a full ring buffer is counted, never silent. */
static __always_inline void* reserve(__u64 size, __u32 lost_counter) {
  void* e = bpf_ringbuf_reserve(&events, size, 0);
  if (!e) {
    count(TRACE_CTR_LOST);
    if (lost_counter) count(lost_counter);
  }
  return e;
}

static __always_inline void submit(void* e) {
  __u64 flags = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP
                                                                              : BPF_RB_NO_WAKEUP;
  bpf_ringbuf_submit(e, flags);
  count(TRACE_CTR_EMITTED);
}

static __always_inline struct trace_thread* thread_state(__u32 tid, bool create) {
  struct trace_thread* st = bpf_map_lookup_elem(&threads, &tid);
  if (st || !create) return st;
  bpf_map_update_elem(&threads, &tid, &zero_thread, BPF_NOEXIST);
  st = bpf_map_lookup_elem(&threads, &tid);
  if (!st) count(TRACE_CTR_NO_THREAD_STATE);
  return st;
}

/* A run is over once its resume function has returned: the thread's stack pointer is above the
 * function's return address slot, or that slot no longer holds the return address it held at
 * entry (the caller has since called something else at the same depth, e.g. epoll_wait).
 * While the function (or anything it calls) runs, the slot keeps its return address. */
static __always_inline bool run_over(const struct trace_run* r, __u64 sp) {
  if (r->entry_sp < sp) return true;
  __u64 word = 0;
  if (bpf_probe_read_user(&word, sizeof(word), (void*)r->entry_sp) != 0) return false;
  return word != r->ret_addr;
}

/* Pops the runs that are over, innermost first. */
static __always_inline __u32 pop_finished(struct trace_thread* st, __u64 sp) {
  __u32 popped = 0;
  for (int i = 0; i < TRACE_MAX_DEPTH; i++) {
    __u32 d = st->depth;
    if (d == 0 || d > TRACE_MAX_DEPTH) break;
    if (!run_over(&st->runs[(d - 1) & (TRACE_MAX_DEPTH - 1)], sp)) break;
    st->depth = d - 1;
    popped++;
  }
  return popped;
}

static __always_inline void emit_run_end(__u32 tid, __u64 now, __u32 popped, __s32 cause,
                                         __u64 sp) {
  struct trace_run_end_event* e = reserve(sizeof(*e), 0);
  if (!e) return;
  e->h.kind = TRACE_EV_RUN_END;
  e->h.tid = tid;
  e->h.ts = now;
  e->popped = popped;
  e->cause = cause;
  e->sp = sp;
  submit(e);
}

static __always_inline __s64 read_index(const struct trace_fn* fi, __u64 frame, __u8* ok) {
  __u64 addr = frame + fi->index_offset;
  *ok = 0;
  switch (fi->index_width) {
    case 1: {
      __u8 v;
      if (bpf_probe_read_user(&v, sizeof(v), (void*)addr) == 0) {
        *ok = 1;
        return v;
      }
      break;
    }
    case 2: {
      __u16 v;
      if (bpf_probe_read_user(&v, sizeof(v), (void*)addr) == 0) {
        *ok = 1;
        return v;
      }
      break;
    }
    case 4: {
      __u32 v;
      if (bpf_probe_read_user(&v, sizeof(v), (void*)addr) == 0) {
        *ok = 1;
        return v;
      }
      break;
    }
    case 8: {
      __s64 v;
      if (bpf_probe_read_user(&v, sizeof(v), (void*)addr) == 0) {
        *ok = 1;
        return v;
      }
      break;
    }
    default:
      return -1;
  }
  count(TRACE_CTR_INDEX_FAIL);
  return -1;
}

static __always_inline int on_resume(struct pt_regs* ctx) {
  __u64 now = bpf_ktime_get_ns();
  __u32 tid = (__u32)bpf_get_current_pid_tgid();
  __u32 fn = (__u32)bpf_get_attach_cookie(ctx);
  __u64 frame = PT_REGS_PARM1(ctx);
  __u64 sp = PT_REGS_SP(ctx);
  count(TRACE_CTR_RESUME_HITS);

  __s64 index = -1;
  __u8 index_ok = 0;
  __u8 what = TRACE_RESUME_RESUME;
  struct trace_fn* fi = bpf_map_lookup_elem(&fns, &fn);
  if (fi) {
    if (fi->index_width) index = read_index(fi, frame, &index_ok);
    if ((fi->flags & TRACE_FN_GCC) && index_ok) {
      if (index == 0)
        what = TRACE_RESUME_START;
      else if (index & 1)
        what = TRACE_RESUME_DISPATCH;
    }
  }

  struct trace_thread* st = thread_state(tid, what != TRACE_RESUME_DISPATCH);
  if (!st) return 0;
  __u32 popped = pop_finished(st, sp);
  if (what == TRACE_RESUME_DISPATCH) {
    /* GCC's .destroy jumps into the actor with an odd index: not a run. */
    if (popped) emit_run_end(tid, now, popped, TRACE_CAUSE_CALL, sp);
    return 0;
  }

  __u8 mode = TRACE_RESUME_PUSH;
  __u32 d = st->depth;
  if (d > TRACE_MAX_DEPTH) d = TRACE_MAX_DEPTH;
  if (d > 0 && st->runs[(d - 1) & (TRACE_MAX_DEPTH - 1)].entry_sp == sp) {
    mode = TRACE_RESUME_REPLACE;
  } else if (d >= TRACE_MAX_DEPTH) {
    mode = TRACE_RESUME_REPLACE;
    count(TRACE_CTR_DEPTH_FOLD);
  } else {
    d = d + 1;
    st->depth = d;
  }
  if (d > 0) {
    struct trace_run* top = &st->runs[(d - 1) & (TRACE_MAX_DEPTH - 1)];
    top->frame = frame;
    top->entry_sp = sp;
    top->fn = fn;
    top->ret_addr = 0;
    bpf_probe_read_user(&top->ret_addr, sizeof(top->ret_addr), (void*)sp);
  }
  st->ran_since_wait = 1;

  struct trace_resume_event* e = reserve(sizeof(*e), TRACE_CTR_LOST_RESUME);
  if (!e) return 0;
  e->h.kind = TRACE_EV_RESUME;
  e->h.tid = tid;
  e->h.ts = now;
  e->fn = fn;
  e->popped = popped > 255 ? 255 : popped;
  e->mode = mode;
  e->what = what;
  e->index_ok = index_ok;
  e->frame = frame;
  e->index = index;
  e->sp = sp;
  if (!fi ||
      bpf_probe_read_user(e->promise, sizeof(e->promise), (void*)(frame + fi->promise_offset)) != 0)
    __builtin_memset(e->promise, 0, sizeof(e->promise));
  submit(e);
  return 0;
}

static __always_inline int on_destroy(struct pt_regs* ctx) {
  __u64 now = bpf_ktime_get_ns();
  __u32 tid = (__u32)bpf_get_current_pid_tgid();
  __u64 cookie = bpf_get_attach_cookie(ctx);
  __u64 sp = PT_REGS_SP(ctx);
  count(TRACE_CTR_DESTROY_HITS);

  __u32 popped = 0;
  struct trace_thread* st = thread_state(tid, false);
  if (st) popped = pop_finished(st, sp);

  struct trace_destroy_event* e = reserve(sizeof(*e), 0);
  if (!e) return 0;
  e->h.kind = TRACE_EV_DESTROY;
  e->h.tid = tid;
  e->h.ts = now;
  e->fn = (__u32)cookie;
  e->role = (__u8)(cookie >> 32);
  e->popped = popped > 255 ? 255 : popped;
  e->pad = 0;
  e->frame = PT_REGS_PARM1(ctx);
  e->sp = sp;
  submit(e);
  return 0;
}

/* Each uprobe program comes twice: for one uprobe_multi link per file (the kernel's
 * BPF_TRACE_UPROBE_MULTI, loaded with that expected attach type), and for one perf-event link per
 * function where uprobe_multi is not available. Userspace loads one pair. */
SEC("uprobe")
int trace_resume(struct pt_regs* ctx) { return on_resume(ctx); }

SEC("uprobe")
int trace_resume_multi(struct pt_regs* ctx) { return on_resume(ctx); }

SEC("uprobe")
int trace_destroy(struct pt_regs* ctx) { return on_destroy(ctx); }

SEC("uprobe")
int trace_destroy_multi(struct pt_regs* ctx) { return on_destroy(ctx); }

/* FUTEX_WAIT, FUTEX_LOCK_PI, FUTEX_WAIT_BITSET, FUTEX_WAIT_REQUEUE_PI, FUTEX_LOCK_PI2 */
static __always_inline bool futex_waits(__u64 op) {
  __u64 cmd = op & 127; /* without FUTEX_PRIVATE_FLAG and FUTEX_CLOCK_REALTIME */
  return cmd == 0 || cmd == 6 || cmd == 9 || cmd == 11 || cmd == 13;
}

SEC("raw_tp/sys_enter")
int BPF_PROG(trace_sys_enter, struct pt_regs* regs, long id) {
  __u64 pid_tgid = bpf_get_current_pid_tgid();
  if ((__u32)(pid_tgid >> 32) != target_tgid) return 0;
  count(TRACE_CTR_SYS_ALL_HITS);
  __u32 nr = (__u32)id;
  if (nr >= TRACE_SYSCALL_SLOTS) return 0;
  __u32* cls = bpf_map_lookup_elem(&syscall_class, &nr);
  if (!cls || *cls == 0) return 0;
  count(TRACE_CTR_SYS_ENTER_HITS);
  bool wait =
      *cls == TRACE_SYS_WAIT || (*cls == TRACE_SYS_FUTEX && futex_waits(BPF_CORE_READ(regs, si)));
  __u32 tid = (__u32)pid_tgid;
  /* Threads that never ran a coroutine need state only to time their waits. */
  struct trace_thread* st = thread_state(tid, wait);
  if (!st) return 0;
  __u64 now = bpf_ktime_get_ns();
  __u64 sp = BPF_CORE_READ(regs, sp);
  __u32 popped = pop_finished(st, sp);
  if (popped) emit_run_end(tid, now, popped, (__s32)nr, sp);

  st->sys_nr = nr;
  st->sys_enter_ts = now;
  __u32 d = st->depth;
  if (d > 0 && d <= TRACE_MAX_DEPTH) {
    struct trace_run* top = &st->runs[(d - 1) & (TRACE_MAX_DEPTH - 1)];
    st->sys_in_coro = 1;
    st->sys_is_wait = 0;
    st->sys_frame = top->frame;
    st->sys_fn = top->fn;
    st->sys_run_sp = top->entry_sp;
    count(TRACE_CTR_IN_CORO_SYSCALLS);
    return 0;
  }
  st->sys_in_coro = 0;
  st->sys_is_wait = wait;
  if (wait) {
    if (st->ran_since_wait && st->wait_exit_ts != 0 &&
        now - st->wait_exit_ts >= stall_threshold_ns) {
      struct trace_stall_event* e = reserve(sizeof(*e), 0);
      if (e) {
        e->h.kind = TRACE_EV_STALL;
        e->h.tid = tid;
        e->h.ts = now;
        e->start_ts = st->wait_exit_ts;
        e->nr = nr;
        e->pad = 0;
        submit(e);
      }
    }
    st->ran_since_wait = 0;
    st->wait_exit_ts = 0;
  }
  return 0;
}

SEC("raw_tp/sys_exit")
int BPF_PROG(trace_sys_exit, struct pt_regs* regs, long ret) {
  __u64 pid_tgid = bpf_get_current_pid_tgid();
  if ((__u32)(pid_tgid >> 32) != target_tgid) return 0;
  __u32 tid = (__u32)pid_tgid;
  struct trace_thread* st = bpf_map_lookup_elem(&threads, &tid);
  if (!st || st->sys_enter_ts == 0) return 0;
  __u64 enter_ts = st->sys_enter_ts;
  st->sys_enter_ts = 0;
  if ((__u32)BPF_CORE_READ(regs, orig_ax) != st->sys_nr)
    return 0; /* entry not seen (trace started inside it) */
  count(TRACE_CTR_SYS_EXIT_HITS);
  __u64 now = bpf_ktime_get_ns();
  if (st->sys_is_wait) {
    st->wait_exit_ts = now;
    st->ran_since_wait = 0;
    return 0;
  }
  if (!st->sys_in_coro || now - enter_ts < block_threshold_ns) return 0;

  struct trace_block_event* e = reserve(sizeof(*e), TRACE_CTR_LOST_BLOCK);
  if (!e) return 0;
  e->h.kind = TRACE_EV_BLOCK;
  e->h.tid = tid;
  e->h.ts = now;
  e->nr = st->sys_nr;
  e->fn = st->sys_fn;
  e->enter_ts = enter_ts;
  e->frame = st->sys_frame;
  e->run_sp = st->sys_run_sp;
  e->ret = ret;
  e->flags = 0;

  struct pt_regs r;
  if (bpf_probe_read_kernel(&r, sizeof(r), regs) != 0) __builtin_memset(&r, 0, sizeof(r));
  regs_in_dwarf_order(&r, e->regs);
  e->stack_addr = r.sp;

  /* The thread was in the kernel for the whole call: its user stack and registers are the
   * ones it had at syscall entry (docs/TRACE.md, "Where a blocking call was made"). Copy from
   * the stack pointer up to and including the return address of the running coroutine's
   * resume function. */
  __u64 len = 0;
  if (st->sys_run_sp + 8 > r.sp) len = st->sys_run_sp + 8 - r.sp;
  if (len > TRACE_STACK_MAX) {
    len = TRACE_STACK_MAX;
    e->flags |= TRACE_BLOCK_STACK_TRUNCATED;
    count(TRACE_CTR_STACK_TRUNC);
  }
  barrier_var(len);
  if (len > TRACE_STACK_MAX) len = 0;
  if (len > 0 && bpf_probe_read_user(e->stack, len, (void*)r.sp) != 0) {
    len = 0;
    e->flags |= TRACE_BLOCK_STACK_FAILED;
    count(TRACE_CTR_STACK_FAIL);
  }
  e->stack_len = (__u32)len;
  submit(e);
  return 0;
}

SEC("raw_tp/sched_switch")
int BPF_PROG(trace_sched_switch, bool preempt, struct task_struct* prev, struct task_struct* next) {
  __u64 pid_tgid = bpf_get_current_pid_tgid(); /* prev is the current task */
  bool prev_ours = (__u32)(pid_tgid >> 32) == target_tgid;
  bool next_ours = (__u32)BPF_CORE_READ(next, tgid) == target_tgid;
  if (!prev_ours && !next_ours) return 0;
  __u64 now = bpf_ktime_get_ns();
  if (prev_ours) {
    __u32 tid = (__u32)pid_tgid;
    struct trace_thread* st = bpf_map_lookup_elem(&threads, &tid);
    if (st && st->depth > 0) {
      count(TRACE_CTR_SCHED_HITS);
      struct pt_regs* uregs = (struct pt_regs*)bpf_task_pt_regs(bpf_get_current_task_btf());
      __u64 sp = BPF_CORE_READ(uregs, sp);
      __u32 popped = pop_finished(st, sp);
      if (popped) emit_run_end(tid, now, popped, TRACE_CAUSE_SCHED, sp);
      if (st->depth > 0) st->off_ts = now;
    }
  }
  if (next_ours) {
    __u32 ntid = (__u32)BPF_CORE_READ(next, pid);
    struct trace_thread* st = bpf_map_lookup_elem(&threads, &ntid);
    if (st && st->off_ts != 0) {
      count(TRACE_CTR_SCHED_HITS);
      struct trace_offcpu_event* e = reserve(sizeof(*e), 0);
      if (e) {
        e->h.kind = TRACE_EV_OFFCPU;
        e->h.tid = ntid;
        e->h.ts = now;
        e->off_ts = st->off_ts;
        submit(e);
      }
      st->off_ts = 0;
    }
  }
  return 0;
}

SEC("raw_tp/sched_process_exit")
int BPF_PROG(trace_thread_exit, struct task_struct* p) {
  __u64 pid_tgid = bpf_get_current_pid_tgid();
  if ((__u32)(pid_tgid >> 32) != target_tgid) return 0;
  __u32 tid = (__u32)pid_tgid;
  struct trace_thread_exit_event* e = reserve(sizeof(*e), 0);
  if (e) {
    e->h.kind = TRACE_EV_THREAD_EXIT;
    e->h.tid = tid;
    e->h.ts = bpf_ktime_get_ns();
    submit(e);
  }
  bpf_map_delete_elem(&threads, &tid);
  return 0;
}
