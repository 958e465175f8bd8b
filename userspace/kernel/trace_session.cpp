#include "userspace/kernel/trace_session.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <system_error>
#include <thread>

#include "trace.skel.h"
#include "trace_skel.h"
#include "userspace/kernel/uprobe_links.h"

namespace asyncprobe::kernel {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct SyscallEntry {
  uint32_t nr;
  const char* name;
  uint32_t cls;
};

// x86-64 numbers (arch/x86/entry/syscalls/syscall_64.tbl).
constexpr SyscallEntry kSyscalls[] = {
    {0, "read", TRACE_SYS_IO},
    {1, "write", TRACE_SYS_IO},
    {7, "poll", TRACE_SYS_WAIT},
    {17, "pread64", TRACE_SYS_IO},
    {18, "pwrite64", TRACE_SYS_IO},
    {19, "readv", TRACE_SYS_IO},
    {20, "writev", TRACE_SYS_IO},
    {23, "select", TRACE_SYS_WAIT},
    {35, "nanosleep", TRACE_SYS_WAIT},
    {42, "connect", TRACE_SYS_IO},
    {43, "accept", TRACE_SYS_IO},
    {44, "sendto", TRACE_SYS_IO},
    {45, "recvfrom", TRACE_SYS_IO},
    {46, "sendmsg", TRACE_SYS_IO},
    {47, "recvmsg", TRACE_SYS_IO},
    {74, "fsync", TRACE_SYS_IO},
    {75, "fdatasync", TRACE_SYS_IO},
    {202, "futex", TRACE_SYS_FUTEX},
    {230, "clock_nanosleep", TRACE_SYS_WAIT},
    {232, "epoll_wait", TRACE_SYS_WAIT},
    {270, "pselect6", TRACE_SYS_WAIT},
    {271, "ppoll", TRACE_SYS_WAIT},
    {281, "epoll_pwait", TRACE_SYS_WAIT},
    {288, "accept4", TRACE_SYS_IO},
    {299, "recvmmsg", TRACE_SYS_IO},
    {307, "sendmmsg", TRACE_SYS_IO},
    {426, "io_uring_enter", TRACE_SYS_WAIT},
    {441, "epoll_pwait2", TRACE_SYS_WAIT},
    {449, "futex_waitv", TRACE_SYS_WAIT},
};

bool has_cap(const __user_cap_data_struct* data, int cap) {
  return (data[cap / 32].effective & (1u << (cap % 32))) != 0;
}

}  // namespace

std::string syscall_name(uint32_t nr) {
  for (const auto& s : kSyscalls) {
    if (s.nr == nr) return s.name;
  }
  return "syscall_" + std::to_string(nr);
}

std::string kernel_btf_path() {
  const char* env = std::getenv("ASYNCPROBE_VMLINUX_BTF");
  return env != nullptr ? env : "";
}

bool check_trace_support(const std::string& btf_path, TraceError* error) {
  return check_bpf_support(btf_path, "trace", error);
}

bool check_bpf_support(const std::string& btf_path, const std::string& command, TraceError* error) {
  __user_cap_header_struct header{};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  header.pid = 0;
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &header, data) != 0) {
    error->code = util::kExitInternal;
    error->message = std::string("cannot read this process's capabilities: ") + strerror(errno);
    return false;
  }
  constexpr int kCapSysAdmin = 21, kCapPerfmon = 38, kCapBpf = 39;
  bool admin = has_cap(data, kCapSysAdmin);
  if (!admin && !(has_cap(data, kCapBpf) && has_cap(data, kCapPerfmon))) {
    error->code = util::kExitPermission;
    error->message = command +
                     " loads eBPF programs: run as root or with CAP_BPF and CAP_PERFMON "
                     "(uid " +
                     std::to_string(geteuid()) + " has neither)";
    return false;
  }
  const std::string btf = btf_path.empty() ? "/sys/kernel/btf/vmlinux" : btf_path;
  if (access(btf.c_str(), R_OK) != 0) {
    error->code = util::kExitUnsupported;
    error->message = command + " needs kernel BTF and " + btf + " is missing (" + strerror(errno) +
                     "): use a kernel built with CONFIG_DEBUG_INFO_BTF=y";
    return false;
  }
  return true;
}

struct TraceSession::Impl {
  TraceSessionOptions opts;
  trace_bpf* skel = nullptr;
  ring_buffer* rb = nullptr;
  bool multi = false;  // uprobe programs loaded for uprobe_multi links
  const EventHandler* handler = nullptr;
  int handled = 0;
  double load_seconds = 0.0;

  static int on_sample(void* ctx, void* data, size_t size) {
    auto* self = static_cast<Impl*>(ctx);
    if (self->handler != nullptr) (*self->handler)(data, size);
    ++self->handled;
    return 0;
  }
  void unload() {
    if (rb != nullptr) ring_buffer__free(rb);
    if (skel != nullptr) asyncprobe_trace_bpf_destroy(skel);
    rb = nullptr;
    skel = nullptr;
  }
  bool open_and_load(bool use_multi, TraceError* error);
};

bool TraceSession::Impl::open_and_load(bool use_multi, TraceError* error) {
  skel = asyncprobe_trace_bpf_open(opts.btf_path.c_str());
  if (skel == nullptr) {
    error->code = util::kExitInternal;
    error->message = "cannot open the BPF object: " + std::string(strerror(errno));
    return false;
  }
  skel->rodata->target_tgid = static_cast<uint32_t>(opts.pid);
  skel->rodata->block_threshold_ns = opts.block_threshold_ns;
  skel->rodata->stall_threshold_ns = opts.stall_threshold_ns;
  uint32_t rb_bytes = 1u << 16;
  while (rb_bytes < opts.ringbuf_bytes && rb_bytes < (1u << 30)) rb_bytes <<= 1;
  bpf_map__set_max_entries(skel->maps.events, rb_bytes);
  skel->rodata->wakeup_bytes = rb_bytes / 4;
  bpf_map__set_max_entries(skel->maps.fns,
                           static_cast<uint32_t>(std::max<size_t>(1, opts.functions.size())));
  multi = use_multi;
  bpf_program__set_autoload(skel->progs.trace_resume, !use_multi);
  bpf_program__set_autoload(skel->progs.trace_destroy, !use_multi);
  bpf_program__set_autoload(skel->progs.trace_resume_multi, use_multi);
  bpf_program__set_autoload(skel->progs.trace_destroy_multi, use_multi);
  if (use_multi) {
    bpf_program__set_expected_attach_type(skel->progs.trace_resume_multi,
                                          static_cast<bpf_attach_type>(kBpfAttachUprobeMulti));
    bpf_program__set_expected_attach_type(skel->progs.trace_destroy_multi,
                                          static_cast<bpf_attach_type>(kBpfAttachUprobeMulti));
  }
  // Without syscall tracing the raw tracepoint programs are not even loaded.
  if (!opts.syscalls) {
    bpf_program__set_autoload(skel->progs.trace_sys_enter, false);
    bpf_program__set_autoload(skel->progs.trace_sys_exit, false);
    bpf_program__set_autoload(skel->progs.trace_sched_switch, false);
    bpf_program__set_autoload(skel->progs.trace_thread_exit, false);
  }
  int err = asyncprobe_trace_bpf_load(skel);
  if (err != 0) {
    error->code = errno == EPERM || err == -EPERM ? util::kExitPermission : util::kExitInternal;
    error->message = "cannot load the BPF programs: " + std::string(strerror(-err));
    if (!libbpf_last_message().empty())
      error->message += " (libbpf: " + libbpf_last_message() + ")";
    return false;
  }
  for (size_t i = 0; i < opts.functions.size(); ++i) {
    uint32_t key = static_cast<uint32_t>(i);
    trace_fn v = opts.functions[i].layout;
    bpf_map__update_elem(skel->maps.fns, &key, sizeof key, &v, sizeof v, BPF_ANY);
  }
  for (const auto& sc : kSyscalls) {
    uint32_t key = sc.nr, v = sc.cls;
    bpf_map__update_elem(skel->maps.syscall_class, &key, sizeof key, &v, sizeof v, BPF_ANY);
  }
  rb = ring_buffer__new(bpf_map__fd(skel->maps.events), &Impl::on_sample, this, nullptr);
  if (rb == nullptr) {
    error->code = util::kExitInternal;
    error->message = "cannot map the BPF ring buffer: " + std::string(strerror(errno));
    return false;
  }
  return true;
}

std::unique_ptr<TraceSession> TraceSession::load(const TraceSessionOptions& opts,
                                                 TraceError* error) {
  install_libbpf_print();
  libbpf_last_message().clear();
  auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<TraceSession> s(new TraceSession());
  s->impl_ = std::make_unique<Impl>();
  Impl& im = *s->impl_;
  im.opts = opts;
  bool ok = false;
  if (opts.uprobe_mode != UprobeMode::kPerf) {
    ok = im.open_and_load(true, error);
    if (!ok && opts.uprobe_mode == UprobeMode::kMulti) return nullptr;
    if (!ok) im.unload();
  }
  if (!ok && !im.open_and_load(false, error)) return nullptr;
  im.load_seconds = seconds_since(t0);
  return s;
}

TraceSession::~TraceSession() {
  detach();
  if (impl_ != nullptr) impl_->unload();
}

bool TraceSession::uses_uprobe_multi() const { return impl_->multi; }

bool TraceSession::attach(AttachStats* stats, TraceError* error) {
  Impl& im = *impl_;
  stats->load_seconds = im.load_seconds;
  // Perf-event uprobes take two descriptors each: raise the soft limit to the hard one.
  struct rlimit rl {};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  auto t0 = std::chrono::steady_clock::now();
  auto note_failure = [&](const std::string& what, int err) {
    if (stats->failures.size() < 5) {
      std::string line = what + ": " + strerror(err);
      if (!libbpf_last_message().empty()) line += " (libbpf: " + libbpf_last_message() + ")";
      stats->failures.push_back(line);
    }
    libbpf_last_message().clear();
  };
  if (im.opts.syscalls) {
    struct {
      bpf_program* prog;
      const char* tp;
    } tps[] = {{im.skel->progs.trace_sys_enter, "sys_enter"},
               {im.skel->progs.trace_sys_exit, "sys_exit"},
               {im.skel->progs.trace_sched_switch, "sched_switch"},
               {im.skel->progs.trace_thread_exit, "sched_process_exit"}};
    for (auto& t : tps) {
      bpf_link* link = bpf_program__attach_raw_tracepoint(t.prog, t.tp);
      if (link == nullptr) {
        int e = errno;
        error->code = e == EPERM || e == EACCES ? util::kExitPermission : util::kExitInternal;
        error->message =
            std::string("cannot attach to the raw tracepoint ") + t.tp + ": " + strerror(e);
        return false;
      }
      links_.push_back(UprobeLink{link, -1});
      ++stats->tracepoints;
    }
  }
  // Every probe site, once: (file, offset) -> role and cookie.
  struct Site {
    std::string path;
    uint64_t offset;
    uint32_t role;
    uint64_t cookie;
  };
  std::vector<Site> sites;
  std::set<std::pair<std::string, uint64_t>> seen;
  for (size_t i = 0; i < im.opts.functions.size(); ++i) {
    const TraceFunctionSpec& f = im.opts.functions[i];
    const std::pair<uint64_t, uint32_t> fs[] = {{f.resume_offset, TRACE_ROLE_RESUME},
                                                {f.destroy_offset, TRACE_ROLE_DESTROY},
                                                {f.cleanup_offset, TRACE_ROLE_CLEANUP}};
    for (const auto& [offset, role] : fs) {
      if (offset == 0) continue;
      if (!seen.insert({f.attach_path, offset}).second) {
        ++stats->uprobes_duplicate;
        continue;
      }
      sites.push_back(Site{f.attach_path, offset, role,
                           (static_cast<uint64_t>(role) << 32) | static_cast<uint64_t>(i)});
    }
  }
  if (im.multi) {
    // One link per file and program: attached (and detached) in one system call each.
    std::map<std::pair<std::string, bool>, std::pair<std::vector<uint64_t>, std::vector<uint64_t>>>
        groups;
    for (const Site& site : sites) {
      auto& g = groups[{site.path, site.role == TRACE_ROLE_RESUME}];
      g.first.push_back(site.offset);
      g.second.push_back(site.cookie);
    }
    for (const auto& [key, g] : groups) {
      bpf_program* prog =
          key.second ? im.skel->progs.trace_resume_multi : im.skel->progs.trace_destroy_multi;
      if (int e = attach_uprobes(prog, true, key.first, g.first, g.second, im.opts.pid, &links_);
          e != 0) {
        stats->uprobes_failed += g.first.size();
        note_failure(
            "uprobe_multi " + key.first + " (" + std::to_string(g.first.size()) + " sites)", e);
        continue;
      }
      stats->uprobes += g.first.size();
    }
  } else {
    for (const Site& site : sites) {
      bpf_program* prog = site.role == TRACE_ROLE_RESUME ? im.skel->progs.trace_resume
                                                         : im.skel->progs.trace_destroy;
      if (int e = attach_uprobes(prog, false, site.path, {site.offset}, {site.cookie}, im.opts.pid,
                                 &links_);
          e != 0) {
        ++stats->uprobes_failed;
        char where[64];
        std::snprintf(where, sizeof where, "+0x%llx", static_cast<unsigned long long>(site.offset));
        note_failure("uprobe " + site.path + where, e);
        if (e == ESRCH) break;
        continue;
      }
      ++stats->uprobes;
    }
  }
  stats->uprobe_multi = im.multi;
  stats->attach_seconds = seconds_since(t0);
  if (im.multi && stats->uprobes == 0 && !sites.empty() &&
      im.opts.uprobe_mode == UprobeMode::kAuto) {
    // The kernel loaded the programs but makes no uprobe_multi link: one link per site then.
    detach();
    im.unload();
    if (!im.open_and_load(false, error)) return false;
    std::vector<std::string> failures = std::move(stats->failures);
    *stats = AttachStats{};
    stats->load_seconds = im.load_seconds;
    if (!attach(stats, error)) return false;
    for (auto& f : failures) {
      if (stats->failures.size() < 5) stats->failures.push_back("uprobe_multi: " + f);
    }
    return true;
  }
  if (stats->uprobes == 0 && !sites.empty()) {
    error->code = util::kExitInternal;
    error->message = "no uprobe could be attached";
    if (!stats->failures.empty()) error->message += ": " + stats->failures.front();
    return false;
  }
  return true;
}

int TraceSession::poll(int timeout_ms, const EventHandler& handler) {
  Impl& im = *impl_;
  im.handler = &handler;
  im.handled = 0;
  // The programs wake us only when the ring is a quarter full: after the wait, take what is
  // there whether or not a wakeup came.
  int r = ring_buffer__poll(im.rb, timeout_ms);
  if (r >= 0 || r == -EINTR) {
    int c = ring_buffer__consume(im.rb);
    if (c < 0) r = c;
  }
  im.handler = nullptr;
  return r < 0 && r != -EINTR ? r : im.handled;
}

int TraceSession::drain(const EventHandler& handler) {
  Impl& im = *impl_;
  im.handler = &handler;
  im.handled = 0;
  int r = ring_buffer__consume(im.rb);
  im.handler = nullptr;
  return r < 0 ? r : im.handled;
}

TraceCounters TraceSession::counters() const {
  TraceCounters out;
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return out;
  std::vector<uint64_t> values(static_cast<size_t>(ncpu));
  for (uint32_t k = 0; k < TRACE_CTR_COUNT; ++k) {
    if (bpf_map__lookup_elem(impl_->skel->maps.counters, &k, sizeof k, values.data(),
                             values.size() * sizeof(uint64_t), 0) != 0) {
      continue;
    }
    for (uint64_t v : values) out.v[k] += v;
  }
  return out;
}

std::vector<std::pair<uint32_t, trace_thread>> TraceSession::threads() const {
  std::vector<std::pair<uint32_t, trace_thread>> out;
  if (!impl_->opts.syscalls && impl_->opts.functions.empty()) return out;
  const bpf_map* map = impl_->skel->maps.threads;
  uint32_t key = 0, next = 0;
  const void* prev = nullptr;
  for (size_t guard = 0; guard < 65536; ++guard) {
    if (bpf_map__get_next_key(map, prev, &next, sizeof next) != 0) break;
    trace_thread value{};
    if (bpf_map__lookup_elem(map, &next, sizeof next, &value, sizeof value, 0) == 0) {
      out.emplace_back(next, value);
    }
    key = next;
    prev = &key;
  }
  return out;
}

int TraceSession::threads_map_fd() const { return bpf_map__fd(impl_->skel->maps.threads); }

void TraceSession::detach() {
  if (links_.empty()) return;
  auto t0 = std::chrono::steady_clock::now();
  // Raw tracepoint links close the same way (an RCU wait each).
  close_uprobe_links(links_);
  detach_seconds_ = seconds_since(t0);
}

}  // namespace asyncprobe::kernel
