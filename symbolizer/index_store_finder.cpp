#include "symbolizer/index_store_finder.h"

#include <capstone/capstone.h>

#include <map>
#include <optional>
#include <set>

namespace asyncprobe::symbolizer {

namespace {

constexpr size_t kMaxInstructions = 200000;

// Which registers and stack slots hold the frame pointer, and which registers hold a known
// constant, at one point of the function. A register may hold the frame pointer plus a constant
// (GCC -O2 keeps `frame + 0x100` in %rbx to reach late fields with short displacements): its
// value is that constant. A wrong guess can only drop a store, not invent one.
struct SweepState {
  std::map<unsigned, int64_t> frame_regs;  // register -> its offset from the frame start
  std::map<int64_t, int64_t> frame_slots;  // rbp/rsp-relative spill slot -> offset it holds
  std::map<unsigned, int64_t> constants;
  // Ramp mode (non-zero): the resume function's address. The register a ramp stores it through
  // is the new frame's start (the frame arrives in no register: the ramp allocates it).
  uint64_t frame_marker = 0;
};

// The frame offset a register holds, if it holds a frame pointer.
std::optional<int64_t> frame_offset(const SweepState& st, unsigned reg) {
  auto it = st.frame_regs.find(reg);
  if (it == st.frame_regs.end()) return std::nullopt;
  return it->second;
}

bool is_stack_base(unsigned reg) { return reg == X86_REG_RBP || reg == X86_REG_RSP; }

// The 64-bit register containing `reg` (eax -> rax, r8w -> r8, ...).
unsigned full_reg(csh handle, unsigned reg) {
  (void)handle;
  switch (reg) {
    case X86_REG_AL:
    case X86_REG_AH:
    case X86_REG_AX:
    case X86_REG_EAX:
    case X86_REG_RAX:
      return X86_REG_RAX;
    case X86_REG_BL:
    case X86_REG_BH:
    case X86_REG_BX:
    case X86_REG_EBX:
    case X86_REG_RBX:
      return X86_REG_RBX;
    case X86_REG_CL:
    case X86_REG_CH:
    case X86_REG_CX:
    case X86_REG_ECX:
    case X86_REG_RCX:
      return X86_REG_RCX;
    case X86_REG_DL:
    case X86_REG_DH:
    case X86_REG_DX:
    case X86_REG_EDX:
    case X86_REG_RDX:
      return X86_REG_RDX;
    case X86_REG_SIL:
    case X86_REG_SI:
    case X86_REG_ESI:
    case X86_REG_RSI:
      return X86_REG_RSI;
    case X86_REG_DIL:
    case X86_REG_DI:
    case X86_REG_EDI:
    case X86_REG_RDI:
      return X86_REG_RDI;
    case X86_REG_BPL:
    case X86_REG_BP:
    case X86_REG_EBP:
    case X86_REG_RBP:
      return X86_REG_RBP;
    case X86_REG_SPL:
    case X86_REG_SP:
    case X86_REG_ESP:
    case X86_REG_RSP:
      return X86_REG_RSP;
    case X86_REG_R8B:
    case X86_REG_R8W:
    case X86_REG_R8D:
    case X86_REG_R8:
      return X86_REG_R8;
    case X86_REG_R9B:
    case X86_REG_R9W:
    case X86_REG_R9D:
    case X86_REG_R9:
      return X86_REG_R9;
    case X86_REG_R10B:
    case X86_REG_R10W:
    case X86_REG_R10D:
    case X86_REG_R10:
      return X86_REG_R10;
    case X86_REG_R11B:
    case X86_REG_R11W:
    case X86_REG_R11D:
    case X86_REG_R11:
      return X86_REG_R11;
    case X86_REG_R12B:
    case X86_REG_R12W:
    case X86_REG_R12D:
    case X86_REG_R12:
      return X86_REG_R12;
    case X86_REG_R13B:
    case X86_REG_R13W:
    case X86_REG_R13D:
    case X86_REG_R13:
      return X86_REG_R13;
    case X86_REG_R14B:
    case X86_REG_R14W:
    case X86_REG_R14D:
    case X86_REG_R14:
      return X86_REG_R14;
    case X86_REG_R15B:
    case X86_REG_R15W:
    case X86_REG_R15D:
    case X86_REG_R15:
      return X86_REG_R15;
    default:
      return reg;
  }
}

bool is_64bit_reg(unsigned reg) { return full_reg(0, reg) == reg && reg != X86_REG_INVALID; }

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

bool ends_block(unsigned id) {
  return id == X86_INS_JMP || id == X86_INS_RET || id == X86_INS_UD2 || id == X86_INS_HLT;
}

bool same_state(const SweepState& a, const SweepState& b) {
  return a.frame_regs == b.frame_regs && a.frame_slots == b.frame_slots &&
         a.constants == b.constants;
}

// What holds on every path: the meet of two states.
SweepState meet(const SweepState& a, const SweepState& b) {
  SweepState out;
  out.frame_marker = a.frame_marker;
  for (const auto& [r, off] : a.frame_regs) {
    auto it = b.frame_regs.find(r);
    if (it != b.frame_regs.end() && it->second == off) out.frame_regs.emplace(r, off);
  }
  for (const auto& [slot, off] : a.frame_slots) {
    auto it = b.frame_slots.find(slot);
    if (it != b.frame_slots.end() && it->second == off) out.frame_slots.emplace(slot, off);
  }
  for (const auto& [r, v] : a.constants) {
    auto it = b.constants.find(r);
    if (it != b.constants.end() && it->second == v) out.constants.emplace(r, v);
  }
  return out;
}

// Frame-field reads: remember the first one (the index dispatch). A compare may read its
// memory operand from either side (`cmpb $0x0,0x6c(%rdi)`).
void note_first_frame_load(csh handle, unsigned id, const cs_x86_op& dst, const cs_x86_op& src,
                           const SweepState& st, ResumeCodeFacts* facts) {
  if (facts == nullptr || facts->first_frame_load) return;
  if (id != X86_INS_MOV && id != X86_INS_MOVZX && id != X86_INS_CMP && id != X86_INS_TEST) return;
  for (const cs_x86_op* op : {&src, &dst}) {
    if (op == &dst && id != X86_INS_CMP && id != X86_INS_TEST) continue;
    if (op->type != X86_OP_MEM || op->mem.index != X86_REG_INVALID) continue;
    auto base = frame_offset(st, full_reg(handle, op->mem.base));
    if (base && *base + op->mem.disp >= 16) {
      facts->first_frame_load =
          std::make_pair(static_cast<uint32_t>(*base + op->mem.disp), op->size);
      break;
    }
  }
}

// A mov to memory: a known value stored into a frame field is recorded; a register spilled to a
// stack slot carries its frame offset (or its loss) into the slot.
void transfer_store(csh handle, const cs_insn* insn, const cs_x86_op& dst, const cs_x86_op& src,
                    SweepState& st, ResumeCodeFacts* facts) {
  unsigned base = full_reg(handle, dst.mem.base);
  auto base_off = frame_offset(st, base);
  int64_t field = base_off ? *base_off + dst.mem.disp : -1;
  if (base_off && field >= 0 && field < (1 << 20)) {
    std::optional<int64_t> value;
    if (src.type == X86_OP_IMM) {
      value = src.imm;
    } else if (src.type == X86_OP_REG) {
      auto it = st.constants.find(full_reg(handle, src.reg));
      if (it != st.constants.end()) value = it->second;
    }
    if (value && facts != nullptr) {
      facts->stores.push_back({insn->address, static_cast<uint32_t>(field), dst.size, *value});
    }
  } else if (!base_off && st.frame_marker != 0 && src.type == X86_OP_REG && !is_stack_base(base) &&
             is_64bit_reg(base)) {
    // A ramp writing the resume function's address: `base + disp` is the frame's first word.
    auto it = st.constants.find(full_reg(handle, src.reg));
    if (it != st.constants.end() && static_cast<uint64_t>(it->second) == st.frame_marker) {
      st.frame_regs[base] = -dst.mem.disp;
    }
  } else if (is_stack_base(base) && src.type == X86_OP_REG && is_64bit_reg(src.reg)) {
    if (auto off = frame_offset(st, src.reg)) {
      st.frame_slots[dst.mem.disp] = *off;
    } else {
      st.frame_slots.erase(dst.mem.disp);
    }
  }
}

// A write to a register whose new value the sweep can follow (copies, constants, reloads of
// spilled frame pointers, frame + k). Returns false when the instruction is none of these.
bool transfer_to_register(csh handle, const cs_insn* insn, const cs_x86_op& dst,
                          const cs_x86_op& src, SweepState& st) {
  const unsigned id = insn->id;
  bool is_mov = id == X86_INS_MOV || id == X86_INS_MOVABS;
  unsigned d = full_reg(handle, dst.reg);
  if (is_mov && src.type == X86_OP_REG && is_64bit_reg(src.reg) && is_64bit_reg(dst.reg)) {
    auto frame = frame_offset(st, src.reg);
    auto c = st.constants.find(src.reg);
    std::optional<int64_t> cval;
    if (c != st.constants.end()) cval = c->second;
    forget_reg(st, d);
    if (frame) st.frame_regs[d] = *frame;
    if (cval) st.constants[d] = *cval;
    return true;
  }
  if (is_mov && src.type == X86_OP_IMM) {
    forget_reg(st, d);
    st.constants[d] = src.imm;
    return true;
  }
  if (is_mov && src.type == X86_OP_MEM && is_64bit_reg(dst.reg) &&
      is_stack_base(full_reg(handle, src.mem.base)) && src.mem.index == X86_REG_INVALID) {
    auto slot = st.frame_slots.find(src.mem.disp);
    std::optional<int64_t> frame;
    if (slot != st.frame_slots.end()) frame = slot->second;
    forget_reg(st, d);
    if (frame) st.frame_regs[d] = *frame;
    return true;
  }
  // frame + k: `add $k,%reg` / `sub $k,%reg` on a frame register, `lea k(%frame),%reg`.
  if ((id == X86_INS_ADD || id == X86_INS_SUB) && src.type == X86_OP_IMM && is_64bit_reg(dst.reg)) {
    auto frame = frame_offset(st, d);
    forget_reg(st, d);
    if (frame) st.frame_regs[d] = *frame + (id == X86_INS_ADD ? src.imm : -src.imm);
    return true;
  }
  // In ramp mode, `lea sym(%rip),%reg` makes a known address (the resume function's, stored into
  // the new frame's first word).
  if (id == X86_INS_LEA && st.frame_marker != 0 && is_64bit_reg(dst.reg) &&
      src.type == X86_OP_MEM && src.mem.base == X86_REG_RIP && src.mem.index == X86_REG_INVALID) {
    forget_reg(st, d);
    st.constants[d] = static_cast<int64_t>(insn->address + insn->size) + src.mem.disp;
    return true;
  }
  if (id == X86_INS_LEA && is_64bit_reg(dst.reg) && src.type == X86_OP_MEM &&
      src.mem.index == X86_REG_INVALID && src.mem.segment == X86_REG_INVALID) {
    auto frame = frame_offset(st, full_reg(handle, src.mem.base));
    forget_reg(st, d);
    if (frame) st.frame_regs[d] = *frame + src.mem.disp;
    return true;
  }
  // `xor %eax,%eax` makes a zero constant.
  if (id == X86_INS_XOR && src.type == X86_OP_REG && full_reg(handle, src.reg) == d) {
    forget_reg(st, d);
    st.constants[d] = 0;
    return true;
  }
  return false;
}

// Anything else that writes a register invalidates what we knew of it.
void forget_written_regs(csh handle, const cs_insn* insn, SweepState& st) {
  cs_regs regs_read;
  cs_regs regs_write;
  uint8_t nread = 0;
  uint8_t nwrite = 0;
  if (cs_regs_access(handle, insn, regs_read, &nread, regs_write, &nwrite) == CS_ERR_OK) {
    for (uint8_t i = 0; i < nwrite; ++i) forget_reg(st, full_reg(handle, regs_write[i]));
  }
}

// Effect of one instruction on the state; records frame stores into `facts` when non-null.
void transfer(csh handle, const cs_insn* insn, SweepState& st, ResumeCodeFacts* facts) {
  const cs_x86& x = insn->detail->x86;
  unsigned id = insn->id;
  if (id == X86_INS_CALL) {
    clobber_call(st);
    return;
  }
  if (id == X86_INS_PUSH) return;
  bool is_mov = id == X86_INS_MOV || id == X86_INS_MOVABS;
  if (x.op_count == 2) {
    const cs_x86_op& dst = x.operands[0];
    const cs_x86_op& src = x.operands[1];
    note_first_frame_load(handle, id, dst, src, st, facts);
    if (is_mov && dst.type == X86_OP_MEM && dst.mem.index == X86_REG_INVALID) {
      transfer_store(handle, insn, dst, src, st, facts);
      return;
    }
    if (dst.type == X86_OP_REG && transfer_to_register(handle, insn, dst, src, st)) return;
  }
  forget_written_regs(handle, insn, st);
}

std::optional<uint64_t> direct_target(const cs_insn* insn) {
  const cs_x86& x = insn->detail->x86;
  if (x.op_count == 1 && x.operands[0].type == X86_OP_IMM) {
    return static_cast<uint64_t>(x.operands[0].imm);
  }
  return std::nullopt;
}

bool is_jump(const cs_insn* insn) {
  for (uint8_t g = 0; g < insn->detail->groups_count; ++g) {
    if (insn->detail->groups[g] == CS_GRP_JUMP) return true;
  }
  return false;
}

// The first frame field read on the way from the entry: breadth-first over the blocks, nearer
// blocks first, lower addresses first among equals. Address order alone is not enough: Clang -O0
// puts the index dispatch at the end of the function, after loads of locals through frame + k
// pointers. Falls back to the first read in address order when no reachable block reads one.
std::optional<std::pair<uint32_t, uint8_t>> first_load_from_entry(
    const std::vector<std::vector<size_t>>& preds,
    const std::vector<std::optional<std::pair<uint32_t, uint8_t>>>& block_load) {
  const size_t nb = block_load.size();
  std::vector<std::set<size_t>> succs(nb);
  for (size_t b = 0; b < nb; ++b) {
    for (size_t p : preds[b]) succs[p].insert(b);
  }
  std::vector<bool> seen(nb, false);
  std::vector<size_t> queue{0};
  seen[0] = true;
  for (size_t q = 0; q < queue.size(); ++q) {
    size_t b = queue[q];
    if (block_load[b]) return block_load[b];
    for (size_t s : succs[b]) {
      if (!seen[s]) {
        seen[s] = true;
        queue.push_back(s);
      }
    }
  }
  for (const auto& load : block_load) {
    if (load) return load;
  }
  return std::nullopt;
}

// The function's basic blocks and, for each, the blocks that can flow into it.
struct ControlFlow {
  size_t n = 0;                            // instructions
  std::map<uint64_t, size_t> at;           // address -> instruction index
  std::vector<size_t> block_start;         // first instruction of each block
  std::vector<size_t> block_of;            // instruction index -> block
  std::vector<std::vector<size_t>> preds;  // block -> predecessor blocks
  size_t blocks() const { return block_start.size(); }
  size_t block_end(size_t b) const { return b + 1 < blocks() ? block_start[b + 1] : n; }
};

// Blocks start at the entry, after every jump or block end, and at every direct jump target.
void find_blocks(const std::vector<cs_insn>& insns, ControlFlow& cfg) {
  const size_t n = insns.size();
  std::vector<bool> leader(n, false);
  leader[0] = true;
  for (size_t i = 0; i < n; ++i) {
    const cs_insn* in = &insns[i];
    if (!is_jump(in) && !ends_block(in->id)) continue;
    if (i + 1 < n) leader[i + 1] = true;
    if (auto t = direct_target(in)) {
      auto it = cfg.at.find(*t);
      if (it != cfg.at.end()) leader[it->second] = true;
    }
  }
  cfg.block_of.resize(n);
  for (size_t i = 0; i < n; ++i) {
    if (leader[i]) cfg.block_start.push_back(i);
    cfg.block_of[i] = cfg.block_start.size() - 1;
  }
}

ControlFlow build_control_flow(const std::vector<cs_insn>& insns) {
  ControlFlow cfg;
  cfg.n = insns.size();
  for (size_t i = 0; i < cfg.n; ++i) cfg.at.emplace(insns[i].address, i);
  find_blocks(insns, cfg);
  const size_t nb = cfg.blocks();
  cfg.preds.resize(nb);
  auto only_padding = [&](size_t b) {
    for (size_t i = cfg.block_start[b]; i < cfg.block_end(b); ++i) {
      if (insns[i].id != X86_INS_NOP && insns[i].id != X86_INS_INT3) return false;
    }
    return true;
  };
  for (size_t b = 0; b < nb; ++b) {
    const cs_insn* last = &insns[cfg.block_end(b) - 1];
    bool unconditional = ends_block(last->id);
    // Alignment padding after a ret is never executed: it must not feed the next block.
    if (!unconditional && b + 1 < nb && !only_padding(b)) cfg.preds[b + 1].push_back(b);
    if (is_jump(last)) {
      if (auto t = direct_target(last)) {
        auto it = cfg.at.find(*t);
        if (it != cfg.at.end()) cfg.preds[cfg.block_of[it->second]].push_back(b);
      }
    }
  }
  return cfg;
}

std::optional<SweepState> orphan_state(const std::optional<SweepState>& first) {
  if (!first) return std::nullopt;
  SweepState st;
  st.frame_regs = first->frame_regs;
  st.frame_slots = first->frame_slots;
  st.frame_marker = first->frame_marker;
  return st;
}

// The state at a block's entry: the meet of its predecessors' exits. The entry block starts
// with %rdi = frame whatever jumps there: a jump to the function's start is a new activation
// (Clang turns symmetric transfer to itself into one). A block with no known way in is a
// jump-table target or an exception landing pad; both see the registers as they were after the
// prologue (the unwinder restores callee-saved ones), so they start from the entry block's
// frame registers and spill slots.
std::optional<SweepState> in_state(const ControlFlow& cfg,
                                   const std::vector<std::optional<SweepState>>& out, size_t b,
                                   uint64_t frame_marker) {
  std::optional<SweepState> in;
  if (b == 0) {
    SweepState entry;
    if (frame_marker == 0) entry.frame_regs[X86_REG_RDI] = 0;
    entry.frame_marker = frame_marker;
    in = entry;
  }
  for (size_t p : cfg.preds[b]) {
    if (b == 0 || !out[p]) continue;
    in = in ? meet(*in, *out[p]) : *out[p];
  }
  if (!in) in = orphan_state(out[0]);
  return in;
}

// Iterates the blocks' exit states to a fixed point (at most 64 rounds).
std::vector<std::optional<SweepState>> settle_exit_states(csh handle,
                                                          const std::vector<cs_insn>& insns,
                                                          const ControlFlow& cfg,
                                                          uint64_t frame_marker) {
  const size_t nb = cfg.blocks();
  std::vector<std::optional<SweepState>> out(nb);
  for (int round = 0; round < 64; ++round) {
    bool changed = false;
    for (size_t b = 0; b < nb; ++b) {
      std::optional<SweepState> in = in_state(cfg, out, b, frame_marker);
      if (!in) {
        if (out[b]) changed = true;
        out[b].reset();
        continue;
      }
      SweepState st = *in;
      for (size_t i = cfg.block_start[b]; i < cfg.block_end(b); ++i)
        transfer(handle, &insns[i], st, nullptr);
      if (!out[b] || !same_state(*out[b], st)) {
        out[b] = st;
        changed = true;
      }
    }
    if (!changed) break;
  }
  return out;
}

// The instruction list callers walk: calls, block ends, direct targets, and which instructions
// a jump lands on.
void record_instructions(const std::vector<cs_insn>& insns, const ControlFlow& cfg,
                         ResumeCodeFacts* facts) {
  const size_t n = insns.size();
  for (size_t i = 0; i < n; ++i) {
    auto t = (insns[i].id == X86_INS_CALL || is_jump(&insns[i])) ? direct_target(&insns[i])
                                                                 : std::nullopt;
    facts->instructions.push_back({insns[i].address, insns[i].id == X86_INS_CALL,
                                   ends_block(insns[i].id), insns[i].id == X86_INS_JMP,
                                   t.value_or(0), false});
  }
  for (size_t i = 0; i < n; ++i) {
    if (facts->instructions[i].target == 0 || facts->instructions[i].is_call) continue;
    auto it = cfg.at.find(facts->instructions[i].target);
    if (it != cfg.at.end()) facts->instructions[it->second].is_join = true;
  }
}

// Forward dataflow over the function's control-flow graph: the state at a block's entry is the
// meet of its predecessors' exits, so a frame pointer copied to a callee-saved register in the
// prologue is still known at every resume point.
void analyze(csh handle, const std::vector<cs_insn>& insns, uint64_t frame_marker,
             ResumeCodeFacts* facts) {
  if (insns.empty()) return;
  const ControlFlow cfg = build_control_flow(insns);
  const size_t nb = cfg.blocks();
  const std::vector<std::optional<SweepState>> out =
      settle_exit_states(handle, insns, cfg, frame_marker);
  // Final pass with the settled entry states, recording stores and each block's first frame load.
  std::vector<std::optional<std::pair<uint32_t, uint8_t>>> block_load(nb);
  for (size_t b = 0; b < nb; ++b) {
    std::optional<SweepState> in = in_state(cfg, out, b, frame_marker);
    if (!in) continue;
    SweepState st = *in;
    facts->first_frame_load.reset();
    for (size_t i = cfg.block_start[b]; i < cfg.block_end(b); ++i)
      transfer(handle, &insns[i], st, facts);
    block_load[b] = facts->first_frame_load;
  }
  facts->first_frame_load = first_load_from_entry(cfg.preds, block_load);
  record_instructions(insns, cfg, facts);
}

}  // namespace

namespace {

ResumeCodeFacts analyze_code(const uint8_t* code, size_t len, uint64_t vaddr,
                             uint64_t frame_marker) {
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
  analyze(handle, insns, frame_marker, &facts);
  for (auto& [ptr, count] : chunks) cs_free(ptr, count);
  cs_close(&handle);
  return facts;
}

}  // namespace

ResumeCodeFacts analyze_resume_code(const uint8_t* code, size_t len, uint64_t vaddr) {
  return analyze_code(code, len, vaddr, 0);
}

ResumeCodeFacts analyze_ramp_code(const uint8_t* code, size_t len, uint64_t vaddr,
                                  uint64_t resume_vaddr) {
  return analyze_code(code, len, vaddr, resume_vaddr);
}

std::optional<std::pair<uint32_t, uint8_t>> guess_index_field(const ResumeCodeFacts& facts) {
  std::map<std::pair<uint32_t, uint8_t>, std::set<int64_t>> values;
  for (const auto& s : facts.stores) {
    if (s.offset < 16 || s.width > 4 || s.value < 0 || s.value > 0xffff) continue;
    values[{s.offset, s.width}].insert(s.value);
  }
  // The resume function dispatches on the index before anything else, so the first frame field
  // it reads is the index whenever constants are stored there too.
  if (facts.first_frame_load) {
    for (const auto& [field, vals] : values) {
      if (field.first == facts.first_frame_load->first) return field;
    }
  }
  std::optional<std::pair<uint32_t, uint8_t>> best;
  size_t best_count = 0;
  for (const auto& [field, vals] : values) {
    if (vals.size() > best_count) {
      best_count = vals.size();
      best = field;
    }
  }
  return best;
}

}  // namespace asyncprobe::symbolizer
