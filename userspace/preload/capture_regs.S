/* A helper in assembly, in its own file because tests/unit/preload_internals_test links it too
 * (the library's unwinder starts from the registers it captures). */
/* void asyncprobe_capture_caller_regs(RegState* out): the callee-saved registers, stack pointer
 * and return address of the caller (RegState: uint64_t v[17] by DWARF number, uint32_t valid). */
    .p2align 4
    .globl asyncprobe_capture_caller_regs
    .hidden asyncprobe_capture_caller_regs
    .type asyncprobe_capture_caller_regs, @function
asyncprobe_capture_caller_regs:
    .cfi_startproc
    movq %rbx, 24(%rdi)
    movq %rbp, 48(%rdi)
    leaq 8(%rsp), %rax
    movq %rax, 56(%rdi)
    movq %r12, 96(%rdi)
    movq %r13, 104(%rdi)
    movq %r14, 112(%rdi)
    movq %r15, 120(%rdi)
    movq (%rsp), %rax
    movq %rax, 128(%rdi)
    movl $0x1f0c8, 136(%rdi)
    ret
    .cfi_endproc
    .size asyncprobe_capture_caller_regs, .-asyncprobe_capture_caller_regs

    .section .note.GNU-stack,"",@progbits
