// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* asyncprobe stuck check: counts entries into coroutine resume (and destroy / cleanup) functions
 * per frame address, for a window of about a second, so that a frame that looked the same in two
 * looks is known not resumed (0 entries) or known resumed. Userspace
 * (userspace/kernel/resume_probe.cpp) attaches resume_count at the entry of the resume, destroy
 * and cleanup functions of the coroutines that have candidate frames, one link per function,
 * bpf_cookie = the function's position in the request; the frame is the first argument.
 *   frames   candidate frame address -> entries: filled with zeros by userspace before attaching;
 *            the program never inserts, so a busy function costs a lookup per hit, no more
 *   fn_hits  function -> every entry seen: userspace reads it during the window and detaches a
 *            function whose count passes the budget (a hot function)
 * Nothing goes to a ring buffer: the counts are read once, at the window's end. */
#include "vmlinux.h"

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by userspace before loading. */
const volatile __u32 target_tgid = 0;

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1); /* resized by userspace to the number of candidate frames */
  __type(key, __u64);
  __type(value, __u64);
} frames SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1); /* resized by userspace to the number of functions */
  __type(key, __u32);
  __type(value, __u64);
} fn_hits SEC(".maps");

static __always_inline int on_entry(struct pt_regs* ctx) {
  if ((__u32)(bpf_get_current_pid_tgid() >> 32) != target_tgid) return 0;
  __u32 fn = (__u32)bpf_get_attach_cookie(ctx);
  __u64* hits = bpf_map_lookup_elem(&fn_hits, &fn);
  if (hits) __sync_fetch_and_add(hits, 1);
  __u64 frame = PT_REGS_PARM1(ctx);
  __u64* n = bpf_map_lookup_elem(&frames, &frame);
  if (n) __sync_fetch_and_add(n, 1);
  return 0;
}

/* Twice, like trace.bpf.c: for uprobe_multi links (loaded with that expected attach type) and
 * for one perf-event link per site. Userspace loads one. */
SEC("uprobe")
int resume_count(struct pt_regs* ctx) { return on_entry(ctx); }

SEC("uprobe")
int resume_count_multi(struct pt_regs* ctx) { return on_entry(ctx); }
