/* Registers of an interrupted user thread in the DWARF x86-64 order the unwinder reads (rax, rdx,
 * rcx, rbx, rsi, rdi, rbp, rsp, r8..r15, rip): shared by every program that copies a user stack. */
#pragma once

#define DWARF_REG_COUNT 17

static __always_inline void regs_in_dwarf_order(const struct pt_regs* r,
                                                __u64 out[DWARF_REG_COUNT]) {
  out[0] = r->ax;
  out[1] = r->dx;
  out[2] = r->cx;
  out[3] = r->bx;
  out[4] = r->si;
  out[5] = r->di;
  out[6] = r->bp;
  out[7] = r->sp;
  out[8] = r->r8;
  out[9] = r->r9;
  out[10] = r->r10;
  out[11] = r->r11;
  out[12] = r->r12;
  out[13] = r->r13;
  out[14] = r->r14;
  out[15] = r->r15;
  out[16] = r->ip;
}
