// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* asyncprobe profile: CPU samples of one process. Attached by userspace to a software cpu-clock
 * perf event on every CPU; each tick that interrupted a thread of the target copies the thread's
 * user registers and the top of its user stack (and, with --kernel, the kernel stack) into the
 * ring buffer. Unwinding (DWARF CFI) and the coroutine join happen in userspace. */
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "dwarf_regs.h"
#include "profile.h"
#include "trace.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by userspace before loading. */
const volatile __u32 target_tgid = 0;
const volatile __u8 want_kernel_stack = 0;
/* Benchmarks only (ASYNCPROBE_PROFILE_BENCH, docs/BENCHMARKS.md "## profile"): 1 = return after
 * the tgid filter, 2 = submit samples without a stack copy, 3 = reserve a sample and discard it. */
const volatile __u8 bench_mode = 0;

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 16 << 20); /* resized by userspace */
} samples SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, PROFILE_CTR_COUNT);
  __type(key, __u32);
  __type(value, __u64);
} counters SEC(".maps");

/* Stack mapping of each thread seen so far (thread id -> [lo, hi)), filled by userspace from
 * /proc/PID/maps: a copy that ends exactly at the mapping's end never faults, where the fallback
 * below may fault (and zero-fill 16 KiB) up to three times per sample. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, PROFILE_STACK_RANGES_MAX);
  __type(key, __u32);
  __type(value, struct profile_stack_range);
} stack_ranges SEC(".maps");

/* profile --trace: the trace program's per-thread run stacks, the same map (userspace reuses
 * the trace session's fd before loading, adopting its size); otherwise an unused entry. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct trace_thread);
} threads SEC(".maps");

static __always_inline void count(__u32 idx) {
  __u64* v = bpf_map_lookup_elem(&counters, &idx);
  if (v) *v += 1; /* per-CPU: no other writer */
}

/* Copies the user stack from `from` upward. A read that would cross the end of the stack
 * mapping faults: when userspace has told the thread's mapping (stack_ranges), one read ends
 * there; otherwise try lengths that end at page boundaries, longest first, so that the copy
 * stops exactly at the end of the mapping. */
static __always_inline __u32 copy_stack(struct profile_sample* e, __u64 from, __u32 tid) {
  __u64 to_page_end = 4096 - (from & 4095);
  const struct profile_stack_range* range = bpf_map_lookup_elem(&stack_ranges, &tid);
  if (range && from >= range->lo && from < range->hi) {
    /* The same length as the loop's longest copy that does not fault. */
    __u64 len = range->hi - from;
    if (len > to_page_end + 3 * 4096) len = to_page_end + 3 * 4096;
    if (len > PROFILE_STACK_MAX) len = PROFILE_STACK_MAX;
    barrier_var(len);
    if (len > 0 && len <= PROFILE_STACK_MAX &&
        bpf_probe_read_user(e->stack, len, (void*)from) == 0) {
      return (__u32)len;
    }
  }
#pragma unroll
  for (int extra = 3; extra >= 0; --extra) {
    __u64 len = to_page_end + (__u64)extra * 4096;
    if (len > PROFILE_STACK_MAX) len = PROFILE_STACK_MAX;
    barrier_var(len);
    if (len == 0 || len > PROFILE_STACK_MAX) continue;
    if (bpf_probe_read_user(e->stack, len, (void*)from) == 0) return (__u32)len;
  }
  return 0;
}

/* ctx->regs must be read field by field: the verifier rewrites each load into a load through
 * the kernel's pointer to the interrupted registers. Copying &ctx->regs as a block would read
 * the kernel's bpf_perf_event_data_kern (pointers) instead, seen as kernel addresses for pc. */
static __always_inline void read_interrupted_regs(struct bpf_perf_event_data* ctx,
                                                  struct pt_regs* r) {
  __builtin_memset(r, 0, sizeof(*r));
  r->r15 = ctx->regs.r15;
  r->r14 = ctx->regs.r14;
  r->r13 = ctx->regs.r13;
  r->r12 = ctx->regs.r12;
  r->bp = ctx->regs.bp;
  r->bx = ctx->regs.bx;
  r->r11 = ctx->regs.r11;
  r->r10 = ctx->regs.r10;
  r->r9 = ctx->regs.r9;
  r->r8 = ctx->regs.r8;
  r->ax = ctx->regs.ax;
  r->cx = ctx->regs.cx;
  r->dx = ctx->regs.dx;
  r->si = ctx->regs.si;
  r->di = ctx->regs.di;
  r->ip = ctx->regs.ip;
  r->csx = ctx->regs.csx;
  r->flags = ctx->regs.flags;
  r->sp = ctx->regs.sp;
}

SEC("perf_event")
int profile_tick(struct bpf_perf_event_data* ctx) {
  count(PROFILE_CTR_TICKS);
  __u64 pid_tgid = bpf_get_current_pid_tgid();
  if ((__u32)(pid_tgid >> 32) != target_tgid) return 0;
  count(PROFILE_CTR_TARGET);
  if (bench_mode == 1) return 0;

  struct profile_sample* e = bpf_ringbuf_reserve(&samples, sizeof(*e), 0);
  if (!e) {
    count(PROFILE_CTR_LOST);
    return 0;
  }
  if (bench_mode == 3) {
    bpf_ringbuf_discard(e, BPF_RB_NO_WAKEUP);
    return 0;
  }
  e->tid = (__u32)pid_tgid;
  e->cpu = bpf_get_smp_processor_id();
  e->ts = bpf_ktime_get_ns();
  e->flags = 0;
  e->kstack_len = 0;
  e->pad = 0;
  e->coro_frame = 0;
  e->coro_fn = 0;
  e->coro_pad = 0;
  const struct trace_thread* st = bpf_map_lookup_elem(&threads, &e->tid);
  if (st && st->depth > 0) {
    const struct trace_run* top = &st->runs[(st->depth - 1) & (TRACE_MAX_DEPTH - 1)];
    e->coro_frame = top->frame;
    e->coro_fn = top->fn;
  }

  /* The interrupted registers are the user ones when the tick hit user mode (CPL 3 in cs);
   * otherwise the thread is in the kernel and its user registers are those saved at entry. */
  struct pt_regs r;
  read_interrupted_regs(ctx, &r);
  if ((r.cs & 3) != 3) {
    e->flags |= PROFILE_SAMPLE_IN_KERNEL;
    struct pt_regs* uregs = (struct pt_regs*)bpf_task_pt_regs(bpf_get_current_task_btf());
    if (bpf_probe_read_kernel(&r, sizeof(r), uregs) != 0) __builtin_memset(&r, 0, sizeof(r));
    if (want_kernel_stack) {
      long n = bpf_get_stack(ctx, e->kstack, sizeof(e->kstack), 0);
      if (n > 0) {
        e->kstack_len = (__u32)n;
      } else {
        count(PROFILE_CTR_KSTACK_FAILED);
      }
    }
  }
  regs_in_dwarf_order(&r, e->regs);
  /* Start in the red zone below sp: a leaf function's epilogue (after `pop %rbp`) still has CFI
   * that reads the caller's rbp from there. When that page is not present, start at sp. */
  __u64 from = r.sp > PROFILE_RED_ZONE ? r.sp - PROFILE_RED_ZONE : r.sp;
  __u32 len = r.sp != 0 && bench_mode != 2 ? copy_stack(e, from, e->tid) : 0;
  if (len == 0 && from != r.sp) {
    from = r.sp;
    len = copy_stack(e, from, e->tid);
  }
  e->stack_addr = from;
  if (len == 0) {
    e->flags |= PROFILE_SAMPLE_STACK_FAILED;
    count(PROFILE_CTR_STACK_FAILED);
  } else if (len < PROFILE_STACK_MAX && len < 4096 - (from & 4095) + 3 * 4096) {
    e->flags |= PROFILE_SAMPLE_STACK_SHORT;
    count(PROFILE_CTR_STACK_SHORT);
  }
  e->stack_len = len;
  /* No wakeup: waking the reader costs the target's CPU an irq_work and the reader's an IPI per
   * sample (measured: a 9.5% loss of the target's throughput at 999 Hz on this VM); the reader
   * drains the ring every 20 ms instead. */
  bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
  count(PROFILE_CTR_EMITTED);
  return 0;
}
