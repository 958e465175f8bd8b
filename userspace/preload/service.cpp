#include "userspace/preload/service.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "userspace/preload/blocking_records.h"
#include "userspace/preload/config.h"
#include "userspace/preload/library.h"
#include "userspace/preload/modules.h"
#include "userspace/preload/protocol.h"
#include "userspace/preload/request.h"
#include "userspace/preload/signal_safe.h"
#include "userspace/preload/tracer.h"

namespace asyncprobe::preload {

namespace proto = preload_proto;

namespace {

// Connections served at once; more wait in the listen backlog (the kernel caps it at
// net.core.somaxconn). A request must arrive whole within kRequestDeadlineNs of its first byte and
// its reply be taken within kReplyDeadlineNs; a connection idle for kEvictIdleNs is closed when a
// new one needs its place.
constexpr size_t kMaxClients = 32;
constexpr int kBacklog = 4096;
constexpr uint64_t kRequestDeadlineNs = 2'000'000'000;
constexpr uint64_t kReplyDeadlineNs = 10'000'000'000;
constexpr uint64_t kEvictIdleNs = 250'000'000;
constexpr uint64_t kMaxTableBytes = 512ull << 20;  // all tables together
constexpr uint64_t kMaxOneTable = 256ull << 20;

int g_listen_fd = -1;
// Identity (device, inode) of our descriptors: a program that closes every fd (daemons do) may
// get the same numbers back for its own files; we must then never read, write or accept on them.
struct FdId {
  dev_t dev = 0;
  ino_t ino = 0;
};
FdId g_listen_id, g_wake_read_id, g_wake_write_id;

FdId fd_id(int fd) {
  struct stat st {};
  if (fd < 0 || fstat(fd, &st) != 0) return {};
  return {st.st_dev, st.st_ino};
}

bool still_ours(int fd, const FdId& id) {
  FdId now = fd_id(fd);
  return fd >= 0 && now.ino == id.ino && now.dev == id.dev && id.ino != 0;
}
char g_socket_path[sizeof(sockaddr_un::sun_path)] = {};
pid_t g_socket_owner = 0;
int g_wake[2] = {-1, -1};
std::atomic<int> g_loader_tid{0};
void (*g_exit_work)() = nullptr;
std::atomic<int> g_exit_state{0};  // futex word: 0 none, 1 asked for, 2 done
std::atomic<bool> g_service_running{false};
uint64_t g_exit_asked_ns = 0;  // the service thread's
constexpr uint64_t kExitTablesWaitNs = 10'000'000'000;
std::atomic<bool> g_loader_alive{false};

// Raw-syscall I/O: the blocking interposers must not see the library's own calls.
long sys_read(int fd, void* buf, size_t n) { return sys(SYS_read, fd, buf, n); }
long sys_send(int fd, const void* buf, size_t n) {
  return sys(SYS_sendto, fd, buf, n, MSG_NOSIGNAL, nullptr, 0);
}

// One connection. The thread serves every connection at once without ever blocking on one: a
// request is read as bytes arrive, and its reply is queued and sent as the client takes it, each
// phase under a deadline (docs/PRELOAD.md, "Socket protocol").
struct Client {
  int fd = -1;
  bool refused = false;      // another user: its first request gets kErrPermission, then the door
  bool close_after = false;  // close once the queued reply is out
  uint64_t deadline_ns = 0;  // of the request or reply in progress; 0 while idle
  uint64_t idle_since_ns = 0;
  proto::RequestHeader header{};
  size_t header_got = 0;
  std::string body;
  size_t body_got = 0;
  std::string out;  // reply bytes not yet sent, from out_sent on
  size_t out_sent = 0;
  // A kReadMemory reply streams straight from our memory: [mem_at, mem_end) is still to go, then
  // zeros_left zero bytes for what was unreadable, then the readable count.
  uint64_t mem_at = 0, mem_end = 0, mem_begin = 0, zeros_left = 0;
  bool streaming = false;
};

void queue_reply(Client& c, uint16_t op, int32_t status, const void* payload, size_t n) {
  proto::ReplyHeader h{proto::kMagic, op, proto::kVersion, status, 0, n};
  c.out.append(reinterpret_cast<const char*>(&h), sizeof h);
  if (n > 0) c.out.append(static_cast<const char*>(payload), n);
}

// ---- the table helper ------------------------------------------------------------------

struct HelperState {
  pid_t pid = 0;
  int out = -1;          // its stdout
  size_t requested = 0;  // modules [0, requested) were handed to a helper
  // The blob being read: header first, then straight into its final mapping.
  preload_table::TableHeader header{};
  size_t header_got = 0;
  char* blob = nullptr;
  size_t blob_got = 0;
  uint64_t total_bytes = 0;
} g_helper;

struct HelperChild {
  const char* path;
  char* const* argv;
  char* const* envp;
  int in, out, err;
  bool niced;
  char* exec_stack_top;      // the helper's, until its execve
  std::atomic<int> started;  // futex word: 1 once the helper exec'd (or failed to start)
};

int helper_exec(void* arg) {
  // A vfork child sharing our memory: raw system calls only until execve.
  auto* c = static_cast<HelperChild*>(arg);
  sys(SYS_dup2, c->in, 0);
  sys(SYS_dup2, c->out, 1);
  sys(SYS_dup2, c->err, 2);
  sys(436 /* close_range */, 3, ~0u, 0);
  if (c->niced) sys(SYS_setpriority, PRIO_PROCESS, 0, 10);
  sys(SYS_execve, c->path, c->argv, c->envp);
  sys(SYS_exit, 127);
  return 127;
}

// The helper's parent. An execve resets a process's exit signal to SIGCHLD, so the helper cannot
// be our direct child without the program getting a SIGCHLD and its wait() a child it never made.
// This go-between shares our memory (raw system calls only, every signal blocked), never execs,
// and exits with exit signal 0 once the helper is gone, with its status: the program sees
// nothing and we reap it with __WCLONE. The helper's SIGCHLD comes here.
int helper_reaper(void* arg) {
  auto* c = static_cast<HelperChild*>(arg);
  int pid = clone(helper_exec, c->exec_stack_top, CLONE_VM | CLONE_VFORK | SIGCHLD, c);
  // CLONE_VFORK: the helper has exec'd; the spawner's arguments may go. Our copies of the
  // descriptors would keep the helper's pipes open (no end of file for it or for us).
  sys(436 /* close_range */, 0, ~0u, 0);
  c->started.store(1);
  sys(SYS_futex, &c->started, FUTEX_WAKE, 1, nullptr, nullptr, 0);
  int status = 127 << 8;
  if (pid > 0) sys(SYS_wait4, pid, &status, 0, nullptr);
  sys(SYS_exit, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  return 0;
}

char g_child_stack[64 * 1024] __attribute__((aligned(16)));

}  // namespace

pid_t spawn_hidden_child(const char* path, char* const* argv, int in, int out, int err, bool niced,
                         char* stack, size_t stack_size) {
  char* envp[] = {nullptr};
  // The stack's upper half is the go-between's, the lower half the helper's until it execs.
  char* middle = stack + (stack_size / 2 & ~size_t{15});
  HelperChild child{path, argv, envp, in, out, err, niced, middle, {0}};
  // No program signal handler may run in a child sharing our memory: every signal blocked across
  // the clone (the children inherit it; the helper unblocks its own).
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int pid = clone(helper_reaper, stack + stack_size, CLONE_VM, &child);  // exit signal 0
  while (pid > 0 && child.started.load() == 0) {
    sys(SYS_futex, &child.started, FUTEX_WAIT, 0, nullptr, nullptr, 0);
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return pid > 0 ? pid : -1;
}

namespace {

void finish_helper() {
  if (g_helper.out >= 0) close(g_helper.out);
  g_helper.out = -1;
  if (g_helper.pid > 0) {
    int st = 0;
    while (waitpid(g_helper.pid, &st, __WCLONE) < 0 && errno == EINTR) {
    }
  }
  g_helper.pid = 0;
  if (g_helper.blob != nullptr) munmap(g_helper.blob, g_helper.total_bytes);
  g_helper.blob = nullptr;
  g_helper.header_got = 0;
  g_helper.blob_got = 0;
}

uint64_t g_table_bytes = 0;

void install_blob() {
  const auto& h = g_helper.header;
  char* blob = g_helper.blob;
  g_helper.blob = nullptr;
  mprotect(blob, h.total_bytes, PROT_READ);
  TableView v = make_table_view(blob, h.total_bytes);
  if (!v.valid() || h.module_id >= Modules::count()) {
    munmap(blob, h.total_bytes);
    return;
  }
  ModuleRecord* m = Modules::at(h.module_id);
  // The quick blob is replaced by the complete one; readers may still hold the old view, so it
  // stays mapped (its memory is counted against the cap).
  m->tables.store(new TableView(v), std::memory_order_release);
  g_table_bytes += h.total_bytes;
}

// Reads what the helper wrote; false at its end.
bool pump_helper() {
  if (g_helper.header_got < sizeof g_helper.header) {
    long r = sys_read(g_helper.out, reinterpret_cast<char*>(&g_helper.header) + g_helper.header_got,
                      sizeof g_helper.header - g_helper.header_got);
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) return true;
    if (r <= 0) return false;
    g_helper.header_got += static_cast<size_t>(r);
    if (g_helper.header_got < sizeof g_helper.header) return true;
    const auto& h = g_helper.header;
    if (h.magic != preload_table::kMagic || h.total_bytes < sizeof h ||
        h.total_bytes > kMaxOneTable || g_table_bytes + h.total_bytes > kMaxTableBytes) {
      return false;
    }
    g_helper.total_bytes = h.total_bytes;
    void* p =
        mmap(nullptr, h.total_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return false;
    g_helper.blob = static_cast<char*>(p);
    std::memcpy(g_helper.blob, &h, sizeof h);
    g_helper.blob_got = sizeof h;
  } else {
    long r = sys_read(g_helper.out, g_helper.blob + g_helper.blob_got,
                      g_helper.total_bytes - g_helper.blob_got);
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) return true;
    if (r <= 0) return false;
    g_helper.blob_got += static_cast<size_t>(r);
  }
  if (g_helper.blob != nullptr && g_helper.blob_got == g_helper.total_bytes) {
    install_blob();
    g_helper.header_got = 0;
    g_helper.blob_got = 0;
  }
  return true;
}

bool helper_pending() { return g_helper.pid > 0 || g_helper.requested < Modules::count(); }

void start_helper() {
  size_t n = Modules::count();
  std::string list;
  for (size_t i = g_helper.requested; i < n; ++i) {
    const ModuleRecord* m = Modules::at(i);
    if (m->unloaded.load() || m->is_self || m->is_vdso || m->path[0] != '/') continue;
    list += std::to_string(m->id) + " " + m->path + "\n";
  }
  g_helper.requested = n;
  const char* helper = config().helper;
  if (list.empty() || helper[0] == '\0' || access(helper, X_OK) != 0) return;
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0) return;
  if (pipe2(out, O_CLOEXEC) != 0) {
    close(in[0]);
    close(in[1]);
    return;
  }
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  std::vector<std::string> args = {helper};
  std::string dirs = config().debug_dirs;
  for (size_t at = 0; at < dirs.size();) {
    size_t colon = dirs.find(':', at);
    if (colon == std::string::npos) colon = dirs.size();
    if (colon > at) {
      args.push_back("--debug-dir");
      args.push_back(dirs.substr(at, colon - at));
    }
    at = colon + 1;
  }
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = spawn_hidden_child(helper, argv.data(), in[0], out[1], devnull >= 0 ? devnull : 2,
                                 true, g_child_stack, sizeof g_child_stack);
  close(in[0]);
  close(out[1]);
  if (devnull >= 0) close(devnull);
  if (pid <= 0) {
    close(in[1]);
    close(out[0]);
    return;
  }
  // The helper reads its whole list before writing anything: no deadlock.
  {
    const char* p = list.data();
    size_t left = list.size();
    while (left > 0) {
      long w = sys(SYS_write, in[1], p, left);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) break;
      p += w;
      left -= static_cast<size_t>(w);
    }
  }
  close(in[1]);
  g_helper.pid = pid;
  g_helper.out = out[0];
  g_helper.header_got = 0;
  g_helper.blob_got = 0;
}

// ---- requests -----------------------------------------------------------------------------

struct TraceSession {
  int fd = -1;
  std::vector<EntryCounts> baseline;
  uint64_t start_ns = 0;
  uint64_t lost = 0;
};
// Never destroyed: the service thread may still serve while the process runs its exit handlers.
TraceSession& g_trace = *new TraceSession();

// `rq` is checked (decode_request): at most kMaxRead bytes, no wrap-around.
void start_read(Client& c, const proto::ReadRequest& rq) {
  proto::ReplyHeader h{proto::kMagic, proto::kReadMemory, proto::kVersion, proto::kOk, 0,
                       rq.length + 8};
  c.out.append(reinterpret_cast<const char*>(&h), sizeof h);
  c.mem_begin = c.mem_at = rq.address;
  c.mem_end = rq.address + rq.length;
  c.zeros_left = 0;
  c.streaming = true;
}

enum class Sent { kDone, kLater, kFailed };

Sent send_some(int fd, const void* p, size_t n, size_t* sent) {
  long w = sys_send(fd, p, n);
  if (w > 0) {
    *sent = static_cast<size_t>(w);
    return Sent::kDone;
  }
  *sent = 0;
  if (w < 0 && (errno == EINTR || errno == EAGAIN)) return Sent::kLater;
  return Sent::kFailed;
}

// Straight from our memory into the socket: the kernel reports an unreadable page as EFAULT, so
// nothing faults and no copy of the target's memory is left in its heap. At the first unreadable
// byte the rest becomes zeros and the count of readable bytes says where that began.
Sent stream_memory(Client& c) {
  static const char kZeros[4096] = {};
  while (c.mem_at < c.mem_end) {
    uint64_t piece = c.mem_end - c.mem_at < (256u << 10) ? c.mem_end - c.mem_at : (256u << 10);
    size_t sent = 0;
    Sent r = send_some(c.fd, reinterpret_cast<const void*>(c.mem_at), piece, &sent);
    if (r == Sent::kFailed && errno == EFAULT) {
      // Narrow down to the page: bytes before the fault may still be readable.
      uint64_t to_page = 4096 - (c.mem_at & 4095);
      if (piece > to_page)
        r = send_some(c.fd, reinterpret_cast<const void*>(c.mem_at), to_page, &sent);
      if (r == Sent::kFailed && errno == EFAULT) {
        c.zeros_left = c.mem_end - c.mem_at;
        c.mem_end = c.mem_at;
        break;
      }
    }
    if (r != Sent::kDone) return r;
    c.mem_at += sent;
  }
  while (c.zeros_left > 0) {
    size_t sent = 0;
    Sent r =
        send_some(c.fd, kZeros, c.zeros_left < sizeof kZeros ? c.zeros_left : sizeof kZeros, &sent);
    if (r != Sent::kDone) return r;
    c.zeros_left -= sent;
  }
  uint64_t readable = c.mem_at - c.mem_begin;
  c.out.assign(reinterpret_cast<const char*>(&readable), sizeof readable);
  c.out_sent = 0;
  c.streaming = false;
  return Sent::kDone;
}

// Sends what the client will take now: kDone once the whole reply is out.
Sent flush_client(Client& c) {
  for (;;) {
    while (c.out_sent < c.out.size()) {
      size_t sent = 0;
      Sent r = send_some(c.fd, c.out.data() + c.out_sent, c.out.size() - c.out_sent, &sent);
      if (r != Sent::kDone) return r;
      c.out_sent += sent;
    }
    c.out.clear();
    c.out_sent = 0;
    if (!c.streaming) return Sent::kDone;
    if (Sent r = stream_memory(c); r != Sent::kDone) return r;
  }
}

bool read_small_file(const char* path, std::string* out) {
  int fd = raw_open(path, O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) return false;
  char buf[16384];
  for (;;) {
    long n = sys_read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out->append(buf, static_cast<size_t>(n));
    if (out->size() > proto::kMaxPayload) break;
  }
  raw_close(fd);
  return true;
}

void serve_proc_file(Client& c, const Request& rq) {
  std::string data;
  bool ok = false;
  if (rq.proc_path[0] != '\0') {
    ok = read_small_file(rq.proc_path, &data);
  } else if (rq.proc_exe) {
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf);
    ok = n > 0;
    if (ok) data.assign(buf, static_cast<size_t>(n));
  } else if (rq.proc_tasks) {
    if (DIR* d = opendir("/proc/self/task")) {
      while (dirent* e = readdir(d)) {
        if (e->d_name[0] != '.') data += std::string(e->d_name) + "\n";
      }
      closedir(d);
      ok = true;
    }
  }
  if (!ok) return queue_reply(c, proto::kProcFile, proto::kErrNotFound, nullptr, 0);
  queue_reply(c, proto::kProcFile, proto::kOk, data.data(), data.size());
}

uint32_t features() {
  uint32_t f = 0;
  if (config().trace && tracer_patched_count() > 0) f |= proto::kFeatureTrace;
  if (config().blocking) f |= proto::kFeatureBlocking;
  if (Modules::tables_complete()) f |= proto::kFeatureTablesComplete;
  return f;
}

void queue_trace_state(Client& c, uint16_t op) {
  uint64_t now = monotonic_ns();
  std::vector<proto::ResumeEvent> events;
  uint64_t lost = 0;
  tracer_drain(&events, &lost, now);
  g_trace.lost += lost;
  std::vector<EntryCounts> counts;
  tracer_sum_counts(&counts);
  std::vector<proto::CountRecord> records;
  uint64_t total = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    EntryCounts base = i < g_trace.baseline.size() ? g_trace.baseline[i] : EntryCounts{};
    proto::CountRecord c{static_cast<uint32_t>(i), 0, counts[i].resumes - base.resumes,
                         counts[i].starts - base.starts, counts[i].dispatches - base.dispatches};
    if (c.resumes == 0 && c.starts == 0 && c.dispatches == 0) continue;
    records.push_back(c);
    total += c.resumes;
  }
  proto::TracePollReply r{now, events.size(), g_trace.lost, records.size(), total};
  std::string payload(reinterpret_cast<const char*>(&r), sizeof r);
  payload.append(reinterpret_cast<const char*>(events.data()),
                 events.size() * sizeof(proto::ResumeEvent));
  payload.append(reinterpret_cast<const char*>(records.data()),
                 records.size() * sizeof(proto::CountRecord));
  queue_reply(c, op, proto::kOk, payload.data(), payload.size());
}

void stop_trace() {
  g_trace.fd = -1;
  tracer_set_flags(config().trace_from_start ? kTraceCount : 0);
  std::vector<proto::ResumeEvent> discard;
  uint64_t lost = 0;
  tracer_drain(&discard, &lost, monotonic_ns());
}

class Strings {
 public:
  Strings() { bytes_.push_back('\0'); }
  uint32_t add(const char* s) {
    if (s == nullptr || s[0] == '\0') return 0;
    uint32_t at = static_cast<uint32_t>(bytes_.size());
    bytes_.append(s);
    bytes_.push_back('\0');
    return at;
  }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

}  // namespace

std::string trace_functions_payload() {
  Strings s;
  std::vector<proto::FunctionRecord> recs;
  size_t n = tracer_function_count();
  for (size_t i = 0; i < n; ++i) {
    const TracedFunction& f = tracer_function(i);
    proto::FunctionRecord r{};
    r.id = f.id;
    r.resume = f.resume;
    r.traced = f.traced ? 1 : 0;
    r.flags = f.gcc && f.index_offset >= 0 ? 1 : 0;
    if (f.module_id < Modules::count()) r.object = s.add(Modules::at(f.module_id)->path);
    Modules::CoroRef ref;
    if (Modules::coroutine_at_pc(f.resume, &ref) && ref.resume_abs() == f.resume) {
      r.name = s.add(ref.view.str(ref.coro->name));
      r.file = s.add(ref.view.str(ref.coro->decl_file));
      r.line = ref.coro->decl_line;
    }
    recs.push_back(r);
  }
  uint32_t head[2] = {static_cast<uint32_t>(recs.size()), static_cast<uint32_t>(s.bytes().size())};
  std::string payload(reinterpret_cast<const char*>(head), sizeof head);
  payload.append(reinterpret_cast<const char*>(recs.data()),
                 recs.size() * sizeof(proto::FunctionRecord));
  payload += s.bytes();
  return payload;
}

std::string blocking_payload(uint64_t since) {
  std::vector<BlockingSample> samples;
  uint64_t next = 0, dropped = 0;
  blocking_samples(since, &samples, &next, &dropped);
  Strings s;
  std::vector<proto::BlockingRecord> recs;
  std::vector<proto::BlockingFrame> frames;
  for (const auto& smp : samples) {
    proto::BlockingRecord r{};
    r.call = s.add(smp.call);
    r.tid = static_cast<uint32_t>(smp.tid);
    r.start_ns = smp.start_ns;
    r.duration_ns = smp.duration_ns;
    r.call_site = smp.app_site != 0 ? smp.app_site : smp.call_site;
    r.call_site_text = s.add(describe_call_site(r.call_site).c_str());
    r.frames_begin = static_cast<uint32_t>(frames.size());
    for (const auto& f : describe_sample_frames(smp)) {
      frames.push_back({f.frame, s.add(f.function.c_str()), s.add(f.file.c_str()), f.line, 0});
    }
    r.frames_count = static_cast<uint32_t>(frames.size()) - r.frames_begin;
    recs.push_back(r);
  }
  proto::BlockingPollReply head{next,
                                config().blocking ? config().blocking_threshold_ns : 0,
                                static_cast<uint32_t>(recs.size()),
                                static_cast<uint32_t>(dropped),
                                static_cast<uint32_t>(frames.size()),
                                static_cast<uint32_t>(s.bytes().size())};
  std::string payload(reinterpret_cast<const char*>(&head), sizeof head);
  payload.append(reinterpret_cast<const char*>(recs.data()),
                 recs.size() * sizeof(proto::BlockingRecord));
  payload.append(reinterpret_cast<const char*>(frames.data()),
                 frames.size() * sizeof(proto::BlockingFrame));
  payload += s.bytes();
  return payload;
}

namespace {

void handle_trace_request(Client& c, const Request& rq) {
  const uint16_t op = rq.op;
  if (op == proto::kTraceStart) {
    if (!config().trace || tracer_patched_count() == 0)
      return queue_reply(c, op, proto::kErrUnsupported, nullptr, 0);
    if (g_trace.fd >= 0 && g_trace.fd != c.fd)
      return queue_reply(c, op, proto::kErrBusy, nullptr, 0);
    g_trace = TraceSession{};
    g_trace.fd = c.fd;
    tracer_set_flags(
        static_cast<uint8_t>(kTraceCount | ((rq.trace_flags & 1) != 0 ? kTraceEvents : 0)));
    std::vector<proto::ResumeEvent> discard;
    uint64_t lost = 0;
    tracer_drain(&discard, &lost, monotonic_ns());
    tracer_sum_counts(&g_trace.baseline);
    g_trace.start_ns = monotonic_ns();
    proto::TraceStartReply reply{g_trace.start_ns};
    return queue_reply(c, op, proto::kOk, &reply, sizeof reply);
  }
  // kTracePoll, kTraceStop: only the session's own connection.
  if (g_trace.fd != c.fd) return queue_reply(c, op, proto::kErrBadRequest, nullptr, 0);
  queue_trace_state(c, op);
  if (op == proto::kTraceStop) stop_trace();
}

// A complete request: its reply is queued (or, for memory, its streaming set up).
void handle_request(Client& c) {
  const Request rq = decode_request(c.header.op, c.body.data(), c.body.size());
  const uint16_t op = rq.op;
  if (!rq.ok) return queue_reply(c, op, proto::kErrBadRequest, nullptr, 0);
  poll_modules_without_hook();
  switch (op) {
    case proto::kHello: {
      proto::HelloReply r{static_cast<uint32_t>(self_pid()),
                          static_cast<uint32_t>(geteuid()),
                          features(),
                          tracer_patched_count(),
                          tracer_unpatched_count(),
                          0};
      return queue_reply(c, op, proto::kOk, &r, sizeof r);
    }
    case proto::kReadMemory:
      return start_read(c, rq.read);
    case proto::kProcFile:
      return serve_proc_file(c, rq);
    case proto::kTraceStart:
    case proto::kTracePoll:
    case proto::kTraceStop:
      return handle_trace_request(c, rq);
    case proto::kTraceFunctions: {
      std::string reply = trace_functions_payload();
      return queue_reply(c, op, proto::kOk, reply.data(), reply.size());
    }
    case proto::kBlockingPoll: {
      std::string reply = blocking_payload(rq.since);
      return queue_reply(c, op, proto::kOk, reply.data(), reply.size());
    }
    default:
      return queue_reply(c, op, proto::kErrBadRequest, nullptr, 0);
  }
}

// Reads what has arrived of the next request; false closes the connection. A complete request
// is handled and its reply queued under the reply deadline.
bool read_request(Client& c, uint64_t now) {
  for (;;) {
    const bool in_header = c.header_got < sizeof c.header;
    char* to =
        in_header ? reinterpret_cast<char*>(&c.header) + c.header_got : c.body.data() + c.body_got;
    size_t want = in_header ? sizeof c.header - c.header_got : c.body.size() - c.body_got;
    if (want > 0) {
      long r = sys_read(c.fd, to, want);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && errno == EAGAIN) return true;
      if (r <= 0) return false;
      if (c.header_got == 0) c.deadline_ns = now + kRequestDeadlineNs;  // from its first byte
      (in_header ? c.header_got : c.body_got) += static_cast<size_t>(r);
      if (static_cast<size_t>(r) < want) continue;
      if (in_header) {
        if (c.refused) {
          queue_reply(c, c.header.op, proto::kErrPermission, nullptr, 0);
          c.close_after = true;
        } else if (!request_header_ok(c.header)) {
          queue_reply(c, c.header.op, proto::kErrBadRequest, nullptr, 0);
          c.close_after = true;
        } else {
          c.body.assign(c.header.payload_bytes, '\0');
          c.body_got = 0;
          continue;
        }
      }
    }
    if (!c.close_after) handle_request(c);
    c.header_got = 0;
    c.body.clear();
    c.body_got = 0;
    c.deadline_ns = now + kReplyDeadlineNs;
    return true;
  }
}

bool reply_pending(const Client& c) { return c.out_sent < c.out.size() || c.streaming; }

// `closed_by_program`: the program closed our descriptor behind our back (a daemon closing every
// fd): forget it without close(), whose number may already be the program's again.
void drop_client(std::vector<Client>& clients, size_t i, bool closed_by_program = false) {
  if (g_trace.fd == clients[i].fd) stop_trace();
  if (!closed_by_program) close(clients[i].fd);
  clients.erase(clients.begin() + static_cast<long>(i));
}

// Sends what it can of the reply in progress; false closes the connection.
bool continue_reply(Client& c, uint64_t now) {
  Sent r = flush_client(c);
  if (r == Sent::kFailed) return false;
  if (r == Sent::kLater) return true;
  if (c.close_after) return false;
  c.deadline_ns = 0;
  c.idle_since_ns = now;
  return true;
}

// The connection idle the longest, if it has been idle long enough to make room for a waiting
// client (never a trace session's), or -1.
long evictable(const std::vector<Client>& clients, uint64_t now) {
  long best = -1;
  for (size_t i = 0; i < clients.size(); ++i) {
    const Client& c = clients[i];
    if (c.deadline_ns != 0 || c.fd == g_trace.fd || now - c.idle_since_ns < kEvictIdleNs) continue;
    if (best < 0 || c.idle_since_ns < clients[static_cast<size_t>(best)].idle_since_ns)
      best = static_cast<long>(i);
  }
  return best;
}

// Takes waiting connections while there is room (or an idle one to close for it). Those that find
// no room stay queued in the listen backlog until a connection ends or a deadline passes.
void accept_clients(std::vector<Client>& clients, uint64_t now) {
  for (;;) {
    long victim = clients.size() >= kMaxClients ? evictable(clients, now) : -2;
    if (victim == -1) return;
    int fd = accept4(g_listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    if (victim >= 0) drop_client(clients, static_cast<size_t>(victim));
    Client c;
    c.fd = fd;
    c.idle_since_ns = now;
    ucred cred{};
    socklen_t len = sizeof cred;
    // Only our own user: anyone else (root included) gets one refusal and the door. Its first
    // request is read first so that the refusal is what it reads back.
    c.refused = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != geteuid();
    if (c.refused) c.deadline_ns = now + kRequestDeadlineNs;
    clients.push_back(std::move(c));
  }
}

// Milliseconds until the nearest deadline (-1: none). A full table also wakes when its oldest
// idle connection may be closed for a waiting one.
int poll_timeout_ms(const std::vector<Client>& clients, uint64_t now) {
  uint64_t next = ~0ull;
  for (const Client& c : clients) {
    if (c.deadline_ns != 0 && c.deadline_ns < next) next = c.deadline_ns;
    // (Already evictable: the listening socket is polled, nothing to wake for.)
    uint64_t evictable_at = c.idle_since_ns + kEvictIdleNs;
    if (clients.size() >= kMaxClients && c.deadline_ns == 0 && c.fd != g_trace.fd &&
        evictable_at > now && evictable_at < next)
      next = evictable_at;
  }
  if (next == ~0ull) return -1;
  return next <= now ? 0 : static_cast<int>((next - now) / 1000000 + 1);
}

// One client's poll result; false closes the connection.
bool serve_client(Client& c, short ev, uint64_t now) {
  if ((ev & POLLERR) != 0) return false;
  if (reply_pending(c)) return (ev & (POLLOUT | POLLHUP)) == 0 || continue_reply(c, now);
  if ((ev & (POLLIN | POLLHUP)) == 0) return true;
  if (!read_request(c, now)) return false;
  return !reply_pending(c) && !c.close_after ? true : continue_reply(c, now);
}

void serve_clients(std::vector<Client>& clients, const std::vector<pollfd>& fds, size_t first,
                   bool accept_waiting) {
  uint64_t now = monotonic_ns();
  // Clients polled this round come first in `clients`; one accepted now waits for the next.
  for (size_t i = fds.size() - first; i-- > 0;) {
    short ev = fds[first + i].revents;
    if ((ev & POLLNVAL) != 0) {
      drop_client(clients, i, true);
    } else if (!serve_client(clients[i], ev, now) ||
               (clients[i].deadline_ns != 0 && now >= clients[i].deadline_ns)) {
      drop_client(clients, i);
    }
  }
  if (accept_waiting) accept_clients(clients, now);
}

// The program closes every descriptor (daemons do), ours too: stop watching ours rather than spin
// on POLLNVAL or touch the program's files (snapshots over the socket end; the crash handler keeps
// working).
void check_own_descriptors(const std::vector<pollfd>& fds) {
  if ((fds[0].revents & POLLNVAL) != 0 ||
      (fds[0].revents != 0 && !still_ours(g_wake[0], g_wake_read_id)))
    g_wake[0] = -1;
  if ((fds[2].revents & POLLNVAL) != 0 ||
      (fds[2].revents != 0 && !still_ours(g_listen_fd, g_listen_id)))
    g_listen_fd = -1;
  if ((fds[1].revents & POLLNVAL) != 0 && g_helper.out >= 0) {
    g_helper.out = -1;
    finish_helper();
  }
}

// The exit work waits for the tables that name what it reports: this thread computes them, so it
// goes on pumping the helper until it is done (10 s at most).
void maybe_run_exit_work() {
  if (g_exit_state.load() != 1) return;
  if (g_exit_asked_ns == 0) g_exit_asked_ns = monotonic_ns();
  if (helper_pending() && monotonic_ns() - g_exit_asked_ns <= kExitTablesWaitNs) return;
  g_loader_alive.store(false);
  g_exit_work();
  g_exit_state.store(2);
  sys(SYS_futex, &g_exit_state, FUTEX_WAKE, 1 << 30, nullptr, nullptr, 0);
}

void* service_main(void*) {
  g_loader_tid.store(self_tid());
  set_internal_thread(true);
  g_service_running.store(true);
  std::vector<Client> clients;
  std::vector<pollfd> fds;
  for (;;) {
    if (g_helper.pid == 0 && g_helper.requested < Modules::count()) start_helper();
    g_loader_alive.store(helper_pending());
    uint64_t now = monotonic_ns();
    bool room = clients.size() < kMaxClients || evictable(clients, now) >= 0;
    fds.clear();
    fds.push_back({g_wake[0], POLLIN, 0});
    fds.push_back({g_helper.out, POLLIN, 0});
    fds.push_back({room ? g_listen_fd : -1, POLLIN, 0});
    for (const Client& c : clients)
      fds.push_back({c.fd, static_cast<short>(reply_pending(c) ? POLLOUT : POLLIN), 0});
    int timeout = poll_timeout_ms(clients, now);
    if (g_exit_state.load() == 1 && (timeout < 0 || timeout > 100)) timeout = 100;
    int n = poll(fds.data(), fds.size(), timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      sleep_ms(100);
      continue;
    }
    check_own_descriptors(fds);
    maybe_run_exit_work();
    if ((fds[0].revents & POLLIN) != 0 && g_wake[0] >= 0) {
      char buf[64];
      while (sys_read(g_wake[0], buf, sizeof buf) > 0) {
      }
    }
    if (fds[1].revents != 0 && g_helper.out >= 0) {
      if (!pump_helper()) finish_helper();
    }
    serve_clients(clients, fds, 3, (fds[2].revents & POLLIN) != 0 && g_listen_fd >= 0);
  }
  return nullptr;
}

bool private_dir(const std::string& dir, std::string* why) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    *why = "cannot create " + dir + ": " + std::strerror(errno);
    return false;
  }
  struct stat st {};
  if (lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
      (st.st_mode & 077) != 0) {
    *why = dir + " is not a private directory of this user (want mode 0700, owner uid " +
           std::to_string(geteuid()) + ")";
    return false;
  }
  return true;
}

bool bind_socket(std::string* why) {
  std::string dir = preload_proto::socket_directory(config().socket_dir, geteuid());
  if (!private_dir(dir, why)) return false;
  std::string path = preload_proto::socket_path(config().socket_dir, geteuid(), self_pid());
  if (path.size() >= sizeof g_socket_path) {
    *why = "socket path too long: " + path;
    return false;
  }
  // Non-blocking: the thread takes every waiting connection in a loop, and must never wait there.
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    *why = std::string("socket: ") + std::strerror(errno);
    return false;
  }
  unlink(path.c_str());  // a stale socket of a process that had our pid
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  mode_t old = umask(0177);
  int rc = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  umask(old);
  if (rc != 0 || chmod(path.c_str(), 0600) != 0 || listen(fd, kBacklog) != 0) {
    *why = "cannot listen on " + path + ": " + std::strerror(errno);
    close(fd);
    return false;
  }
  std::memcpy(g_socket_path, path.c_str(), path.size() + 1);
  g_socket_owner = self_pid();
  g_listen_fd = fd;
  g_listen_id = fd_id(fd);
  return true;
}

}  // namespace

bool start_service(std::string* why) {
  bool socket_ok = true;
  if (config().socket) socket_ok = bind_socket(why);
  if (pipe2(g_wake, O_CLOEXEC | O_NONBLOCK) != 0) return false;
  g_wake_read_id = fd_id(g_wake[0]);
  g_wake_write_id = fd_id(g_wake[1]);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, size_t{512} * 1024);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);  // the thread starts with every signal blocked
  pthread_t t;
  int rc = pthread_create(&t, &attr, service_main, nullptr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    *why = "cannot start the library's thread";
    return false;
  }
  pthread_setname_np(t, "asyncprobe");
  pthread_detach(t);
  g_loader_alive.store(true);
  return socket_ok;
}

void service_wake() {
  if (g_wake[1] >= 0 && still_ours(g_wake[1], g_wake_write_id)) {
    char c = 1;
    sys(SYS_write, g_wake[1], &c, 1);
  }
}

void service_set_exit_work(void (*work)()) { g_exit_work = work; }

bool service_run_exit_work(int timeout_ms) {
  if (g_exit_work == nullptr || !g_service_running.load() || self_tid() == g_loader_tid.load())
    return false;
  int none = 0;
  g_exit_state.compare_exchange_strong(none, 1);
  service_wake();
  for (int waited = 0; waited < timeout_ms && g_exit_state.load() != 2; waited += 100) {
    timespec slice{0, 100'000'000};
    sys(SYS_futex, &g_exit_state, FUTEX_WAIT, 1, &slice, nullptr, 0);
  }
  return g_exit_state.load() == 2;
}

void service_unlink_socket() {
  if (g_socket_path[0] != '\0' && g_socket_owner == self_pid()) {
    sys(SYS_unlinkat, AT_FDCWD, g_socket_path, 0);
    g_socket_path[0] = '\0';
  }
}

bool table_loader_alive() { return g_loader_alive.load(); }
int table_loader_tid() { return g_loader_tid.load(); }

void service_after_fork_child() {
  if (g_listen_fd >= 0) close(g_listen_fd);
  g_listen_fd = -1;
  g_socket_path[0] = '\0';
  g_helper = HelperState{};
  g_loader_alive.store(false);
  g_service_running.store(false);  // the thread did not come with the fork
}

}  // namespace asyncprobe::preload
