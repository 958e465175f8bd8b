#include "symbolizer/stripped_coroutines.h"
#include "userspace/util/format.h"

#include <capstone/capstone.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "symbolizer/coro_catalog.h"
#include "symbolizer/index_store_finder.h"

namespace asyncprobe::symbolizer {

namespace {

constexpr size_t kStubBytes = 96;
constexpr size_t kResumeBytes = 16384;

struct GccStub {
  uint64_t actor = 0;
  uint32_t index_offset = 0;
};

// GCC's destroy: `orw $0x1,OFF(%rdi); jmp ACTOR` at -O1 and above; at -O0 the same through a
// stack slot, `or $0x1,%eax`, a 16-bit store and a call.
std::optional<GccStub> read_gcc_destroy_stub(const Module& module, uint64_t destroy) {
  std::vector<uint8_t> code;
  if (!module.object().read_code(destroy, kStubBytes, &code) || code.empty()) return std::nullopt;
  csh handle = 0;
  if (cs_open(CS_ARCH_X86, CS_MODE_64, &handle) != CS_ERR_OK) return std::nullopt;
  cs_option(handle, CS_OPT_DETAIL, CS_OPT_ON);
  cs_insn* insn = nullptr;
  size_t n = cs_disasm(handle, code.data(), code.size(), destroy, 24, &insn);
  std::optional<GccStub> out;
  bool saw_or_one = false;
  std::optional<uint32_t> word_store;
  for (size_t i = 0; i < n; ++i) {
    const cs_x86& x = insn[i].detail->x86;
    if (insn[i].id == X86_INS_OR && x.op_count == 2 && x.operands[1].type == X86_OP_IMM &&
        x.operands[1].imm == 1) {
      saw_or_one = true;
      if (x.operands[0].type == X86_OP_MEM && x.operands[0].size == 2) {
        word_store = static_cast<uint32_t>(x.operands[0].mem.disp);
      }
    }
    if (insn[i].id == X86_INS_MOV && x.op_count == 2 && x.operands[0].type == X86_OP_MEM &&
        x.operands[0].size == 2 && saw_or_one && !word_store) {
      word_store = static_cast<uint32_t>(x.operands[0].mem.disp);
    }
    if ((insn[i].id == X86_INS_JMP || insn[i].id == X86_INS_CALL) && x.op_count == 1 &&
        x.operands[0].type == X86_OP_IMM) {
      if (saw_or_one && word_store) {
        out = GccStub{static_cast<uint64_t>(x.operands[0].imm), *word_store};
      }
      break;
    }
    if (insn[i].id == X86_INS_RET) break;
  }
  if (n > 0) cs_free(insn, n);
  cs_close(&handle);
  return out;
}

ResumeCodeFacts facts_of(const Module& module, uint64_t fn, size_t len) {
  std::vector<uint8_t> code;
  if (!module.object().read_code(fn, len, &code)) return {};
  return analyze_resume_code(code.data(), code.size(), fn);
}

bool comment_mentions(const ElfObject& object, const char* needle) {
  for (const auto& sec : object.sections()) {
    if (sec.name != ".comment" || sec.size == 0 || sec.size > (1u << 20)) continue;
    std::vector<char> text(sec.size);
    if (object.read_file(sec.offset, text.data(), text.size()) != text.size()) return false;
    return std::search(text.begin(), text.end(), needle, needle + std::strlen(needle)) !=
           text.end();
  }
  return false;
}

}  // namespace

AddressTakenIndex::AddressTakenIndex(const ElfObject& object) {
  for (const auto& sec : object.sections()) {
    if (sec.type != 1 /* SHT_PROGBITS */ || sec.addr == 0 || sec.size < 7 ||
        sec.size > (1u << 30)) {
      continue;
    }
    bool exec = false;
    for (const auto& seg : object.load_segments()) {
      exec |= (seg.flags & 1) != 0 && sec.addr >= seg.vaddr && sec.addr < seg.vaddr + seg.memsz;
    }
    std::vector<uint8_t> bytes;
    if (!exec || !object.read_code(sec.addr, sec.size, &bytes)) continue;
    // REX.W (+R) 8D modrm(mod 00, rm 101) disp32: lea disp32(%rip), reg. Every byte offset is
    // tried; a false decode only adds an address nobody asks about.
    for (size_t i = 0; i + 7 <= bytes.size(); ++i) {
      if ((bytes[i] != 0x48 && bytes[i] != 0x4c) || bytes[i + 1] != 0x8d ||
          (bytes[i + 2] & 0xc7) != 0x05) {
        continue;
      }
      int32_t disp = 0;
      std::memcpy(&disp, &bytes[i + 3], 4);
      uint64_t at = sec.addr + i;
      sites_[at + 7 + static_cast<int64_t>(disp)].push_back(at);
    }
  }
}

bool AddressTakenIndex::taken_together(uint64_t a, uint64_t b, uint64_t window) const {
  auto ia = sites_.find(a);
  auto ib = sites_.find(b);
  if (ia == sites_.end() || ib == sites_.end()) return false;
  for (uint64_t x : ia->second) {
    for (uint64_t y : ib->second) {
      if ((x > y ? x - y : y - x) <= window) return true;
    }
  }
  return false;
}

namespace {

// A function symbol that starts at `vaddr` and is not a coroutine's split function: the address
// is an ordinary function's (a stripped object keeps its exported .dynsym names; split functions
// are local and never exported). E.g. bash keeps `bash_input.getter`/`.ungetter`, two adjacent
// function pointers set together, that look like a (resume, destroy) header.
bool named_ordinary_function(const ElfObject& object, uint64_t vaddr) {
  if (vaddr == 0) return false;
  const ElfSymbol* sym = object.function_at(vaddr);
  if (sym == nullptr || sym->value != vaddr) return false;
  CoroCompiler compiler = CoroCompiler::kGcc;
  std::string role;
  return ramp_of_split_symbol(sym->name, &compiler, &role).empty();
}

}  // namespace

std::optional<CoroFunction> recognise_stripped_coroutine(const Module& module,
                                                         const AddressTakenIndex& taken,
                                                         uint64_t resume, uint64_t destroy) {
  if (named_ordinary_function(module.object(), resume) ||
      named_ordinary_function(module.object(), destroy)) {
    return std::nullopt;
  }
  CoroFunction fn;
  fn.destroy = destroy;
  if (auto stub = read_gcc_destroy_stub(module, destroy)) {
    if (resume != 0 && stub->actor != resume) return std::nullopt;
    fn.compiler = CoroCompiler::kGcc;
    fn.resume = stub->actor;
    fn.index_offset = stub->index_offset;
    fn.index_width = 2;
    fn.layout_source = "machine-code";
  } else {
    if (resume == 0 || !taken.taken_together(resume, destroy)) return std::nullopt;
    ResumeCodeFacts r = facts_of(module, resume, kResumeBytes);
    auto field = guess_index_field(r);
    if (!field) return std::nullopt;
    // Which compiler numbered the suspend points: the .comment section survives stripping, and
    // Clang writes "clang version" there (GCC's own crt objects add "GCC:" to both).
    fn.compiler = comment_mentions(module.object(), "clang version") ? CoroCompiler::kClang
                                                                     : CoroCompiler::kGcc;
    fn.resume = resume;
    fn.index_offset = field->first;
    fn.index_width = field->second;
    fn.layout_source = "machine-code";
  }
  fn.name = util::hex(fn.resume);
  fn.ramp_linkage = fn.name;
  return fn;
}

}  // namespace asyncprobe::symbolizer
