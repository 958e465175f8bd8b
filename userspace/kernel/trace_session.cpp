#include "userspace/kernel/trace_session.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <system_error>
#include <thread>
#include <utility>

#include "trace.skel.h"
#include "trace_skel.h"
#include "userspace/kernel/trace_records.h"

namespace asyncprobe::kernel {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The syscalls the probes time, by what they can mean (x86-64 numbers; names in
// process::syscall_name_x86_64).
struct SyscallClass {
  uint32_t nr;
  uint32_t cls;
};
constexpr SyscallClass kSyscalls[] = {
    {0, TRACE_SYS_IO},       // read
    {1, TRACE_SYS_IO},       // write
    {7, TRACE_SYS_WAIT},     // poll
    {17, TRACE_SYS_IO},      // pread64
    {18, TRACE_SYS_IO},      // pwrite64
    {19, TRACE_SYS_IO},      // readv
    {20, TRACE_SYS_IO},      // writev
    {23, TRACE_SYS_WAIT},    // select
    {35, TRACE_SYS_WAIT},    // nanosleep
    {42, TRACE_SYS_IO},      // connect
    {43, TRACE_SYS_IO},      // accept
    {44, TRACE_SYS_IO},      // sendto
    {45, TRACE_SYS_IO},      // recvfrom
    {46, TRACE_SYS_IO},      // sendmsg
    {47, TRACE_SYS_IO},      // recvmsg
    {74, TRACE_SYS_IO},      // fsync
    {75, TRACE_SYS_IO},      // fdatasync
    {202, TRACE_SYS_FUTEX},  // futex
    {230, TRACE_SYS_WAIT},   // clock_nanosleep
    {232, TRACE_SYS_WAIT},   // epoll_wait
    {270, TRACE_SYS_WAIT},   // pselect6
    {271, TRACE_SYS_WAIT},   // ppoll
    {281, TRACE_SYS_WAIT},   // epoll_pwait
    {288, TRACE_SYS_IO},     // accept4
    {299, TRACE_SYS_IO},     // recvmmsg
    {307, TRACE_SYS_IO},     // sendmmsg
    {426, TRACE_SYS_WAIT},   // io_uring_enter
    {441, TRACE_SYS_WAIT},   // epoll_pwait2
    {449, TRACE_SYS_WAIT},   // futex_waitv
};

// Kernel counter -> name -> field: the one place where the BPF counters (bpf/trace.h) become
// trace::ProbeStats. Row i is counter i (checked below), so a counter added on the BPF side
// without a row here does not compile.
struct TraceCounterRow {
  trace_counter counter;
  const char* name;
  uint64_t trace::ProbeStats::*field;
};
constexpr TraceCounterRow kTraceCounterTable[] = {
    {TRACE_CTR_RESUME_HITS, "resume_hits", &trace::ProbeStats::resume_hits},
    {TRACE_CTR_DESTROY_HITS, "destroy_hits", &trace::ProbeStats::destroy_hits},
    {TRACE_CTR_SYS_ENTER_HITS, "timed_syscalls", &trace::ProbeStats::timed_syscalls},
    {TRACE_CTR_SYS_EXIT_HITS, "timed_syscall_exits", &trace::ProbeStats::timed_syscall_exits},
    {TRACE_CTR_SCHED_HITS, "context_switches", &trace::ProbeStats::context_switches},
    {TRACE_CTR_SYS_ALL_HITS, "syscall_hits", &trace::ProbeStats::syscall_hits},
    {TRACE_CTR_IN_CORO_SYSCALLS, "syscalls_in_coroutines",
     &trace::ProbeStats::syscalls_in_coroutines},
    {TRACE_CTR_EMITTED, "records", &trace::ProbeStats::records},
    {TRACE_CTR_LOST, "lost", &trace::ProbeStats::lost},
    {TRACE_CTR_LOST_RESUME, "lost_resumes", &trace::ProbeStats::lost_resumes},
    {TRACE_CTR_LOST_BLOCK, "lost_blocking_calls", &trace::ProbeStats::lost_blocking_calls},
    {TRACE_CTR_STACK_FAIL, "stack_copy_failed", &trace::ProbeStats::stack_copy_failed},
    {TRACE_CTR_STACK_TRUNC, "stack_truncated", &trace::ProbeStats::stack_truncated},
    {TRACE_CTR_DEPTH_FOLD, "nesting_folded", &trace::ProbeStats::nesting_folded},
    {TRACE_CTR_NO_THREAD_STATE, "thread_table_full", &trace::ProbeStats::thread_table_full},
    {TRACE_CTR_INDEX_FAIL, "index_unreadable", &trace::ProbeStats::index_unreadable},
};
constexpr bool rows_in_counter_order() {
  for (size_t i = 0; i < std::size(kTraceCounterTable); ++i) {
    if (static_cast<size_t>(kTraceCounterTable[i].counter) != i) return false;
  }
  return std::size(kTraceCounterTable) == TRACE_CTR_COUNT;
}
static_assert(rows_in_counter_order(), "one row per trace_counter, in enum order");

trace::ThreadStateAtEnd thread_state_at_end(uint32_t tid, const trace_thread& st) {
  trace::ThreadStateAtEnd out;
  out.tid = tid;
  out.syscall_enter_ts = st.sys_enter_ts;
  out.syscall_nr = st.sys_nr;
  out.syscall_in_coroutine = st.sys_in_coro != 0;
  out.syscall_is_wait = st.sys_is_wait != 0;
  out.syscall_frame = st.sys_frame;
  out.syscall_fn = st.sys_fn;
  out.ran_since_wait = st.ran_since_wait != 0;
  out.wait_exit_ts = st.wait_exit_ts;
  return out;
}

bool has_cap(const __user_cap_data_struct* data, int cap) {
  return (data[cap / 32].effective & (1u << (cap % 32))) != 0;
}

}  // namespace

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
  uint64_t malformed = 0;  // records that could not be read
  double load_seconds = 0.0;

  static int on_sample(void* ctx, void* data, size_t size) {
    auto* self = static_cast<Impl*>(ctx);
    ++self->handled;
    std::optional<trace::TraceEvent> event = decode_trace_record(data, size);
    if (!event) {
      ++self->malformed;
      return 0;
    }
    if (self->handler != nullptr) (*self->handler)(std::move(*event));
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

namespace {

// Keeps the first few attach failures, one line each, with libbpf's explanation when it gave one.
void note_failure(AttachStats* stats, const std::string& what, int err) {
  if (stats->failures.size() < 5) {
    std::string line = what + ": " + strerror(err);
    if (!libbpf_last_message().empty()) line += " (libbpf: " + libbpf_last_message() + ")";
    stats->failures.push_back(line);
  }
  libbpf_last_message().clear();
}

}  // namespace

// One probe site: a (file, offset) with its role and bpf_cookie.
struct TraceSession::Site {
  std::string path;
  uint64_t offset;
  uint32_t role;
  uint64_t cookie;
};

bool TraceSession::attach_tracepoints(AttachStats* stats, TraceError* error) {
  Impl& im = *impl_;
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
  return true;
}

std::vector<TraceSession::Site> TraceSession::probe_sites(AttachStats* stats) const {
  std::vector<Site> sites;
  std::set<std::pair<std::string, uint64_t>> seen;
  const std::vector<TraceFunctionSpec>& functions = impl_->opts.functions;
  for (size_t i = 0; i < functions.size(); ++i) {
    const TraceFunctionSpec& f = functions[i];
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
  return sites;
}

void TraceSession::attach_multi(const std::vector<Site>& sites, AttachStats* stats) {
  Impl& im = *impl_;
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
    int fd = attach_uprobe_multi(bpf_program__fd(prog), key.first, g.first, g.second, im.opts.pid);
    if (fd < 0) {
      int e = errno;
      stats->uprobes_failed += g.first.size();
      note_failure(stats,
                   "uprobe_multi " + key.first + " (" + std::to_string(g.first.size()) + " sites)",
                   e);
      continue;
    }
    links_.push_back(UprobeLink{nullptr, fd});
    stats->uprobes += g.first.size();
  }
}

void TraceSession::attach_per_site(const std::vector<Site>& sites, AttachStats* stats) {
  Impl& im = *impl_;
  for (const Site& site : sites) {
    // What LIBBPF_OPTS does, without its designated initializer (clang 19's -Wextra flags the
    // fields it leaves out in C++).
    bpf_uprobe_opts uo{};
    uo.sz = sizeof uo;
    uo.bpf_cookie = site.cookie;
    uo.retprobe = false;
    bpf_program* prog =
        site.role == TRACE_ROLE_RESUME ? im.skel->progs.trace_resume : im.skel->progs.trace_destroy;
    bpf_link* link =
        bpf_program__attach_uprobe_opts(prog, im.opts.pid, site.path.c_str(), site.offset, &uo);
    if (link == nullptr) {
      int e = errno;
      ++stats->uprobes_failed;
      char where[64];
      std::snprintf(where, sizeof where, "+0x%llx", static_cast<unsigned long long>(site.offset));
      note_failure(stats, "uprobe " + site.path + where, e);
      if (e == ESRCH) break;
      continue;
    }
    links_.push_back(UprobeLink{link, -1});
    ++stats->uprobes;
  }
}

bool TraceSession::reattach_per_site(AttachStats* stats, TraceError* error) {
  Impl& im = *impl_;
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
  if (im.opts.syscalls && !attach_tracepoints(stats, error)) return false;
  const std::vector<Site> sites = probe_sites(stats);
  if (im.multi) {
    attach_multi(sites, stats);
  } else {
    attach_per_site(sites, stats);
  }
  stats->uprobe_multi = im.multi;
  stats->attach_seconds = seconds_since(t0);
  if (im.multi && stats->uprobes == 0 && !sites.empty() &&
      im.opts.uprobe_mode == UprobeMode::kAuto) {
    // The kernel loaded the programs but makes no uprobe_multi link: one link per site then.
    return reattach_per_site(stats, error);
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

trace::ProbeStats TraceSession::stats() const {
  trace::ProbeStats out;
  out.malformed_records = impl_->malformed;
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return out;
  std::vector<uint64_t> values(static_cast<size_t>(ncpu));
  for (const TraceCounterRow& row : kTraceCounterTable) {
    const uint32_t k = row.counter;
    if (bpf_map__lookup_elem(impl_->skel->maps.counters, &k, sizeof k, values.data(),
                             values.size() * sizeof(uint64_t), 0) != 0) {
      continue;
    }
    for (uint64_t v : values) out.*row.field += v;
  }
  return out;
}

std::vector<trace::ThreadStateAtEnd> TraceSession::threads() const {
  std::vector<trace::ThreadStateAtEnd> out;
  if (!impl_->opts.syscalls && impl_->opts.functions.empty()) return out;
  const bpf_map* map = impl_->skel->maps.threads;
  uint32_t key = 0, next = 0;
  const void* prev = nullptr;
  for (size_t guard = 0; guard < 65536; ++guard) {
    if (bpf_map__get_next_key(map, prev, &next, sizeof next) != 0) break;
    trace_thread value{};
    if (bpf_map__lookup_elem(map, &next, sizeof next, &value, sizeof value, 0) == 0) {
      out.push_back(thread_state_at_end(next, value));
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
  // Closing a perf-event uprobe or a raw tracepoint waits for an RCU grace period (about 50 ms
  // here), uprobes one after the other under a kernel mutex; a uprobe_multi link waits once for
  // all its sites. The links are closed from several threads so that independent waits overlap.
  close_uprobe_links(links_);
  detach_seconds_ = seconds_since(t0);
}

}  // namespace asyncprobe::kernel
