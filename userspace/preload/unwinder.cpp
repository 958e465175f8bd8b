#include "userspace/preload/unwinder.h"

#include <cstring>

#include "userspace/preload/modules.h"
#include "userspace/preload/signal_safe.h"

namespace asyncprobe::preload {

namespace {

// Safe reads through a small cache: CFI parsing reads byte by byte.
class Mem {
 public:
  bool read(uint64_t addr, void* out, size_t n) {
    auto* dst = static_cast<unsigned char*>(out);
    while (n > 0) {
      uint64_t base = addr & ~uint64_t{kBlock - 1};
      Slot* s = lookup(base);
      if (s == nullptr) return false;
      size_t off = static_cast<size_t>(addr - base);
      size_t take = kBlock - off < n ? kBlock - off : n;
      std::memcpy(dst, s->bytes + off, take);
      dst += take;
      addr += take;
      n -= take;
    }
    return true;
  }
  bool u8(uint64_t& at, uint8_t* v) { return fixed(at, v); }
  bool u16(uint64_t& at, uint16_t* v) { return fixed(at, v); }
  bool u32(uint64_t& at, uint32_t* v) { return fixed(at, v); }
  bool u64(uint64_t& at, uint64_t* v) { return fixed(at, v); }
  bool uleb(uint64_t& at, uint64_t* v) {
    uint64_t result = 0;
    for (int shift = 0; shift < 70; shift += 7) {
      uint8_t b;
      if (!u8(at, &b)) return false;
      if (shift < 64) result |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) {
        *v = result;
        return true;
      }
    }
    return false;
  }
  bool sleb(uint64_t& at, int64_t* v) {
    uint64_t result = 0;
    int shift = 0;
    uint8_t b = 0;
    do {
      if (shift >= 70 || !u8(at, &b)) return false;
      if (shift < 64) result |= static_cast<uint64_t>(b & 0x7f) << shift;
      shift += 7;
    } while ((b & 0x80) != 0);
    if (shift < 64 && (b & 0x40) != 0) result |= ~uint64_t{0} << shift;
    *v = static_cast<int64_t>(result);
    return true;
  }
  // A DW_EH_PE-encoded pointer. `data_base` serves DW_EH_PE_datarel.
  bool encoded(uint64_t& at, uint8_t enc, uint64_t data_base, uint64_t* out) {
    if (enc == 0xff) return false;  // DW_EH_PE_omit
    uint64_t field = at;
    uint64_t v = 0;
    switch (enc & 0x0f) {
      case 0x00: {
        uint64_t x;
        if (!u64(at, &x)) return false;
        v = x;
        break;
      }
      case 0x01:
        if (!uleb(at, &v)) return false;
        break;
      case 0x02: {
        uint16_t x;
        if (!u16(at, &x)) return false;
        v = x;
        break;
      }
      case 0x03: {
        uint32_t x;
        if (!u32(at, &x)) return false;
        v = x;
        break;
      }
      case 0x04: {
        uint64_t x;
        if (!u64(at, &x)) return false;
        v = x;
        break;
      }
      case 0x09: {
        int64_t x;
        if (!sleb(at, &x)) return false;
        v = static_cast<uint64_t>(x);
        break;
      }
      case 0x0a: {
        uint16_t x;
        if (!u16(at, &x)) return false;
        v = static_cast<uint64_t>(static_cast<int64_t>(static_cast<int16_t>(x)));
        break;
      }
      case 0x0b: {
        uint32_t x;
        if (!u32(at, &x)) return false;
        v = static_cast<uint64_t>(static_cast<int64_t>(static_cast<int32_t>(x)));
        break;
      }
      case 0x0c: {
        uint64_t x;
        if (!u64(at, &x)) return false;
        v = x;
        break;
      }
      default:
        return false;
    }
    switch (enc & 0x70) {
      case 0x00:
        break;
      case 0x10:
        v += field;
        break;  // pcrel
      case 0x30:
        v += data_base;
        break;  // datarel
      default:
        return false;  // textrel / funcrel / aligned: not used on x86-64
    }
    if ((enc & 0x80) != 0) {  // indirect
      uint64_t x;
      if (!read(v, &x, sizeof x)) return false;
      v = x;
    }
    *out = v;
    return true;
  }

 private:
  static constexpr size_t kBlock = 256;
  static constexpr int kSlots = 8;
  struct Slot {
    uint64_t base = 0;
    bool valid = false;
    unsigned char bytes[kBlock];
  };
  template <typename T>
  bool fixed(uint64_t& at, T* v) {
    if (!read(at, v, sizeof(T))) return false;
    at += sizeof(T);
    return true;
  }
  Slot* lookup(uint64_t base) {
    for (auto& s : slots_) {
      if (s.valid && s.base == base) return &s;
    }
    Slot& s = slots_[next_];
    next_ = (next_ + 1) % kSlots;
    s.valid = false;
    if (!safe_read(base, s.bytes, kBlock)) {
      // The block may straddle the end of a mapping: fall back to what the caller needs.
      return nullptr;
    }
    s.base = base;
    s.valid = true;
    return &s;
  }
  Slot slots_[kSlots];
  int next_ = 0;
};

// Reads that fail at a block boundary (the last bytes of a mapping) retry unaligned.
bool read_bytes(Mem& mem, uint64_t addr, void* out, size_t n) {
  return mem.read(addr, out, n) || safe_read(addr, out, n);
}

enum class RuleKind : uint8_t {
  kUndefined,
  kSame,
  kOffset,
  kValOffset,
  kRegister,
  kExpr,
  kValExpr
};

struct Rule {
  RuleKind kind = RuleKind::kUndefined;
  int64_t value = 0;  // offset, or register number
  uint64_t expr = 0;  // expression address
  uint64_t expr_len = 0;
};

struct CfaRule {
  bool is_expr = false;
  int reg = kRsp;
  int64_t offset = 8;
  uint64_t expr = 0;
  uint64_t expr_len = 0;
};

struct RowState {
  CfaRule cfa;
  Rule regs[kRegCount];
};

struct Cie {
  uint64_t code_align = 1;
  int64_t data_align = -8;
  uint64_t ra_reg = kRip;
  uint8_t fde_enc = 0;
  bool has_aug_data = false;
  bool signal_frame = false;
  uint64_t insns = 0, insns_end = 0;
};

struct Fde {
  uint64_t pc_begin = 0, pc_end = 0;
  uint64_t insns = 0, insns_end = 0;
  Cie cie;
};

bool parse_cie(Mem& mem, uint64_t at, Cie* cie) {
  uint32_t len32;
  if (!mem.u32(at, &len32) || len32 == 0) return false;
  uint64_t len = len32;
  if (len32 == 0xffffffffu && !mem.u64(at, &len)) return false;
  uint64_t end = at + len;
  uint32_t id;
  if (!mem.u32(at, &id) || id != 0) return false;
  uint8_t version;
  if (!mem.u8(at, &version)) return false;
  char aug[16];
  size_t n = 0;
  for (;;) {
    uint8_t c;
    if (!mem.u8(at, &c)) return false;
    if (c == 0) break;
    if (n + 1 >= sizeof aug) return false;
    aug[n++] = static_cast<char>(c);
  }
  aug[n] = '\0';
  size_t ai = 0;
  if (n >= 2 && aug[0] == 'e' && aug[1] == 'h') {
    at += 8;
    ai = 2;
  }
  if (!mem.uleb(at, &cie->code_align) || !mem.sleb(at, &cie->data_align)) return false;
  if (version == 1) {
    uint8_t r;
    if (!mem.u8(at, &r)) return false;
    cie->ra_reg = r;
  } else if (!mem.uleb(at, &cie->ra_reg)) {
    return false;
  }
  if (ai < n && aug[ai] == 'z') {
    cie->has_aug_data = true;
    uint64_t aug_len;
    if (!mem.uleb(at, &aug_len)) return false;
    uint64_t aug_end = at + aug_len;
    for (++ai; ai < n; ++ai) {
      switch (aug[ai]) {
        case 'R':
          if (!mem.u8(at, &cie->fde_enc)) return false;
          break;
        case 'L': {
          uint8_t e;
          if (!mem.u8(at, &e)) return false;
          break;
        }
        case 'P': {
          uint8_t e;
          uint64_t ignored;
          if (!mem.u8(at, &e) || !mem.encoded(at, e, 0, &ignored)) {
            // An unreadable personality pointer does not matter to unwinding; skip the rest.
            at = aug_end;
            ai = n;
          }
          break;
        }
        case 'S':
          cie->signal_frame = true;
          break;
        default:
          break;
      }
    }
    at = aug_end;
  }
  cie->insns = at;
  cie->insns_end = end;
  return at <= end;
}

bool parse_fde(Mem& mem, uint64_t fde, Fde* out) {
  uint64_t at = fde;
  uint32_t len32;
  if (!mem.u32(at, &len32) || len32 == 0) return false;
  uint64_t len = len32;
  if (len32 == 0xffffffffu && !mem.u64(at, &len)) return false;
  uint64_t end = at + len;
  uint64_t id_field = at;
  uint32_t cie_ptr;
  if (!mem.u32(at, &cie_ptr) || cie_ptr == 0) return false;
  if (!parse_cie(mem, id_field - cie_ptr, &out->cie)) return false;
  uint64_t begin, range;
  if (!mem.encoded(at, out->cie.fde_enc, 0, &begin)) return false;
  if (!mem.encoded(at, out->cie.fde_enc & 0x0f, 0, &range)) return false;
  if (out->cie.has_aug_data) {
    uint64_t aug_len;
    if (!mem.uleb(at, &aug_len)) return false;
    at += aug_len;
  }
  out->pc_begin = begin;
  out->pc_end = begin + range;
  out->insns = at;
  out->insns_end = end;
  return at <= end;
}

// Binary search of the module's .eh_frame_hdr table.
bool find_fde(Mem& mem, const ModuleRecord& m, uint64_t pc, Fde* out) {
  if (m.eh_frame_hdr == 0) return false;
  uint64_t hdr = m.eh_frame_hdr;
  uint8_t h[4];
  if (!read_bytes(mem, hdr, h, 4) || h[0] != 1) return false;
  uint64_t at = hdr + 4;
  uint64_t eh_frame, count;
  if (!mem.encoded(at, h[1], hdr, &eh_frame) || !mem.encoded(at, h[2], hdr, &count)) return false;
  if (h[3] != 0x3b || count == 0 || count > (1u << 28)) return false;  // datarel | sdata4
  uint64_t table = at;
  uint64_t lo = 0, hi = count;
  while (lo < hi) {
    uint64_t mid = lo + (hi - lo) / 2;
    int32_t loc;
    if (!read_bytes(mem, table + mid * 8, &loc, 4)) return false;
    if (hdr + static_cast<uint64_t>(static_cast<int64_t>(loc)) <= pc) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo == 0) return false;
  int32_t fde_rel;
  if (!read_bytes(mem, table + (lo - 1) * 8 + 4, &fde_rel, 4)) return false;
  if (!parse_fde(mem, hdr + static_cast<uint64_t>(static_cast<int64_t>(fde_rel)), out))
    return false;
  return pc >= out->pc_begin && pc < out->pc_end;
}

// Runs a CIE's or FDE's call-frame program up to `target` (exclusive once an advance passes it).
bool run_cfa_program(Mem& mem, const Fde& fde, uint64_t begin, uint64_t end, uint64_t target,
                     const RowState& initial, RowState* row) {
  constexpr int kMaxRemembered = 8;
  RowState stack[kMaxRemembered];
  int depth = 0;
  uint64_t loc = fde.pc_begin;
  uint64_t at = begin;
  const int64_t da = fde.cie.data_align;
  const uint64_t ca = fde.cie.code_align;
  auto reg_ok = [](uint64_t r) { return r < static_cast<uint64_t>(kRegCount); };
  int steps = 0;
  while (at < end && steps++ < 10000) {
    uint8_t op;
    if (!mem.u8(at, &op)) return false;
    uint8_t hi = op & 0xc0;
    uint8_t lo = op & 0x3f;
    if (hi == 0x40) {
      loc += lo * ca;
      if (loc > target) return true;
      continue;
    }
    if (hi == 0x80) {
      uint64_t off;
      if (!mem.uleb(at, &off)) return false;
      if (reg_ok(lo)) row->regs[lo] = Rule{RuleKind::kOffset, static_cast<int64_t>(off) * da, 0, 0};
      continue;
    }
    if (hi == 0xc0) {
      if (reg_ok(lo)) row->regs[lo] = initial.regs[lo];
      continue;
    }
    uint64_t reg = 0, u = 0;
    int64_t s = 0;
    switch (op) {
      case 0x00:
        break;
      case 0x01: {
        if (!mem.encoded(at, fde.cie.fde_enc, 0, &loc)) return false;
        if (loc > target) return true;
        break;
      }
      case 0x02: {
        uint8_t d;
        if (!mem.u8(at, &d)) return false;
        loc += d * ca;
        if (loc > target) return true;
        break;
      }
      case 0x03: {
        uint16_t d;
        if (!mem.u16(at, &d)) return false;
        loc += d * ca;
        if (loc > target) return true;
        break;
      }
      case 0x04: {
        uint32_t d;
        if (!mem.u32(at, &d)) return false;
        loc += d * ca;
        if (loc > target) return true;
        break;
      }
      case 0x05:
        if (!mem.uleb(at, &reg) || !mem.uleb(at, &u)) return false;
        if (reg_ok(reg))
          row->regs[reg] = Rule{RuleKind::kOffset, static_cast<int64_t>(u) * da, 0, 0};
        break;
      case 0x06:
        if (!mem.uleb(at, &reg)) return false;
        if (reg_ok(reg)) row->regs[reg] = initial.regs[reg];
        break;
      case 0x07:
        if (!mem.uleb(at, &reg)) return false;
        if (reg_ok(reg)) row->regs[reg] = Rule{RuleKind::kUndefined, 0, 0, 0};
        break;
      case 0x08:
        if (!mem.uleb(at, &reg)) return false;
        if (reg_ok(reg)) row->regs[reg] = Rule{RuleKind::kSame, 0, 0, 0};
        break;
      case 0x09:
        if (!mem.uleb(at, &reg) || !mem.uleb(at, &u)) return false;
        if (reg_ok(reg)) row->regs[reg] = Rule{RuleKind::kRegister, static_cast<int64_t>(u), 0, 0};
        break;
      case 0x0a:
        if (depth >= kMaxRemembered) return false;
        stack[depth++] = *row;
        break;
      case 0x0b:
        // The CFA rule is part of the remembered row: epilogues rely on getting it back.
        if (depth == 0) return false;
        *row = stack[--depth];
        break;
      case 0x0c:
        if (!mem.uleb(at, &reg) || !mem.uleb(at, &u)) return false;
        row->cfa = CfaRule{false, static_cast<int>(reg), static_cast<int64_t>(u), 0, 0};
        break;
      case 0x0d:
        if (!mem.uleb(at, &reg)) return false;
        row->cfa.is_expr = false;
        row->cfa.reg = static_cast<int>(reg);
        break;
      case 0x0e:
        if (!mem.uleb(at, &u)) return false;
        row->cfa.is_expr = false;
        row->cfa.offset = static_cast<int64_t>(u);
        break;
      case 0x0f:
        if (!mem.uleb(at, &u)) return false;
        row->cfa.is_expr = true;
        row->cfa.expr = at;
        row->cfa.expr_len = u;
        at += u;
        break;
      case 0x10:
      case 0x16:
        if (!mem.uleb(at, &reg) || !mem.uleb(at, &u)) return false;
        if (reg_ok(reg))
          row->regs[reg] = Rule{op == 0x10 ? RuleKind::kExpr : RuleKind::kValExpr, 0, at, u};
        at += u;
        break;
      case 0x11:
        if (!mem.uleb(at, &reg) || !mem.sleb(at, &s)) return false;
        if (reg_ok(reg)) row->regs[reg] = Rule{RuleKind::kOffset, s * da, 0, 0};
        break;
      case 0x12:
        if (!mem.uleb(at, &reg) || !mem.sleb(at, &s)) return false;
        row->cfa = CfaRule{false, static_cast<int>(reg), s * da, 0, 0};
        break;
      case 0x13:
        if (!mem.sleb(at, &s)) return false;
        row->cfa.is_expr = false;
        row->cfa.offset = s * da;
        break;
      case 0x14:
        if (!mem.uleb(at, &reg) || !mem.uleb(at, &u)) return false;
        if (reg_ok(reg))
          row->regs[reg] = Rule{RuleKind::kValOffset, static_cast<int64_t>(u) * da, 0, 0};
        break;
      case 0x15:
        if (!mem.uleb(at, &reg) || !mem.sleb(at, &s)) return false;
        if (reg_ok(reg)) row->regs[reg] = Rule{RuleKind::kValOffset, s * da, 0, 0};
        break;
      case 0x2e:
        if (!mem.uleb(at, &u)) return false;
        break;
      case 0x2f:
        if (!mem.uleb(at, &reg) || !mem.uleb(at, &u)) return false;
        if (reg_ok(reg))
          row->regs[reg] = Rule{RuleKind::kOffset, -static_cast<int64_t>(u) * da, 0, 0};
        break;
      default:
        return false;
    }
  }
  return true;
}

// A DWARF expression as call-frame rules use it (stack machine, bounded).
bool eval_expr(Mem& mem, uint64_t at, uint64_t len, const RegState& regs, bool push_cfa,
               uint64_t cfa, uint64_t* out) {
  uint64_t st[16];
  int sp = 0;
  auto push = [&](uint64_t v) {
    if (sp >= 16) return false;
    st[sp++] = v;
    return true;
  };
  if (push_cfa && !push(cfa)) return false;
  uint64_t end = at + len;
  int steps = 0;
  while (at < end) {
    if (++steps > 64) return false;
    uint8_t op;
    if (!mem.u8(at, &op)) return false;
    if (op >= 0x30 && op <= 0x4f) {
      if (!push(op - 0x30u)) return false;
      continue;
    }
    if (op >= 0x70 && op <= 0x8f) {
      int r = op - 0x70;
      int64_t off;
      if (!mem.sleb(at, &off) || r >= kRegCount || !regs.has(r)) return false;
      if (!push(regs.get(r) + static_cast<uint64_t>(off))) return false;
      continue;
    }
    uint64_t a = 0, b = 0;
    auto pop2 = [&]() {
      if (sp < 2) return false;
      b = st[--sp];
      a = st[--sp];
      return true;
    };
    switch (op) {
      case 0x06: {
        if (sp < 1) return false;
        uint64_t v;
        if (!read_bytes(mem, st[sp - 1], &v, 8)) return false;
        st[sp - 1] = v;
        break;
      }
      case 0x08: {
        uint8_t v;
        if (!mem.u8(at, &v) || !push(v)) return false;
        break;
      }
      case 0x09: {
        uint8_t v;
        if (!mem.u8(at, &v) ||
            !push(static_cast<uint64_t>(static_cast<int64_t>(static_cast<int8_t>(v)))))
          return false;
        break;
      }
      case 0x0a: {
        uint16_t v;
        if (!mem.u16(at, &v) || !push(v)) return false;
        break;
      }
      case 0x0b: {
        uint16_t v;
        if (!mem.u16(at, &v) ||
            !push(static_cast<uint64_t>(static_cast<int64_t>(static_cast<int16_t>(v)))))
          return false;
        break;
      }
      case 0x0c: {
        uint32_t v;
        if (!mem.u32(at, &v) || !push(v)) return false;
        break;
      }
      case 0x0d: {
        uint32_t v;
        if (!mem.u32(at, &v) ||
            !push(static_cast<uint64_t>(static_cast<int64_t>(static_cast<int32_t>(v)))))
          return false;
        break;
      }
      case 0x0e:
      case 0x0f: {
        uint64_t v;
        if (!mem.u64(at, &v) || !push(v)) return false;
        break;
      }
      case 0x10: {
        uint64_t v;
        if (!mem.uleb(at, &v) || !push(v)) return false;
        break;
      }
      case 0x11: {
        int64_t v;
        if (!mem.sleb(at, &v) || !push(static_cast<uint64_t>(v))) return false;
        break;
      }
      case 0x12:
        if (sp < 1 || !push(st[sp - 1])) return false;
        break;
      case 0x13:
        if (sp < 1) return false;
        --sp;
        break;
      case 0x14:
        if (sp < 2 || !push(st[sp - 2])) return false;
        break;
      case 0x16:
        if (sp < 2) return false;
        a = st[sp - 1];
        st[sp - 1] = st[sp - 2];
        st[sp - 2] = a;
        break;
      case 0x1a:
        if (!pop2() || !push(a & b)) return false;
        break;
      case 0x1c:
        if (!pop2() || !push(a - b)) return false;
        break;
      case 0x1e:
        if (!pop2() || !push(a * b)) return false;
        break;
      case 0x21:
        if (!pop2() || !push(a | b)) return false;
        break;
      case 0x22:
        if (!pop2() || !push(a + b)) return false;
        break;
      case 0x23: {
        uint64_t v;
        if (sp < 1 || !mem.uleb(at, &v)) return false;
        st[sp - 1] += v;
        break;
      }
      case 0x24:
        if (!pop2() || !push(b >= 64 ? 0 : a << b)) return false;
        break;
      case 0x25:
        if (!pop2() || !push(b >= 64 ? 0 : a >> b)) return false;
        break;
      case 0x26:
        if (!pop2() || !push(static_cast<uint64_t>(static_cast<int64_t>(a) >> (b >= 64 ? 63 : b))))
          return false;
        break;
      case 0x27:
        if (!pop2() || !push(a ^ b)) return false;
        break;
      case 0x29:
        if (!pop2() || !push(a == b)) return false;
        break;
      case 0x2a:
        if (!pop2() || !push(static_cast<int64_t>(a) >= static_cast<int64_t>(b))) return false;
        break;
      case 0x2b:
        if (!pop2() || !push(static_cast<int64_t>(a) > static_cast<int64_t>(b))) return false;
        break;
      case 0x2c:
        if (!pop2() || !push(static_cast<int64_t>(a) <= static_cast<int64_t>(b))) return false;
        break;
      case 0x2d:
        if (!pop2() || !push(static_cast<int64_t>(a) < static_cast<int64_t>(b))) return false;
        break;
      case 0x2e:
        if (!pop2() || !push(a != b)) return false;
        break;
      case 0x92: {
        uint64_t r;
        int64_t off;
        if (!mem.uleb(at, &r) || !mem.sleb(at, &off) || r >= kRegCount ||
            !regs.has(static_cast<int>(r)))
          return false;
        if (!push(regs.get(static_cast<int>(r)) + static_cast<uint64_t>(off))) return false;
        break;
      }
      case 0x96:
        break;
      default:
        return false;
    }
  }
  if (sp < 1) return false;
  *out = st[sp - 1];
  return true;
}

bool is_callee_saved(int r) {
  return r == kRbx || r == kRbp || r == kR12 || r == kR13 || r == kR14 || r == kR15;
}

// One CFI step. `lookup_pc` is the pc used to find the row (pc - 1 for return addresses).
bool cfi_step(Mem& mem, const ModuleRecord& m, uint64_t lookup_pc, const RegState& cur,
              RegState* caller, uint64_t* cfa_out, bool* caller_is_signal_frame) {
  Fde fde;
  if (!find_fde(mem, m, lookup_pc, &fde)) return false;
  RowState initial;
  initial.cfa = CfaRule{false, kRsp, 8, 0, 0};
  for (int r = 0; r < kRegCount; ++r) {
    initial.regs[r].kind = is_callee_saved(r) ? RuleKind::kSame : RuleKind::kUndefined;
  }
  RowState cie_row = initial;
  if (!run_cfa_program(mem, fde, fde.cie.insns, fde.cie.insns_end, ~uint64_t{0}, initial,
                       &cie_row)) {
    return false;
  }
  RowState row = cie_row;
  if (!run_cfa_program(mem, fde, fde.insns, fde.insns_end, lookup_pc, cie_row, &row)) return false;
  uint64_t cfa = 0;
  if (row.cfa.is_expr) {
    if (!eval_expr(mem, row.cfa.expr, row.cfa.expr_len, cur, false, 0, &cfa)) return false;
  } else {
    if (row.cfa.reg < 0 || row.cfa.reg >= kRegCount || !cur.has(row.cfa.reg)) return false;
    cfa = cur.get(row.cfa.reg) + static_cast<uint64_t>(row.cfa.offset);
  }
  RegState next;
  for (int r = 0; r < kRegCount; ++r) {
    const Rule& rule = row.regs[r];
    uint64_t v = 0;
    switch (rule.kind) {
      case RuleKind::kUndefined:
        break;
      case RuleKind::kSame:
        if (cur.has(r)) next.set(r, cur.get(r));
        break;
      case RuleKind::kOffset:
        if (read_bytes(mem, cfa + static_cast<uint64_t>(rule.value), &v, 8)) next.set(r, v);
        break;
      case RuleKind::kValOffset:
        next.set(r, cfa + static_cast<uint64_t>(rule.value));
        break;
      case RuleKind::kRegister:
        if (rule.value >= 0 && rule.value < kRegCount && cur.has(static_cast<int>(rule.value))) {
          next.set(r, cur.get(static_cast<int>(rule.value)));
        }
        break;
      case RuleKind::kExpr: {
        uint64_t addr;
        if (eval_expr(mem, rule.expr, rule.expr_len, cur, true, cfa, &addr) &&
            read_bytes(mem, addr, &v, 8)) {
          next.set(r, v);
        }
        break;
      }
      case RuleKind::kValExpr:
        if (eval_expr(mem, rule.expr, rule.expr_len, cur, true, cfa, &v)) next.set(r, v);
        break;
    }
  }
  uint64_t ra_reg = fde.cie.ra_reg;
  if (ra_reg >= static_cast<uint64_t>(kRegCount) || !next.has(static_cast<int>(ra_reg)))
    return false;
  uint64_t ra = next.get(static_cast<int>(ra_reg));
  next.valid &= ~(1u << kRip);
  next.set(kRip, ra);
  if (!next.has(kRsp)) next.set(kRsp, cfa);
  *caller = next;
  *cfa_out = cfa;
  *caller_is_signal_frame = false;
  // The frame we step *into* is a signal trampoline when its CIE says 'S'; its pc is then exact.
  Fde caller_fde;
  if (const ModuleRecord* cm = Modules::by_code(ra)) {
    if (find_fde(mem, *cm, ra, &caller_fde) && caller_fde.cie.signal_frame)
      *caller_is_signal_frame = true;
  }
  return true;
}

}  // namespace

size_t unwind_stack(const RegState& start, bool start_exact, StackFrame* out, size_t max) {
  if (max == 0) return 0;
  Mem mem;
  size_t n = 0;
  RegState cur = start;
  bool exact = start_exact;
  while (n < max) {
    uint64_t pc = cur.get(kRip);
    if (!cur.has(kRip) || pc == 0) break;
    StackFrame& f = out[n++];
    f = StackFrame{};
    f.pc = pc;
    f.pc_exact = exact;
    f.sp = cur.has(kRsp) ? cur.get(kRsp) : 0;
    f.regs = cur;
    if (n == max) break;
    uint64_t lookup = exact ? pc : pc - 1;
    const ModuleRecord* m = Modules::by_code(lookup);
    RegState next;
    uint64_t cfa = 0;
    bool next_signal = false;
    bool stepped = m != nullptr && cfi_step(mem, *m, lookup, cur, &next, &cfa, &next_signal);
    if (!stepped && m != nullptr && !exact) {
      stepped = cfi_step(mem, *m, pc, cur, &next, &cfa, &next_signal);
    }
    if (!stepped && n == 1 && m == nullptr && cur.has(kRsp)) {
      // A call through a bad pointer: the return address is still on top of the stack.
      uint64_t ra = 0;
      uint64_t sp = cur.get(kRsp);
      if (safe_load(sp, &ra) && Modules::by_code(ra - 1) != nullptr) {
        next = cur;
        next.set(kRip, ra);
        next.set(kRsp, sp + 8);
        cfa = sp + 8;
        stepped = true;
      }
    }
    if (!stepped && cur.has(kRbp) && cur.has(kRsp)) {
      // No unwind table: try the frame-pointer chain, trusting it only while it climbs the stack
      // and lands in known code.
      uint64_t fp = cur.get(kRbp);
      uint64_t words[2];
      if (fp >= cur.get(kRsp) && fp - cur.get(kRsp) < (64u << 20) && (fp & 7) == 0 &&
          safe_read(fp, words, sizeof words) && Modules::by_code(words[1] - 1) != nullptr) {
        next = RegState{};
        next.set(kRbp, words[0]);
        next.set(kRip, words[1]);
        next.set(kRsp, fp + 16);
        cfa = fp + 16;
        stepped = true;
        if (n < max) out[n - 1].via_frame_pointer = true;
      }
    }
    if (!stepped) break;
    f.cfa = cfa;
    // The stack grows down: a caller's sp must be above ours (signal frames switch stacks, so
    // allow any change across them).
    if (next.has(kRsp) && f.sp != 0 && next.get(kRsp) <= f.sp && !next_signal) break;
    cur = next;
    exact = next_signal;
  }
  return n;
}

}  // namespace asyncprobe::preload
