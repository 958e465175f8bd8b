/* Shared between bpf/profile.bpf.c and userspace (userspace/kernel/profile_session.cpp): the sample
 * the CPU-profile program puts in the ring buffer and its counters. Plain C, fixed-width fields,
 * explicit padding, so that both sides agree on every offset. */
#ifndef ASYNCPROBE_BPF_PROFILE_H
#define ASYNCPROBE_BPF_PROFILE_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Most bytes of user stack copied per sample, from the user stack pointer upward. DWARF CFI
 * unwinding in userspace reads return addresses and saved registers from this copy. */
#define PROFILE_STACK_MAX 16384
/* Bytes below the user stack pointer copied too (the x86-64 red zone). */
#define PROFILE_RED_ZONE 128
/* Most kernel frames per sample (--kernel). */
#define PROFILE_KSTACK_MAX 64

/* Threads whose stack mapping userspace tells the program (stack_ranges map). */
#define PROFILE_STACK_RANGES_MAX 4096

/* A thread's stack mapping [lo, hi) (stack_ranges map value). */
struct profile_stack_range {
  __u64 lo;
  __u64 hi;
};

/* profile_sample.flags */
#define PROFILE_SAMPLE_IN_KERNEL                                                                  \
  1u                                   /* the timer hit kernel code: regs are the user ones saved \
                                        * at kernel entry */
#define PROFILE_SAMPLE_STACK_SHORT 2u  /* the full copy faulted: a shorter one was taken */
#define PROFILE_SAMPLE_STACK_FAILED 4u /* no stack bytes could be copied */

/* Per-CPU counters (counters map, summed by userspace). */
enum profile_counter {
  PROFILE_CTR_TICKS = 0,     /* timer ticks that ran the program (any process) */
  PROFILE_CTR_TARGET,        /* ... of which hit the target */
  PROFILE_CTR_EMITTED,       /* samples written to the ring buffer */
  PROFILE_CTR_LOST,          /* samples dropped: ring buffer full */
  PROFILE_CTR_STACK_SHORT,   /* samples with a shortened stack copy */
  PROFILE_CTR_STACK_FAILED,  /* samples without any stack copy */
  PROFILE_CTR_KSTACK_FAILED, /* --kernel: kernel stack unavailable */
  PROFILE_CTR_COUNT,
};

struct profile_sample {
  __u32 tid;
  __u32 cpu;
  __u64 ts; /* bpf_ktime_get_ns */
  /* User registers in DWARF x86-64 order: rax, rdx, rcx, rbx, rsi, rdi, rbp, rsp, r8..r15, rip. */
  __u64 regs[17];
  __u64 stack_addr; /* where stack[0] was read from: regs[7] - PROFILE_RED_ZONE, or regs[7] */
  __u32 stack_len;  /* bytes valid in stack */
  __u32 flags;
  __u32 kstack_len; /* bytes valid in kstack (--kernel, samples that hit the kernel) */
  __u32 pad;
  /* profile --trace: the thread's running coroutine as the trace probes know it (the top run of
   * bpf/trace.h's trace_thread); coro_frame 0 when none or not tracing. */
  __u64 coro_frame;
  __u32 coro_fn; /* its function id in the trace's function table */
  __u32 coro_pad;
  __u64 kstack[PROFILE_KSTACK_MAX];
  __u8 stack[PROFILE_STACK_MAX];
};

#endif
