#include "userspace/preload/blocking_records.h"

#include <sys/mman.h>

#include <atomic>
#include <cstring>

#include "userspace/preload/async_walk.h"
#include "userspace/preload/config.h"
#include "userspace/preload/modules.h"
#include "userspace/preload/signal_safe.h"
#include "userspace/preload/unwinder.h"

namespace asyncprobe::preload {

namespace {

__thread bool t_internal __attribute__((tls_model("initial-exec"))) = false;
__thread bool t_noting __attribute__((tls_model("initial-exec"))) = false;

std::atomic_flag g_lock = ATOMIC_FLAG_INIT;
BlockingSample* g_ring = nullptr;
uint64_t g_next_seq = 1;  // sequence of the next record

class SpinLock {
 public:
  SpinLock() {
    while (g_lock.test_and_set(std::memory_order_acquire)) sleep_ms(0);
  }
  ~SpinLock() { g_lock.clear(std::memory_order_release); }
};

}  // namespace

void set_internal_thread(bool internal) { t_internal = internal; }

void blocking_samples(uint64_t since, std::vector<BlockingSample>* out, uint64_t* next,
                      uint64_t* dropped) {
  SpinLock lock;
  *next = g_next_seq;
  *dropped = 0;
  if (g_ring == nullptr) return;
  uint64_t oldest = g_next_seq > kBlockingRing ? g_next_seq - kBlockingRing : 1;
  if (since < oldest) {
    *dropped = since == 0 ? oldest - 1 : oldest - since;
    since = oldest;
  }
  for (uint64_t s = since; s < g_next_seq; ++s) out->push_back(g_ring[s % kBlockingRing]);
}

std::string describe_call_site(uint64_t pc) {
  char buf[2048];
  Text t(buf, sizeof buf);
  append_pc(t, pc, false);
  return std::string(t.data(), t.size());
}

std::vector<BlockingFrameText> describe_sample_frames(const BlockingSample& s) {
  std::vector<BlockingFrameText> out;
  for (uint32_t k = 0; k < s.frames; ++k) {
    BlockingFrameText f;
    f.frame = s.frame[k];
    Modules::CoroRef ref;
    if (Modules::coroutine_by_destroy(s.destroy_masked[k] ^ kHeaderMask, &ref)) {
      f.function = ref.view.str(ref.coro->name);
      if (k == 0) {
        PcInfo info = describe_pc(s.running_pc, false);
        if (info.line != 0) {
          f.file = info.file;
          f.line = info.line;
        }
      } else {
        int64_t index = s.index[k];
        uint32_t off = ref.coro->index_offset, width = ref.coro->index_width;
        if (width > 0 && width <= 8 && off + width <= kFrameCopyBytes) {
          uint64_t words[kFrameCopyBytes / 8];
          for (size_t w = 0; w < kFrameCopyBytes / 8; ++w)
            words[w] = s.head_masked[k][w] ^ kHeaderMask;
          uint64_t v = 0;
          std::memcpy(&v, reinterpret_cast<const char*>(words) + off, width);
          index = static_cast<int64_t>(v);
        }
        if (const preload_table::PointRecord* p = ref.view.point(*ref.coro, index);
            p != nullptr && p->line != 0) {
          f.file = ref.view.str(p->file);
          f.line = p->line;
        }
      }
    } else {
      char buf[32];
      Text t(buf, sizeof buf);
      t.hex(s.destroy_masked[k] ^ kHeaderMask);
      f.function = std::string(t.data(), t.size());
    }
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace asyncprobe::preload

using namespace asyncprobe::preload;

extern "C" uint64_t asyncprobe_blocking_threshold() {
  return config().blocking ? config().blocking_threshold_ns : 0;
}

extern "C" int asyncprobe_internal_thread() { return t_internal ? 1 : 0; }

extern "C" void asyncprobe_blocking_note(const char* call, uint64_t start_ns, uint64_t duration_ns,
                                         uint64_t call_site) {
  if (t_internal || t_noting || !config().blocking) return;
  t_noting = true;
  constexpr size_t kMax = 48;
  StackFrame frames[kMax];
  RegState regs;
  asyncprobe_capture_caller_regs(&regs);
  size_t n = unwind_stack(regs, false, frames, kMax);
  RunningCoroutine rc;
  if (find_running_coroutine(frames, n, 0, &rc)) {
    AwaitLink links[kBlockingFrames];
    size_t k = walk_awaiters(rc, links, kBlockingFrames);
    BlockingSample s;
    s.call = call;
    s.tid = self_tid();
    s.start_ns = start_ns;
    s.duration_ns = duration_ns;
    s.call_site = call_site;
    for (size_t i = 0; i < n; ++i) {
      if (frames[i].pc == call_site) {
        // From the call site outwards, the first frame in code with line information.
        for (size_t j = i; j < n && s.app_site == 0; ++j) {
          if (describe_pc(frames[j].pc, frames[j].pc_exact).line != 0) s.app_site = frames[j].pc;
        }
        break;
      }
    }
    s.running_pc = frames[rc.stack_index].pc;
    s.frames = static_cast<uint32_t>(k);
    for (size_t i = 0; i < k; ++i) {
      s.frame[i] = links[i].frame;
      uint64_t words[2] = {0, 0};
      safe_read(links[i].frame, words, sizeof words);
      s.destroy_masked[i] = words[1] ^ kHeaderMask;
      s.index[i] = links[i].index;
      for (size_t w = 0; w < kFrameCopyBytes / 8; ++w) {
        uint64_t v = 0;
        safe_load(links[i].frame + w * 8, &v);
        s.head_masked[i][w] = v ^ kHeaderMask;
      }
    }
    SpinLock lock;
    if (g_ring == nullptr) {
      void* p = mmap(nullptr, sizeof(BlockingSample) * kBlockingRing, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p != MAP_FAILED) g_ring = static_cast<BlockingSample*>(p);
    }
    if (g_ring != nullptr) {
      s.seq = g_next_seq++;
      g_ring[s.seq % kBlockingRing] = s;
    }
  }
  t_noting = false;
}
