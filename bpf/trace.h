/* Shared between bpf/trace.bpf.c and userspace (userspace/kernel/trace_session.cpp): the maps'
 * value types and the events the BPF programs put in the ring buffer. Plain C, fixed-width fields,
 * explicit padding, so that both sides agree on every offset. */
#ifndef ASYNCPROBE_BPF_TRACE_H
#define ASYNCPROBE_BPF_TRACE_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Coroutine runs a thread can have nested on its stack (a resume called from inside a running
 * coroutine). Deeper nesting is folded into the top entry and counted (TRACE_CTR_DEPTH_FOLD). */
#define TRACE_MAX_DEPTH 16
/* Most bytes of user stack copied for one blocking call (from the syscall's stack pointer up to
 * the return address of the running coroutine's resume function). */
#define TRACE_STACK_MAX 16384
/* Promise words read at every resume (the awaiter rules look at promise+0 and promise+16). */
#define TRACE_PROMISE_WORDS 3

/* bpf_cookie of a uprobe: role in the high 32 bits, function id (index into the fns map and
 * into userspace's function table) in the low 32 bits. */
#define TRACE_ROLE_RESUME 0u
#define TRACE_ROLE_DESTROY 1u
#define TRACE_ROLE_CLEANUP 2u

/* trace_fn.flags */
#define TRACE_FN_GCC 1u /* GCC split functions: index 0 = start from the ramp, odd = destroy */

struct trace_fn {
  __u32 index_offset; /* suspend index field in the frame */
  __u8 index_width;   /* 1, 2, 4 or 8; 0 = unknown */
  __u8 flags;
  __u16 pad;
  __u32 promise_offset; /* promise start in the frame */
  __u32 pad2;
};

/* Syscall classes (syscall_class map, by x86-64 syscall number). 0 = not traced. */
#define TRACE_SYS_WAIT 1u  /* can be an event loop's wait: epoll, poll, select, sleeps */
#define TRACE_SYS_FUTEX 2u /* a wait only for the FUTEX_WAIT family of operations */
#define TRACE_SYS_IO 3u    /* read/write family: blocking only inside a coroutine */

/* Per-CPU counters (counters map, summed by userspace). */
enum trace_counter {
  TRACE_CTR_RESUME_HITS = 0,  /* resume uprobe hits (all, incl. GCC start/destroy dispatch) */
  TRACE_CTR_DESTROY_HITS,     /* destroy/cleanup uprobe hits */
  TRACE_CTR_SYS_ENTER_HITS,   /* traced syscalls entered by the target */
  TRACE_CTR_SYS_EXIT_HITS,    /* traced syscalls left by the target */
  TRACE_CTR_SCHED_HITS,       /* context switches involving a target thread */
  TRACE_CTR_SYS_ALL_HITS,     /* raw syscall tracepoint hits by the target (any syscall) */
  TRACE_CTR_IN_CORO_SYSCALLS, /* traced syscalls made inside a coroutine (any duration) */
  TRACE_CTR_EMITTED,          /* events written to the ring buffer */
  TRACE_CTR_LOST,             /* events dropped: ring buffer full */
  TRACE_CTR_LOST_RESUME,      /* ... of which resume/start events */
  TRACE_CTR_LOST_BLOCK,       /* ... of which blocking-call events */
  TRACE_CTR_STACK_FAIL,       /* blocking calls whose user stack could not be copied */
  TRACE_CTR_STACK_TRUNC,      /* blocking calls whose stack exceeded TRACE_STACK_MAX */
  TRACE_CTR_DEPTH_FOLD,       /* nested runs deeper than TRACE_MAX_DEPTH */
  TRACE_CTR_NO_THREAD_STATE,  /* thread state map full */
  TRACE_CTR_INDEX_FAIL,       /* suspend index unreadable at resume */
  TRACE_CTR_COUNT
};

enum trace_event_kind {
  TRACE_EV_RESUME = 1,  /* a resume function was entered (or GCC start) */
  TRACE_EV_DESTROY,     /* a destroy/cleanup function was entered */
  TRACE_EV_RUN_END,     /* runs found finished at a syscall or context switch */
  TRACE_EV_BLOCK,       /* a traced syscall inside a coroutine took >= block threshold */
  TRACE_EV_STALL,       /* a thread stayed out of its wait syscall >= threshold after runs */
  TRACE_EV_OFFCPU,      /* a thread with a running coroutine was off the CPU */
  TRACE_EV_THREAD_EXIT, /* a target thread exited */
};

/* TRACE_EV_RESUME.mode: PUSH = nested into the current run (or the first run); REPLACE = same
 * stack pointer and return address as the top run: it transferred here, or returned and the same
 * call resumed the next coroutine. */
#define TRACE_RESUME_PUSH 0u
#define TRACE_RESUME_REPLACE 1u
/* TRACE_EV_RESUME.what */
#define TRACE_RESUME_RESUME 0u   /* resumed from a suspend point */
#define TRACE_RESUME_START 1u    /* GCC ramp starting the body (index 0) */
#define TRACE_RESUME_DISPATCH 2u /* GCC destroy dispatch (odd index): not a run */

struct trace_event_header {
  __u32 kind;
  __u32 tid;
  __u64 ts; /* CLOCK_MONOTONIC ns */
};

struct trace_resume_event {
  struct trace_event_header h;
  __u32 fn;
  __u8 popped;   /* runs found finished before this one (their entry sp < this sp) */
  __u8 mode;     /* TRACE_RESUME_PUSH / REPLACE */
  __u8 what;     /* TRACE_RESUME_* */
  __u8 index_ok; /* index read */
  __u64 frame;
  __s64 index;
  __u64 sp;
  __u64 promise[TRACE_PROMISE_WORDS];
};

struct trace_destroy_event {
  struct trace_event_header h;
  __u32 fn;
  __u8 popped;
  __u8 role; /* TRACE_ROLE_DESTROY / CLEANUP */
  __u16 pad;
  __u64 frame;
  __u64 sp;
};

#define TRACE_CAUSE_SCHED (-1)
#define TRACE_CAUSE_EXIT (-2)
#define TRACE_CAUSE_CALL (-3) /* a probed function entry (GCC destroy dispatch) */

struct trace_run_end_event {
  struct trace_event_header h;
  __u32 popped;
  __s32 cause; /* syscall number, or TRACE_CAUSE_* */
  __u64 sp;
};

/* User registers in DWARF x86-64 order (0 rax .. 15 r15, 16 rip). */
#define TRACE_NREGS 17
struct trace_block_event {
  struct trace_event_header h; /* ts = syscall exit */
  __u32 nr;                    /* syscall number */
  __u32 fn;                    /* running coroutine */
  __u64 enter_ts;
  __u64 frame;
  __u64 run_sp; /* entry stack pointer of the running coroutine's resume function */
  __s64 ret;
  __u64 regs[TRACE_NREGS];
  __u64 stack_addr; /* = regs[7], user sp at the syscall */
  __u32 stack_len;  /* bytes valid in stack[] */
  __u32 flags;      /* TRACE_BLOCK_* */
  __u8 stack[TRACE_STACK_MAX];
};
#define TRACE_BLOCK_STACK_FAILED 1u
#define TRACE_BLOCK_STACK_TRUNCATED 2u

struct trace_stall_event {
  struct trace_event_header h; /* ts = entry of the wait syscall that ended the stall */
  __u64 start_ts;              /* exit of the previous wait syscall */
  __u32 nr;                    /* the wait syscall that ended it */
  __u32 pad;
};

struct trace_offcpu_event {
  struct trace_event_header h; /* ts = back on a CPU */
  __u64 off_ts;
};

struct trace_thread_exit_event {
  struct trace_event_header h;
};

/* Per-thread state (threads map, key = tid). Userspace reads it at the end of the trace for
 * threads that are in an event-loop stall or a blocking call right then. */
struct trace_run {
  __u64 frame;
  __u64 entry_sp; /* stack pointer at the resume function's entry: its return address slot */
  __u64 ret_addr; /* the return address found there */
  __u32 fn;
  __u32 pad;
};

struct trace_thread {
  struct trace_run runs[TRACE_MAX_DEPTH];
  __u32 depth;
  __u32 sys_nr; /* syscall in progress (valid while sys_enter_ts != 0) */
  __u64 sys_enter_ts;
  __u32 sys_in_coro; /* the syscall in progress was entered inside a coroutine */
  __u32 sys_is_wait; /* ... or is this thread's wait */
  __u64 sys_frame;   /* running coroutine at syscall entry */
  __u64 sys_run_sp;
  __u32 sys_fn;
  __u32 ran_since_wait; /* a coroutine ran since the thread last left its wait */
  __u64 wait_exit_ts;   /* last exit from its wait syscall (0 = none seen) */
  __u64 off_ts;         /* switched out while a coroutine was current (0 = no) */
};

#endif
