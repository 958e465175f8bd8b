#include "userspace/profile_session.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/perf_event.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "profile.skel.h"
#include "profile_skel.h"

namespace asyncprobe {

struct ProfileSession::Impl {
  profile_bpf* skel = nullptr;
  ring_buffer* rb = nullptr;
  std::vector<int> perf_fds;
  std::vector<bpf_link*> links;
  const SampleHandler* handler = nullptr;

  static int on_sample(void* ctx, void* data, size_t size) {
    auto* self = static_cast<Impl*>(ctx);
    // The program writes only whole samples; anything shorter is not ours to interpret.
    if (size < sizeof(profile_sample) || self->handler == nullptr) return 0;
    (*self->handler)(*static_cast<const profile_sample*>(data));
    return 0;
  }

  void stop_sampling() {
    for (bpf_link* l : links) bpf_link__destroy(l);
    links.clear();
    for (int fd : perf_fds) close(fd);
    perf_fds.clear();
  }

  ~Impl() {
    stop_sampling();
    if (rb != nullptr) ring_buffer__free(rb);
    if (skel != nullptr) asyncprobe_profile_bpf_destroy(skel);
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
  auto fail = [&](ExitCode code, const std::string& message) {
    error->code = code;
    error->message = message;
    return nullptr;
  };
  libbpf_set_print(nullptr);
  im->skel = asyncprobe_profile_bpf_open(opts.btf_path.c_str());
  if (im->skel == nullptr) {
    return fail(kExitUnsupported,
                std::string("cannot open the profile BPF object: ") + strerror(errno));
  }
  im->skel->rodata->target_tgid = static_cast<uint32_t>(opts.pid);
  im->skel->rodata->want_kernel_stack = opts.kernel_stacks ? 1 : 0;
  uint32_t rb_bytes = 1u << 20;
  while (rb_bytes < opts.ringbuf_bytes && rb_bytes < (1u << 30)) rb_bytes <<= 1;
  bpf_map__set_max_entries(im->skel->maps.samples, rb_bytes);
  int err = asyncprobe_profile_bpf_load(im->skel);
  if (err != 0) {
    ExitCode code = (err == -EPERM || err == -EACCES) ? kExitPermission : kExitUnsupported;
    return fail(code, std::string("cannot load the profile BPF program: ") + strerror(-err));
  }
  im->rb =
      ring_buffer__new(bpf_map__fd(im->skel->maps.samples), &Impl::on_sample, im.get(), nullptr);
  if (im->rb == nullptr) {
    return fail(kExitInternal, std::string("cannot open the ring buffer: ") + strerror(errno));
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
    ExitCode code =
        (last_errno == EPERM || last_errno == EACCES) ? kExitPermission : kExitUnsupported;
    return fail(code, std::string("cannot sample any CPU with perf events: ") +
                          strerror(last_errno) +
                          (last_errno == EACCES || last_errno == EPERM
                               ? " (needs root or CAP_PERFMON; see kernel.perf_event_paranoid)"
                               : ""));
  }
  return std::unique_ptr<ProfileSession>(new ProfileSession(std::move(im)));
}

int ProfileSession::poll(int timeout_ms, const SampleHandler& handler) {
  impl_->handler = &handler;
  // Samples are submitted without a wakeup (profile.bpf.c): the wait ends by its timeout (or a
  // signal), and what arrived meanwhile is drained then.
  int r = ring_buffer__poll(impl_->rb, timeout_ms);
  if (r >= 0) {
    int drained = ring_buffer__consume(impl_->rb);
    r = drained < 0 ? drained : r + drained;
  }
  impl_->handler = nullptr;
  return r;
}

int ProfileSession::drain(const SampleHandler& handler) {
  impl_->handler = &handler;
  int r = ring_buffer__consume(impl_->rb);
  impl_->handler = nullptr;
  return r;
}

void ProfileSession::stop() { impl_->stop_sampling(); }

int ProfileSession::cpus() const { return static_cast<int>(impl_->perf_fds.size()); }

ProfileCounters ProfileSession::counters() const {
  ProfileCounters out;
  const int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return out;
  std::vector<uint64_t> per_cpu(static_cast<size_t>(ncpu));
  const int fd = bpf_map__fd(impl_->skel->maps.counters);
  for (uint32_t k = 0; k < PROFILE_CTR_COUNT; ++k) {
    if (bpf_map_lookup_elem(fd, &k, per_cpu.data()) != 0) continue;
    for (uint64_t v : per_cpu) out.v[k] += v;
  }
  return out;
}

}  // namespace asyncprobe
