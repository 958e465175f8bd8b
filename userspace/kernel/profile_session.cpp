#include "userspace/kernel/profile_session.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/perf_event.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>
#include <span>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bpf/profile.h"
#include "profile.skel.h"
#include "profile_skel.h"

namespace asyncprobe::kernel {

namespace {

// Kernel counter -> name -> field: the one place where the sampling program's counters
// (bpf/profile.h) become profile::SamplerStats. Row i is counter i (checked below).
struct ProfileCounterRow {
  profile_counter counter;
  const char* name;
  uint64_t profile::SamplerStats::*field;
};
constexpr ProfileCounterRow kProfileCounterTable[] = {
    {PROFILE_CTR_TICKS, "ticks", &profile::SamplerStats::ticks},
    {PROFILE_CTR_TARGET, "target_ticks", &profile::SamplerStats::target_ticks},
    {PROFILE_CTR_EMITTED, "samples", &profile::SamplerStats::samples},
    {PROFILE_CTR_LOST, "lost", &profile::SamplerStats::lost},
    {PROFILE_CTR_STACK_SHORT, "stack_short", &profile::SamplerStats::stack_short},
    {PROFILE_CTR_STACK_FAILED, "stack_failed", &profile::SamplerStats::stack_failed},
    {PROFILE_CTR_KSTACK_FAILED, "kstack_failed", &profile::SamplerStats::kstack_failed},
};
constexpr bool rows_in_counter_order() {
  for (size_t i = 0; i < std::size(kProfileCounterTable); ++i) {
    if (static_cast<size_t>(kProfileCounterTable[i].counter) != i) return false;
  }
  return std::size(kProfileCounterTable) == PROFILE_CTR_COUNT;
}
static_assert(rows_in_counter_order(), "one row per profile_counter, in enum order");

// The sample as the profiler reads it; its spans point into `s` and `kstack`.
profile::CpuSample translate(const profile_sample& s,
                             std::array<uint64_t, PROFILE_KSTACK_MAX>* kstack) {
  profile::CpuSample out;
  out.tid = s.tid;
  std::copy(std::begin(s.regs), std::end(s.regs), out.regs.begin());
  out.stack_addr = s.stack_addr;
  out.stack = std::span<const uint8_t>(s.stack, std::min<size_t>(s.stack_len, PROFILE_STACK_MAX));
  const size_t most = std::min<size_t>(s.kstack_len / 8, PROFILE_KSTACK_MAX);
  size_t kframes = 0;
  for (; kframes < most && s.kstack[kframes] != 0; ++kframes)
    (*kstack)[kframes] = s.kstack[kframes];
  out.kstack = std::span<const uint64_t>(kstack->data(), kframes);
  out.coro_frame = s.coro_frame;
  out.coro_fn = s.coro_fn;
  return out;
}

}  // namespace

// How often the drain thread empties the kernel ring buffer (samples are submitted without a
// wakeup), and how much of the samples' time the ring holds by default: 5 drain periods.
constexpr auto kDrainPeriod = std::chrono::milliseconds(20);
constexpr double kRingSeconds = 0.1;
// Samples waiting for the handler beyond this many bytes are dropped and counted as lost.
constexpr size_t kMaxQueuedBytes = size_t{512} << 20;
constexpr size_t kSampleHeaderBytes = offsetof(profile_sample, stack);

struct ProfileSession::Impl {
  profile_bpf* skel = nullptr;
  ring_buffer* rb = nullptr;
  std::vector<int> perf_fds;
  std::vector<bpf_link*> links;
  int pid = 0;
  int stats_fd = -1;  // BPF_ENABLE_STATS: run-time statistics stay on while it is open

  // The drain thread copies samples out of the kernel ring buffer as they come (only the bytes
  // in use), so that the ring stays small (a large one costs the target's CPU a cold page per
  // sample: docs/BENCHMARKS.md "## profile") and a slow handler (the first walk through an
  // object loads its DWARF) does not make it overflow.
  std::thread drainer;
  std::mutex mu;
  std::condition_variable cv;
  bool stop_draining = false;                         // guarded by mu
  std::vector<std::vector<uint8_t>> queued;           // guarded by mu
  size_t queued_bytes = 0;                            // guarded by mu
  uint64_t dropped = 0;                               // guarded by mu
  std::vector<std::vector<uint8_t>> batch;            // only the consuming thread
  profile_sample scratch{};                           // only the handler's thread
  std::array<uint64_t, PROFILE_KSTACK_MAX> kstack{};  // ditto: scratch's kernel frames

  // The stack mapping of each thread, told to the program (stack_ranges map); only the
  // consuming thread.
  struct StackRange {
    uint64_t lo = 0, hi = 0;
    std::chrono::steady_clock::time_point looked_up;
  };
  std::unordered_map<uint32_t, StackRange> stack_ranges;

  static int on_sample(void* ctx, void* data, size_t size) {
    auto* self = static_cast<Impl*>(ctx);
    // The program writes only whole samples; anything shorter is not ours to interpret.
    if (size < sizeof(profile_sample)) return 0;
    const auto* s = static_cast<const profile_sample*>(data);
    self->note_stack(s->tid, s->regs[7]);
    const size_t used = kSampleHeaderBytes + std::min<size_t>(s->stack_len, PROFILE_STACK_MAX);
    const auto* bytes = static_cast<const uint8_t*>(data);
    self->batch.emplace_back(bytes, bytes + used);
    return 0;
  }

  // Looks up the mapping holding a thread's sp (once per thread, again at most every second
  // when its sp left the mapping) and tells the program, which then copies the stack in one
  // read that ends at the mapping's end.
  void note_stack(uint32_t tid, uint64_t sp) {
    const auto now = std::chrono::steady_clock::now();
    auto it = stack_ranges.find(tid);
    if (it != stack_ranges.end()) {
      if (sp >= it->second.lo && sp < it->second.hi) return;
      if (now - it->second.looked_up < std::chrono::seconds(1)) return;
    }
    StackRange range;
    range.looked_up = now;
    std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
    std::string line;
    while (std::getline(maps, line)) {
      unsigned long long lo = 0, hi = 0;
      if (std::sscanf(line.c_str(), "%llx-%llx", &lo, &hi) == 2 && sp >= lo && sp < hi) {
        range.lo = lo;
        range.hi = hi;
        break;
      }
    }
    stack_ranges[tid] = range;
    const int fd = bpf_map__fd(skel->maps.stack_ranges);
    if (range.hi != 0) {
      const profile_stack_range value{range.lo, range.hi};
      bpf_map_update_elem(fd, &tid, &value, BPF_ANY);  // full: that thread keeps the fallback
    } else {
      bpf_map_delete_elem(fd, &tid);
    }
  }

  // Consumes the kernel ring buffer on this thread and queues what it held for the handler.
  int consume() {
    int r = ring_buffer__consume(rb);
    if (batch.empty()) return r;
    std::lock_guard<std::mutex> lock(mu);
    for (std::vector<uint8_t>& b : batch) {
      if (queued_bytes + b.size() > kMaxQueuedBytes) {
        dropped++;
        continue;
      }
      queued_bytes += b.size();
      queued.push_back(std::move(b));
    }
    batch.clear();
    cv.notify_all();
    return r;
  }

  void drain_loop() {
    std::unique_lock<std::mutex> lock(mu);
    while (!stop_draining) {
      cv.wait_for(lock, kDrainPeriod, [&] { return stop_draining; });
      lock.unlock();
      consume();
      lock.lock();
    }
  }

  void stop_drainer() {
    {
      std::lock_guard<std::mutex> lock(mu);
      stop_draining = true;
    }
    cv.notify_all();
    if (drainer.joinable()) drainer.join();
  }

  // Hands every queued sample to `handler`; the number handled.
  int hand_over(const std::vector<std::vector<uint8_t>>& samples, const SampleHandler& handler) {
    for (const std::vector<uint8_t>& b : samples) {
      std::memcpy(&scratch, b.data(), b.size());
      handler(translate(scratch, &kstack));
    }
    return static_cast<int>(samples.size());
  }

  std::vector<std::vector<uint8_t>> take_queued() {
    std::vector<std::vector<uint8_t>> out;
    out.swap(queued);
    queued_bytes = 0;
    return out;
  }

  void stop_sampling() {
    for (bpf_link* l : links) bpf_link__destroy(l);
    links.clear();
    for (int fd : perf_fds) close(fd);
    perf_fds.clear();
  }

  ~Impl() {
    stop_sampling();
    stop_drainer();
    if (rb != nullptr) ring_buffer__free(rb);
    if (skel != nullptr) asyncprobe_profile_bpf_destroy(skel);
    if (stats_fd >= 0) close(stats_fd);
  }
};

namespace {

int open_cpu_clock(int cpu, int hz) {
  perf_event_attr attr{};
  attr.size = sizeof attr;
  attr.type = PERF_TYPE_SOFTWARE;
  attr.config = PERF_COUNT_SW_CPU_CLOCK;
  // A fixed period (not freq mode): every tick stands for the same CPU time.
  attr.sample_period = static_cast<uint64_t>(1'000'000'000 / hz);
  attr.disabled = 0;
  return static_cast<int>(syscall(SYS_perf_event_open, &attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC));
}

}  // namespace

ProfileSession::ProfileSession(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ProfileSession::~ProfileSession() = default;

std::unique_ptr<ProfileSession> ProfileSession::start(const ProfileSessionOptions& opts,
                                                      TraceError* error) {
  auto im = std::make_unique<Impl>();
  auto fail = [&](util::ExitCode code, const std::string& message) {
    error->code = code;
    error->message = message;
    return nullptr;
  };
  libbpf_set_print(nullptr);
  im->skel = asyncprobe_profile_bpf_open(opts.btf_path.c_str());
  if (im->skel == nullptr) {
    return fail(util::kExitUnsupported,
                std::string("cannot open the profile BPF object: ") + strerror(errno));
  }
  im->skel->rodata->target_tgid = static_cast<uint32_t>(opts.pid);
  im->skel->rodata->want_kernel_stack = opts.kernel_stacks ? 1 : 0;
  if (const char* bench = std::getenv("ASYNCPROBE_PROFILE_BENCH"); bench != nullptr) {
    im->skel->rodata->bench_mode = static_cast<uint8_t>(std::atoi(bench));
  }
  im->pid = opts.pid;
  uint64_t want = opts.ringbuf_bytes;
  if (want == 0) {
    // kRingSeconds of samples with the target running on every CPU.
    const long online = sysconf(_SC_NPROCESSORS_ONLN);
    want = static_cast<uint64_t>(static_cast<double>(online > 0 ? online : 1) * opts.frequency_hz *
                                 sizeof(profile_sample) * kRingSeconds);
  }
  uint32_t rb_bytes = 1u << 20;
  while (rb_bytes < want && rb_bytes < (1u << 30)) rb_bytes <<= 1;
  bpf_map__set_max_entries(im->skel->maps.samples, rb_bytes);
  // profile --trace: read the trace program's per-thread running coroutine from its own map.
  if (opts.trace_threads_fd >= 0 &&
      bpf_map__reuse_fd(im->skel->maps.threads, opts.trace_threads_fd) != 0) {
    return fail(util::kExitInternal,
                std::string("cannot share the trace's thread map: ") + strerror(errno));
  }
  int err = asyncprobe_profile_bpf_load(im->skel);
  if (err != 0) {
    util::ExitCode code =
        (err == -EPERM || err == -EACCES) ? util::kExitPermission : util::kExitUnsupported;
    return fail(code, std::string("cannot load the profile BPF program: ") + strerror(-err));
  }
  im->rb =
      ring_buffer__new(bpf_map__fd(im->skel->maps.samples), &Impl::on_sample, im.get(), nullptr);
  if (im->rb == nullptr) {
    return fail(util::kExitInternal,
                std::string("cannot open the ring buffer: ") + strerror(errno));
  }
  const int possible = libbpf_num_possible_cpus();
  int last_errno = 0;
  for (int cpu = 0; cpu < possible; ++cpu) {
    int fd = open_cpu_clock(cpu, opts.frequency_hz);
    if (fd < 0) {
      last_errno = errno;  // ENODEV: a possible CPU that is offline
      continue;
    }
    bpf_link* link = bpf_program__attach_perf_event(im->skel->progs.profile_tick, fd);
    if (link == nullptr) {
      last_errno = errno;
      close(fd);
      continue;
    }
    im->perf_fds.push_back(fd);
    im->links.push_back(link);
  }
  if (im->links.empty()) {
    util::ExitCode code = (last_errno == EPERM || last_errno == EACCES) ? util::kExitPermission
                                                                        : util::kExitUnsupported;
    return fail(code, std::string("cannot sample any CPU with perf events: ") +
                          strerror(last_errno) +
                          (last_errno == EACCES || last_errno == EPERM
                               ? " (needs root or CAP_PERFMON; see kernel.perf_event_paranoid)"
                               : ""));
  }
  if (opts.measure_program) im->stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
  Impl* raw = im.get();
  raw->drainer = std::thread([raw] { raw->drain_loop(); });
  return std::unique_ptr<ProfileSession>(new ProfileSession(std::move(im)));
}

int ProfileSession::poll(int timeout_ms, const SampleHandler& handler) {
  std::vector<std::vector<uint8_t>> samples;
  {
    std::unique_lock<std::mutex> lock(impl_->mu);
    impl_->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                       [&] { return !impl_->queued.empty() || impl_->stop_draining; });
    samples = impl_->take_queued();
  }
  return impl_->hand_over(samples, handler);
}

int ProfileSession::drain(const SampleHandler& handler) {
  impl_->stop_drainer();
  const int r = impl_->consume();
  std::vector<std::vector<uint8_t>> samples;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    samples = impl_->take_queued();
  }
  const int handled = impl_->hand_over(samples, handler);
  return r < 0 ? r : handled;
}

void ProfileSession::stop() {
  impl_->stop_sampling();
  impl_->stop_drainer();
}

int ProfileSession::cpus() const { return static_cast<int>(impl_->perf_fds.size()); }

profile::SamplerStats ProfileSession::stats() const {
  profile::SamplerStats out;
  const int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return out;
  std::vector<uint64_t> per_cpu(static_cast<size_t>(ncpu));
  const int fd = bpf_map__fd(impl_->skel->maps.counters);
  for (const ProfileCounterRow& row : kProfileCounterTable) {
    const uint32_t k = row.counter;
    if (bpf_map_lookup_elem(fd, &k, per_cpu.data()) != 0) continue;
    for (uint64_t v : per_cpu) out.*row.field += v;
  }
  std::lock_guard<std::mutex> lock(impl_->mu);
  out.lost += impl_->dropped;
  return out;
}

ProfileSession::ProgramCpu ProfileSession::program_cpu() const {
  ProgramCpu out;
  if (impl_->stats_fd < 0) return out;
  bpf_prog_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(bpf_program__fd(impl_->skel->progs.profile_tick), &info, &len) == 0) {
    out.run_ns = info.run_time_ns;
    out.runs = info.run_cnt;
  }
  return out;
}

}  // namespace asyncprobe::kernel
