#include "userspace/process/stack_unwind.h"

#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>

namespace asyncprobe::process {

namespace {

struct MapLine {
  uint64_t start = 0, end = 0, offset = 0;
  std::string perms, path;
  uint64_t inode = 0;
};

std::vector<MapLine> read_maps(int pid) {
  std::vector<MapLine> out;
  std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
  std::string line;
  while (std::getline(in, line) && out.size() < 1'000'000) {
    unsigned long long s = 0, e = 0, off = 0, ino = 0;
    char perms[8] = {};
    int path_at = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx %7s %llx %*s %llu %n", &s, &e, perms, &off, &ino,
                    &path_at) < 5) {
      continue;
    }
    MapLine m;
    m.start = s;
    m.end = e;
    m.offset = off;
    m.perms = perms;
    m.inode = ino;
    if (path_at > 0 && static_cast<size_t>(path_at) <= line.size()) m.path = line.substr(path_at);
    out.push_back(std::move(m));
  }
  return out;
}

const Dwfl_Callbacks kDwflCallbacks = {
    dwfl_linux_proc_find_elf,
    dwfl_standard_find_debuginfo,
    nullptr,
    nullptr,
};

}  // namespace

// The one walk in progress: the registers and stack copy the callbacks serve.
struct TraceUnwinder::Walk {
  const uint64_t* regs = nullptr;
  uint64_t stack_addr = 0;
  const uint8_t* stack = nullptr;
  size_t len = 0;
  pid_t tid = 0;
};

namespace {

pid_t cb_next_thread(Dwfl*, void* arg, void** thread_argp) {
  // One pseudo thread per walk; dwfl_getthread_frames asks for it by tid through get_thread.
  auto* walk = *static_cast<TraceUnwinder::Walk**>(arg);
  if (*thread_argp != nullptr || walk == nullptr) return 0;
  *thread_argp = walk;
  return walk->tid;
}

bool cb_get_thread(Dwfl*, pid_t tid, void* arg, void** thread_argp) {
  auto* walk = *static_cast<TraceUnwinder::Walk**>(arg);
  if (walk == nullptr || walk->tid != tid) return false;
  *thread_argp = walk;
  return true;
}

bool cb_memory_read(Dwfl*, Dwarf_Addr addr, Dwarf_Word* result, void* arg) {
  auto* walk = *static_cast<TraceUnwinder::Walk**>(arg);
  if (walk == nullptr || addr < walk->stack_addr) return false;
  uint64_t off = addr - walk->stack_addr;
  if (off > walk->len || walk->len - off < sizeof(Dwarf_Word)) return false;
  std::memcpy(result, walk->stack + off, sizeof(Dwarf_Word));
  return true;
}

bool cb_set_initial_registers(Dwfl_Thread* thread, void* thread_arg) {
  auto* walk = static_cast<TraceUnwinder::Walk*>(thread_arg);
  Dwarf_Word regs[17];
  for (int i = 0; i < 17; ++i) regs[i] = walk->regs[i];
  // rax..r15 are DWARF 0..15; the pc (16) is passed separately.
  if (!dwfl_thread_state_registers(thread, 0, 16, regs)) return false;
  dwfl_thread_state_register_pc(thread, regs[16]);
  return true;
}

const Dwfl_Thread_Callbacks kThreadCallbacks = {
    cb_next_thread, cb_get_thread, cb_memory_read, cb_set_initial_registers, nullptr, nullptr,
};

struct CollectedFrame {
  uint64_t pc = 0;
  bool activation = false;  // frame 0 or a signal frame: pc is not a return address
  uint64_t sp = 0;
  uint64_t callee_saved[6] = {};
};

struct FrameCollector {
  std::vector<CollectedFrame> frames;
  size_t max_frames = 64;
};

// DWARF numbers of rbx, rbp, r12..r15.
constexpr unsigned kCalleeSavedRegs[6] = {3, 6, 12, 13, 14, 15};

int collect_frame(Dwfl_Frame* state, void* arg) {
  auto* c = static_cast<FrameCollector*>(arg);
  Dwarf_Addr pc = 0;
  bool activation = false;
  if (!dwfl_frame_pc(state, &pc, &activation)) return DWARF_CB_ABORT;
  if (pc == 0) return DWARF_CB_ABORT;
  CollectedFrame f;
  f.pc = pc;
  f.activation = activation;
  Dwarf_Word v = 0;
  if (dwfl_frame_reg(state, 7, &v) == 0) f.sp = v;
  for (int i = 0; i < 6; ++i) {
    if (dwfl_frame_reg(state, kCalleeSavedRegs[i], &v) == 0) f.callee_saved[i] = v;
  }
  c->frames.push_back(f);
  return c->frames.size() >= c->max_frames ? DWARF_CB_ABORT : DWARF_CB_OK;
}

}  // namespace

TraceUnwinder::TraceUnwinder(int pid, const std::vector<std::string>& debug_dirs) : pid_(pid) {
  const std::string proc = "/proc/" + std::to_string(pid);
  symbolizer::DebugSearchPaths paths;
  paths.sysroot = proc + "/root";
  for (const auto& d : debug_dirs) paths.debug_roots.insert(paths.debug_roots.begin(), d);
  modules_ = std::make_unique<symbolizer::ModuleCache>(paths);

  Dwfl* dwfl = dwfl_begin(&kDwflCallbacks);
  if (dwfl == nullptr) {
    error_ = std::string("libdwfl: ") + dwfl_errmsg(-1);
    return;
  }
  dwfl_report_begin(dwfl);
  std::map<std::string, std::vector<MapLine>> by_path;
  for (auto& m : read_maps(pid)) {
    if (m.inode == 0 || m.path.empty() || m.path[0] != '/') continue;
    by_path[m.path].push_back(m);
  }
  for (auto& [path, maps] : by_path) {
    bool exec = false;
    for (auto& m : maps) exec |= m.perms.find('x') != std::string::npos;
    if (!exec) continue;
    char range[64];
    std::snprintf(range, sizeof range, "%llx-%llx",
                  static_cast<unsigned long long>(maps.front().start),
                  static_cast<unsigned long long>(maps.front().end));
    const std::string open_path = proc + "/map_files/" + range;
    std::string err;
    std::shared_ptr<symbolizer::Module> module = modules_->get(open_path, path, &err);
    if (module == nullptr) continue;
    // Bias: the mapping of a load segment's page offset, as the snapshot does.
    uint64_t bias = 0;
    bool have_bias = false;
    for (const auto& seg : module->object().load_segments()) {
      for (const auto& m : maps) {
        if (m.offset == (seg.offset & ~uint64_t{0xfff})) {
          bias = m.start - (seg.vaddr & ~uint64_t{0xfff});
          have_bias = true;
          break;
        }
      }
      if (have_bias) break;
    }
    if (!have_bias) continue;
    int fd = open(open_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      // ET_EXEC ignores the base; ET_DYN is placed at `bias`. libdwfl takes the fd.
      if (dwfl_report_elf(dwfl, path.c_str(), open_path.c_str(), fd, bias, false) == nullptr) {
        close(fd);
      }
    }
    for (auto& m : maps) {
      mappings_.push_back(Mapping{m.start, m.end, bias, path, module});
    }
  }
  dwfl_report_end(dwfl, nullptr, nullptr);
  if (!dwfl_attach_state(dwfl, nullptr, pid, &kThreadCallbacks, &current_)) {
    error_ = std::string("libdwfl cannot unwind this target: ") + dwfl_errmsg(-1);
    dwfl_end(dwfl);
    return;
  }
  dwfl_ = dwfl;
}

TraceUnwinder::~TraceUnwinder() {
  if (dwfl_ != nullptr) dwfl_end(static_cast<Dwfl*>(dwfl_));
}

const TraceUnwinder::Mapping* TraceUnwinder::mapping_at(uint64_t pc) const {
  for (const auto& m : mappings_) {
    if (pc >= m.start && pc < m.end) return &m;
  }
  return nullptr;
}

UnwoundFrame TraceUnwinder::describe(uint64_t pc, bool is_return_address) const {
  // pcs are user addresses (< 2^47): bit 63 can carry the flag.
  const uint64_t key = pc | (is_return_address ? uint64_t{1} << 63 : 0);
  if (auto it = described_.find(key); it != described_.end()) return it->second;
  if (described_.size() >= 1'000'000) described_.clear();
  UnwoundFrame f;
  f.pc = pc;
  const Mapping* m = mapping_at(pc);
  if (m == nullptr) return f;
  f.object = m->target_path;
  // A return address points after the call: look up the call instruction's line.
  uint64_t lookup = pc - m->bias - (is_return_address && pc > 0 ? 1 : 0);
  f.functions = m->module->symbolize(lookup);
  described_.emplace(key, f);
  return f;
}

std::vector<UnwoundFrame> TraceUnwinder::unwind(const uint64_t regs[17], uint64_t stack_addr,
                                                const uint8_t* stack, size_t len,
                                                size_t max_frames) {
  std::vector<UnwoundFrame> out;
  if (dwfl_ == nullptr) return out;
  Walk walk;
  walk.regs = regs;
  walk.stack_addr = stack_addr;
  walk.stack = stack;
  walk.len = len;
  walk.tid = pid_;
  current_ = &walk;
  FrameCollector collector;
  collector.max_frames = max_frames;
  dwfl_getthread_frames(static_cast<Dwfl*>(dwfl_), pid_, collect_frame, &collector);
  current_ = nullptr;
  if (collector.frames.empty()) {
    CollectedFrame f;
    f.pc = regs[16];
    f.activation = true;
    f.sp = regs[7];
    for (int i = 0; i < 6; ++i) f.callee_saved[i] = regs[kCalleeSavedRegs[i]];
    collector.frames.push_back(f);
  }
  for (const CollectedFrame& c : collector.frames) {
    UnwoundFrame f = describe(c.pc, !c.activation);
    f.sp = c.sp;
    std::copy(std::begin(c.callee_saved), std::end(c.callee_saved), std::begin(f.callee_saved));
    out.push_back(std::move(f));
  }
  return out;
}

std::vector<UnwoundFrame> TraceUnwinder::unwind_blocked(uint64_t sp, uint64_t pc, uint64_t stack_hi,
                                                        const ReadMemory& read, size_t max_frames,
                                                        std::vector<uint8_t>* stack) {
  if (sp == 0 || pc == 0 || !read || dwfl_ == nullptr) return {};
  size_t len = kMaxBlockedStackBytes;
  if (stack_hi > sp) len = std::min<uint64_t>(len, stack_hi - sp);
  std::vector<uint8_t> bytes(len);
  // A shorter stack than asked for: halve until a read succeeds (the mapping may end early).
  while (len >= 4096 && !read(sp, bytes.data(), len)) len /= 2;
  if (len < 4096) return {};
  bytes.resize(len);
  uint64_t regs[17] = {};
  regs[7] = sp;   // rsp
  regs[16] = pc;  // rip
  std::vector<UnwoundFrame> frames = unwind(regs, sp, bytes.data(), len, max_frames);
  // /proc gives sp and pc only: rbp is unknown, and a frame whose CFA is rbp-based (code built
  // with frame pointers, -O0) ends the walk unless a callee saved rbp before. Then try the
  // stack's saved-frame-pointer slots, lowest first, and keep the longest walk.
  for (uint64_t rbp : frame_pointer_slots(sp, bytes, read)) {
    if (frames.size() >= max_frames) break;
    regs[6] = rbp;
    std::vector<UnwoundFrame> longer = unwind(regs, sp, bytes.data(), len, max_frames);
    if (longer.size() > frames.size()) frames = std::move(longer);
  }
  if (stack != nullptr) *stack = std::move(bytes);
  return frames;
}

namespace {

// Whether the code before `ret` ends with a call instruction: e8 rel32, or ff /2 (indirect call,
// 2 to 7 bytes with its ModRM, SIB and displacement).
bool follows_call(uint64_t ret, const ReadMemory& read) {
  uint8_t code[8] = {};
  if (ret < 8 || !read(ret - 8, code, sizeof code)) return false;
  if (code[3] == 0xe8) return true;
  for (int len = 2; len <= 7; ++len) {
    const uint8_t modrm = code[8 - len + 1];
    if (code[8 - len] == 0xff && ((modrm >> 3) & 7) == 2) return true;
  }
  return false;
}

}  // namespace

std::vector<uint64_t> TraceUnwinder::frame_pointer_slots(uint64_t sp,
                                                         const std::vector<uint8_t>& stack,
                                                         const ReadMemory& read) const {
  // A slot X holds the caller's rbp (0 at the outermost frame, else a higher slot of the same
  // kind) and X + 8 a return address: mapped code right after a call instruction.
  auto word = [&](uint64_t addr, uint64_t* out) {
    if (addr < sp || addr - sp + 8 > stack.size()) return false;
    std::memcpy(out, stack.data() + (addr - sp), 8);
    return true;
  };
  auto returns_to_code = [&](uint64_t x) {
    uint64_t ret = 0;
    return word(x + 8, &ret) && mapping_at(ret) != nullptr && follows_call(ret, read);
  };
  std::vector<uint64_t> out;
  for (uint64_t x = sp; x + 16 <= sp + stack.size() && out.size() < kMaxFramePointerTries; x += 8) {
    uint64_t saved = 0;
    if (!word(x, &saved) || (saved != 0 && (saved <= x || (saved & 7) != 0))) continue;
    if (returns_to_code(x) && (saved == 0 || returns_to_code(saved))) out.push_back(x);
  }
  return out;
}

}  // namespace asyncprobe::process
