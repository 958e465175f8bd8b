/* Machine code the tracer copies and patches, and helpers written in assembly.
 *
 * A resume trampoline: the patched entry of a coroutine resume function jumps here; the frame
 * address is in %rdi (both compilers pass it as the only argument). The recording part touches
 * only %rax, %rcx and %r11, saved in the red zone below %rsp (nothing at a function entry lives
 * there), so every register the function or its caller relies on is intact; flags are
 * call-clobbered by the ABI. The tracer appends the displaced entry instructions and a jump back.
 *
 * Two variants. Clang's .resume is entered only to resume. GCC's .actor is also entered by the
 * ramp to start the body (suspend index 0) and by .destroy to unwind (odd index): the GCC variant
 * reads the 16-bit index first and counts those apart.
 *
 * Placeholders (patched per copy; byte offsets exported in asyncprobe_tramp_layout_{clang,gcc}):
 *   FLAGS     address of the recording flags byte (bit 0 count, bit 1 events)
 *   TLS       %fs offset of the thread's buffer pointer
 *   CNT_RES   offset of this function's resume counter in a thread buffer (then +8 starts,
 *   CNT_START +16 destroy dispatches)
 *   CNT_DISP
 *   IDX       offset of the suspend index in the frame (GCC variant)
 *   ID        function id (twice)
 *   STUB      address of asyncprobe_trace_slow_stub
 * Thread buffer (tracer.cpp, ThreadBuffer): 0 head, 8 capacity, 16 mask, 24 events offset,
 * 32 lost, 64 tail; events are 16 bytes {frame, id, kind (0 resume, 1 start)}.
 */
    .macro TRAMPOLINE gcc
    movq %r11, -8(%rsp)
    movabsq $0x0102030405060708, %r11
.Lflags_end\@:
    cmpb $0, (%r11)
    je .Lout1\@
    movq %rax, -16(%rsp)
    movq %rcx, -24(%rsp)
    movzbl (%r11), %r11d
    movq %fs:0x11223344, %rax
.Ltls_end\@:
    testq %rax, %rax
    jz .Lslow\@
    .if \gcc
    movzwl 0x11223344(%rdi), %ecx
.Lidx_end\@:
    testl $1, %ecx
    jnz .Ldispatch\@
    testl %ecx, %ecx
    jz .Lstart\@
    .endif
    incq 0x11223344(%rax)
.Lres_end\@:
    xorl %ecx, %ecx
    jmp .Lrecord\@
.Lstart\@:
    .if \gcc
    incq 0x11223344(%rax)
    .endif
.Lstart_end\@:
    movl $1, %ecx
    jmp .Lrecord\@
.Ldispatch\@:
    .if \gcc
    incq 0x11223344(%rax)
    .endif
.Ldisp_end\@:
    jmp .Lout3\@
.Lrecord\@:
    testb $2, %r11b
    jz .Lout3\@
    movq (%rax), %r11
    movq %r11, -32(%rsp)
    subq 64(%rax), %r11
    cmpq 8(%rax), %r11
    jae .Lfull\@
    movq -32(%rsp), %r11
    andq 16(%rax), %r11
    shlq $4, %r11
    addq 24(%rax), %r11
    movq %rdi, (%rax,%r11)
    movl $0x11223344, 8(%rax,%r11)
.Lid1_end\@:
    movl %ecx, 12(%rax,%r11)
    movq -32(%rsp), %r11
    incq %r11
    movq %r11, (%rax)
    jmp .Lout3\@
.Lfull\@:
    incq 32(%rax)
    jmp .Lout3\@
.Lslow\@:
    leaq -128(%rsp), %rsp
    movabsq $0x0102030405060708, %r11
.Lstub_end\@:
    movl $0x11223344, %eax
.Lid2_end\@:
    callq *%r11
    leaq 128(%rsp), %rsp
.Lout3\@:
    movq -24(%rsp), %rcx
    movq -16(%rsp), %rax
.Lout1\@:
    movq -8(%rsp), %r11
.Lend\@:
    .pushsection .rodata
    .p2align 2
    .long .Lend\@ - 0b
    .long .Lflags_end\@ - 8 - 0b
    .long .Ltls_end\@ - 4 - 0b
    .long .Lres_end\@ - 4 - 0b
    .if \gcc
    .long .Lstart_end\@ - 4 - 0b
    .long .Ldisp_end\@ - 4 - 0b
    .long .Lidx_end\@ - 4 - 0b
    .else
    .long 0
    .long 0
    .long 0
    .endif
    .long .Lid1_end\@ - 4 - 0b
    .long .Lstub_end\@ - 8 - 0b
    .long .Lid2_end\@ - 4 - 0b
    .popsection
    .endm

    .text
    .p2align 4
    .globl asyncprobe_tramp_clang
    .hidden asyncprobe_tramp_clang
    .section .rodata
    .p2align 2
    .globl asyncprobe_tramp_layout_clang
    .hidden asyncprobe_tramp_layout_clang
asyncprobe_tramp_layout_clang:
    .text
asyncprobe_tramp_clang:
0:
    TRAMPOLINE 0

    .p2align 4
    .globl asyncprobe_tramp_gcc
    .hidden asyncprobe_tramp_gcc
    .section .rodata
    .p2align 2
    .globl asyncprobe_tramp_layout_gcc
    .hidden asyncprobe_tramp_layout_gcc
asyncprobe_tramp_layout_gcc:
    .text
asyncprobe_tramp_gcc:
0:
    TRAMPOLINE 1

/* Saves what a call from the middle of foreign code must not disturb: %rbp (as the frame
 * pointer), the caller-saved integer registers the entering code did not save itself (%rcx and
 * %r11 too when \with_rcx_r11), the flags and the whole vector state (x87, SSE, AVX, AVX-512;
 * XSAVE with the header zeroed, 64-byte aligned). %rax and %rdx are used by XSAVE: their values
 * are on the stack then, at -56(%rbp) (%rax) and -8(%rbp) (%rdx); %rdi is at -24(%rbp). */
    .macro SAVE_STATE with_rcx_r11
    pushq %rbp
    .cfi_def_cfa_offset 16
    .cfi_offset %rbp, -16
    movq %rsp, %rbp
    .cfi_def_cfa_register %rbp
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %rax
    .if \with_rcx_r11
    pushq %rcx
    pushq %r11
    .endif
    pushfq
    subq $4160, %rsp
    andq $-64, %rsp
    xorl %eax, %eax
    .irp off, 512, 520, 528, 536, 544, 552, 560, 568
    movq %rax, \off(%rsp)
    .endr
    movl $0xe7, %eax
    xorl %edx, %edx
    xsave64 (%rsp)
    .endm

/* Undoes SAVE_STATE (the same \with_rcx_r11) and returns. */
    .macro RESTORE_STATE_AND_RETURN with_rcx_r11
    movl $0xe7, %eax
    xorl %edx, %edx
    xrstor64 (%rsp)
    .if \with_rcx_r11
    leaq -80(%rbp), %rsp
    .else
    leaq -64(%rbp), %rsp
    .endif
    popfq
    .if \with_rcx_r11
    popq %r11
    popq %rcx
    .endif
    popq %rax
    popq %r10
    popq %r9
    popq %r8
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rbp
    .cfi_def_cfa %rsp, 8
    ret
    .endm

/* Slow path of a trampoline (no buffer for this thread yet): %rdi frame, %eax function id;
 * %rax, %rcx and %r11 are saved by the caller. Calls asyncprobe_trace_slow(frame, id). */
    .p2align 4
    .globl asyncprobe_trace_slow_stub
    .hidden asyncprobe_trace_slow_stub
    .type asyncprobe_trace_slow_stub, @function
asyncprobe_trace_slow_stub:
    .cfi_startproc
    SAVE_STATE 0
    movq -24(%rbp), %rdi
    movl -56(%rbp), %esi
    cld
    call asyncprobe_trace_slow
    RESTORE_STATE_AND_RETURN 0
    .cfi_endproc
    .size asyncprobe_trace_slow_stub, .-asyncprobe_trace_slow_stub

/* Hook for ld.so's _dl_debug_state (called on every dlopen/dlclose): saves everything, %rcx and
 * %r11 included, and calls asyncprobe_dl_activity(). Entered by a jump from the patched
 * function, so it returns straight to _dl_debug_state's caller. */
    .p2align 4
    .globl asyncprobe_dl_hook
    .hidden asyncprobe_dl_hook
    .type asyncprobe_dl_hook, @function
asyncprobe_dl_hook:
    .cfi_startproc
    SAVE_STATE 1
    cld
    call asyncprobe_dl_activity
    RESTORE_STATE_AND_RETURN 1
    .cfi_endproc
    .size asyncprobe_dl_hook, .-asyncprobe_dl_hook

    .section .note.GNU-stack,"",@progbits
