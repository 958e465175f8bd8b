#include "symbolizer/index_store_finder.h"

#include <capstone/capstone.h>

#include <map>
#include <set>

namespace asyncprobe::sym {

namespace {

constexpr size_t kMaxInstructions = 200000;

// Which registers and stack slots hold the frame pointer, and which registers hold a known
// constant, along a linear sweep of the function. Control flow is ignored on purpose: compilers
// keep the frame pointer in one register or one spill slot for the whole function, which a
// linear sweep sees; a wrong guess can only drop a store, not invent one.
struct SweepState {
  std::set<unsigned> frame_regs;
  std::set<int64_t> frame_slots;  // rbp/rsp-relative spill slots holding the frame pointer
  std::map<unsigned, int64_t> constants;
};

bool is_stack_base(unsigned reg) {
  return reg == X86_REG_RBP || reg == X86_REG_RSP;
}

// The 64-bit register containing `reg` (eax -> rax, r8w -> r8, ...).
unsigned full_reg(csh handle, unsigned reg) {
  (void)handle;
  switch (reg) {
    case X86_REG_AL: case X86_REG_AH: case X86_REG_AX: case X86_REG_EAX: case X86_REG_RAX: return X86_REG_RAX;
    case X86_REG_BL: case X86_REG_BH: case X86_REG_BX: case X86_REG_EBX: case X86_REG_RBX: return X86_REG_RBX;
    case X86_REG_CL: case X86_REG_CH: case X86_REG_CX: case X86_REG_ECX: case X86_REG_RCX: return X86_REG_RCX;
    case X86_REG_DL: case X86_REG_DH: case X86_REG_DX: case X86_REG_EDX: case X86_REG_RDX: return X86_REG_RDX;
    case X86_REG_SIL: case X86_REG_SI: case X86_REG_ESI: case X86_REG_RSI: return X86_REG_RSI;
    case X86_REG_DIL: case X86_REG_DI: case X86_REG_EDI: case X86_REG_RDI: return X86_REG_RDI;
    case X86_REG_BPL: case X86_REG_BP: case X86_REG_EBP: case X86_REG_RBP: return X86_REG_RBP;
    case X86_REG_SPL: case X86_REG_SP: case X86_REG_ESP: case X86_REG_RSP: return X86_REG_RSP;
    case X86_REG_R8B: case X86_REG_R8W: case X86_REG_R8D: case X86_REG_R8: return X86_REG_R8;
    case X86_REG_R9B: case X86_REG_R9W: case X86_REG_R9D: case X86_REG_R9: return X86_REG_R9;
    case X86_REG_R10B: case X86_REG_R10W: case X86_REG_R10D: case X86_REG_R10: return X86_REG_R10;
    case X86_REG_R11B: case X86_REG_R11W: case X86_REG_R11D: case X86_REG_R11: return X86_REG_R11;
    case X86_REG_R12B: case X86_REG_R12W: case X86_REG_R12D: case X86_REG_R12: return X86_REG_R12;
    case X86_REG_R13B: case X86_REG_R13W: case X86_REG_R13D: case X86_REG_R13: return X86_REG_R13;
    case X86_REG_R14B: case X86_REG_R14W: case X86_REG_R14D: case X86_REG_R14: return X86_REG_R14;
    case X86_REG_R15B: case X86_REG_R15W: case X86_REG_R15D: case X86_REG_R15: return X86_REG_R15;
    default: return reg;
  }
}

bool is_64bit_reg(unsigned reg) {
  return full_reg(0, reg) == reg && reg != X86_REG_INVALID;
}

void forget_reg(SweepState& st, unsigned reg) {
  st.frame_regs.erase(reg);
  st.constants.erase(reg);
}

void clobber_call(SweepState& st) {
  for (unsigned r : {X86_REG_RAX, X86_REG_RCX, X86_REG_RDX, X86_REG_RSI, X86_REG_RDI, X86_REG_R8,
                     X86_REG_R9, X86_REG_R10, X86_REG_R11}) {
    forget_reg(st, r);
  }
}

}  // namespace

namespace {

bool is_callee_saved(unsigned reg) {
  return reg == X86_REG_RBX || reg == X86_REG_RBP || reg == X86_REG_R12 || reg == X86_REG_R13 ||
         reg == X86_REG_R14 || reg == X86_REG_R15;
}

bool ends_block(unsigned id) {
  return id == X86_INS_JMP || id == X86_INS_RET || id == X86_INS_UD2;
}

// Per callee-saved register: how often it receives the frame pointer and how often anything else.
struct RegisterUse {
  std::map<unsigned, int> frame_copies;
  std::map<unsigned, int> other_writes;
};

// One sweep over the decoded instructions. At every block end (jmp, ret) the state is reset to
// what holds at any jump target: %rdi at entry, the registers that only ever hold the frame
// (`stable`), and the spill slots. Stores found go to `facts` when it is non-null.
void sweep(csh handle, const cs_insn* insns, size_t n, const std::set<unsigned>& stable,
           ResumeCodeFacts* facts, RegisterUse* use) {
  SweepState st;
  auto reset = [&] {
    st.frame_regs = stable;
    st.frame_regs.insert(X86_REG_RDI);
    st.constants.clear();
  };
  reset();
  auto note_write = [&](unsigned reg, bool frame) {
    if (use == nullptr || !is_callee_saved(reg)) return;
    (frame ? use->frame_copies : use->other_writes)[reg]++;
  };
  for (size_t k = 0; k < n; ++k) {
    const cs_insn* insn = &insns[k];
    const cs_x86& x = insn->detail->x86;
    unsigned id = insn->id;
    if (ends_block(id)) {
      reset();
      continue;
    }
    if (id == X86_INS_CALL) {
      clobber_call(st);
      continue;
    }
    if (id == X86_INS_PUSH || id == X86_INS_POP) {
      // Prologue saves and epilogue restores of callee-saved registers.
      if (id == X86_INS_POP && x.op_count == 1 && x.operands[0].type == X86_OP_REG) {
        forget_reg(st, full_reg(handle, x.operands[0].reg));
      }
      continue;
    }
    bool is_mov = id == X86_INS_MOV || id == X86_INS_MOVABS;
    if (x.op_count == 2) {
      const cs_x86_op& dst = x.operands[0];
      const cs_x86_op& src = x.operands[1];
      // Frame-field reads: remember the first one (the index dispatch).
      if (facts != nullptr && src.type == X86_OP_MEM && src.mem.index == X86_REG_INVALID &&
          st.frame_regs.count(full_reg(handle, src.mem.base)) != 0 && src.mem.disp >= 16 &&
          !facts->first_frame_load &&
          (id == X86_INS_MOV || id == X86_INS_MOVZX || id == X86_INS_CMP)) {
        facts->first_frame_load = std::make_pair(static_cast<uint32_t>(src.mem.disp), src.size);
      }
      if (is_mov && dst.type == X86_OP_MEM && dst.mem.index == X86_REG_INVALID) {
        unsigned base = full_reg(handle, dst.mem.base);
        if (st.frame_regs.count(base) != 0 && dst.mem.disp >= 0 && dst.mem.disp < (1 << 20)) {
          std::optional<int64_t> value;
          if (src.type == X86_OP_IMM) {
            value = src.imm;
          } else if (src.type == X86_OP_REG) {
            auto it = st.constants.find(full_reg(handle, src.reg));
            if (it != st.constants.end()) value = it->second;
          }
          if (value && facts != nullptr) {
            facts->stores.push_back(
                {insn->address, static_cast<uint32_t>(dst.mem.disp), dst.size, *value});
          }
        } else if (is_stack_base(base) && src.type == X86_OP_REG && is_64bit_reg(src.reg)) {
          if (st.frame_regs.count(src.reg) != 0) {
            st.frame_slots.insert(dst.mem.disp);
          } else {
            st.frame_slots.erase(dst.mem.disp);
          }
        }
        continue;
      }
      if (dst.type == X86_OP_REG) {
        unsigned d = full_reg(handle, dst.reg);
        if (is_mov && src.type == X86_OP_REG && is_64bit_reg(src.reg) && is_64bit_reg(dst.reg)) {
          bool frame = st.frame_regs.count(src.reg) != 0;
          auto c = st.constants.find(src.reg);
          std::optional<int64_t> cval;
          if (c != st.constants.end()) cval = c->second;
          forget_reg(st, d);
          if (frame) st.frame_regs.insert(d);
          if (cval) st.constants[d] = *cval;
          note_write(d, frame);
          continue;
        }
        if (is_mov && src.type == X86_OP_IMM) {
          forget_reg(st, d);
          st.constants[d] = src.imm;
          note_write(d, false);
          continue;
        }
        if (is_mov && src.type == X86_OP_MEM && is_64bit_reg(dst.reg) &&
            is_stack_base(full_reg(handle, src.mem.base)) && src.mem.index == X86_REG_INVALID) {
          bool frame = st.frame_slots.count(src.mem.disp) != 0;
          forget_reg(st, d);
          if (frame) st.frame_regs.insert(d);
          note_write(d, frame);
          continue;
        }
        // `xor %eax,%eax` makes a zero constant.
        if (id == X86_INS_XOR && src.type == X86_OP_REG && full_reg(handle, src.reg) == d) {
          forget_reg(st, d);
          st.constants[d] = 0;
          note_write(d, false);
          continue;
        }
      }
    }
    // Anything else that writes a register invalidates what we knew of it.
    cs_regs regs_read;
    cs_regs regs_write;
    uint8_t nread = 0;
    uint8_t nwrite = 0;
    if (cs_regs_access(handle, insn, regs_read, &nread, regs_write, &nwrite) == CS_ERR_OK) {
      for (uint8_t i = 0; i < nwrite; ++i) {
        unsigned r = full_reg(handle, regs_write[i]);
        forget_reg(st, r);
        note_write(r, false);
      }
    }
  }
}

}  // namespace

ResumeCodeFacts analyze_resume_code(const uint8_t* code, size_t len, uint64_t vaddr) {
  ResumeCodeFacts facts;
  csh handle = 0;
  if (cs_open(CS_ARCH_X86, CS_MODE_64, &handle) != CS_ERR_OK) return facts;
  cs_option(handle, CS_OPT_DETAIL, CS_OPT_ON);
  // Decode the whole function once; skip undecodable bytes (data or padding) and resynchronise.
  std::vector<std::pair<cs_insn*, size_t>> chunks;  // each cs_disasm result and its count
  std::vector<cs_insn> insns;
  size_t offset = 0;
  while (offset < len && insns.size() < kMaxInstructions) {
    cs_insn* out = nullptr;
    size_t got = cs_disasm(handle, code + offset, len - offset, vaddr + offset,
                           kMaxInstructions - insns.size(), &out);
    if (got == 0) {
      ++offset;
      continue;
    }
    chunks.emplace_back(out, got);
    for (size_t i = 0; i < got; ++i) insns.push_back(out[i]);
    offset = out[got - 1].address + out[got - 1].size - vaddr;
  }
  facts.decoded = !insns.empty();
  RegisterUse use;
  sweep(handle, insns.data(), insns.size(), {}, nullptr, &use);
  std::set<unsigned> stable;
  for (const auto& [reg, copies] : use.frame_copies) {
    if (use.other_writes.count(reg) == 0) stable.insert(reg);
  }
  sweep(handle, insns.data(), insns.size(), stable, &facts, nullptr);
  for (auto& [ptr, count] : chunks) cs_free(ptr, count);
  cs_close(&handle);
  return facts;
}

std::optional<std::pair<uint32_t, uint8_t>> guess_index_field(const ResumeCodeFacts& facts) {
  std::map<std::pair<uint32_t, uint8_t>, std::set<int64_t>> values;
  for (const auto& s : facts.stores) {
    if (s.offset < 16 || s.width > 4 || s.value < 0 || s.value > 0xffff) continue;
    values[{s.offset, s.width}].insert(s.value);
  }
  std::optional<std::pair<uint32_t, uint8_t>> best;
  size_t best_score = 0;
  for (const auto& [field, vals] : values) {
    size_t score = vals.size() * 2;
    if (facts.first_frame_load && facts.first_frame_load->first == field.first) score += 1;
    if (score > best_score) {
      best_score = score;
      best = field;
    }
  }
  return best;
}

}  // namespace asyncprobe::sym
