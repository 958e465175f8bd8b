// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The baseline of tools/bench/trace_bench: an empty uprobe program. Attached to the same resume
 * functions as asyncprobe trace, it measures what the trap alone costs, so that the benchmark can
 * report what trace_resume adds on top of it. */
#include "vmlinux.h"

#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("uprobe")
int bench_empty(void* ctx) { return 0; }

/* The same, for a uprobe_multi link (loaded with that expected attach type). */
SEC("uprobe")
int bench_empty_multi(void* ctx) { return 0; }
