#include "userspace/process/preload_client.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "userspace/util/exit_codes.h"

namespace asyncprobe::process {

namespace proto = preload_proto;

namespace {

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

const char* status_text(int32_t s) {
  switch (s) {
    case proto::kErrPermission:
      return "permission denied";
    case proto::kErrBadRequest:
      return "bad request";
    case proto::kErrUnsupported:
      return "not enabled in the target";
    case proto::kErrBusy:
      return "busy";
    case proto::kErrNotFound:
      return "not served";
    default:
      return "error";
  }
}

constexpr int kAnswerSeconds = 5;  // for connect() and the first answer

std::string busy_text(int pid) {
  return "pid " + std::to_string(pid) + "'s asyncprobe socket is busy: no answer within " +
         std::to_string(kAnswerSeconds) +
         " s (other clients hold it, or the program is stopped); try again";
}

// Whether `dir` exists and is safe to find the target's socket in; fills why and code when not.
bool check_socket_dir(int pid, const std::string& dir, std::string* why, int* code) {
  struct stat st {};
  if (lstat(dir.c_str(), &st) != 0) {
    *why = "pid " + std::to_string(pid) + " serves no asyncprobe socket to this user (no " + dir +
           "; start it with `asyncprobe run`)";
    *code = util::kExitPermission;
    return false;
  }
  // Talk only through a directory that is ours and private: nobody else can have put a socket in
  // it.
  if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
    *why = dir + " is not a private directory of uid " + std::to_string(geteuid()) +
           "; refusing to use it";
    *code = util::kExitPermission;
    return false;
  }
  return true;
}

// Explains a failed connect() to the target's socket, errno `e`.
void explain_connect_error(int e, int pid, const std::string& path, std::string* why, int* code) {
  if (e == ENOENT) {
    *why = "pid " + std::to_string(pid) + " serves no asyncprobe socket (no " + path +
           "; start it with `asyncprobe run`)";
    *code = util::kExitPermission;
  } else if (e == ECONNREFUSED) {
    // Left by a process that died without its exit handlers (a signal); a new `asyncprobe run`
    // with that pid replaces it.
    bool dead = kill(pid, 0) != 0 && errno == ESRCH;
    *why = "stale socket " + path + ": pid " + std::to_string(pid) +
           (dead ? " does not exist (the socket was left by a process that died)"
                 : " no longer serves it (not started with `asyncprobe run`, or its library "
                   "stopped serving)");
    *code = dead ? util::kExitNoProcess : util::kExitPermission;
  } else if (e == EAGAIN || e == ETIMEDOUT) {
    *why = busy_text(pid);
    *code = util::kExitBusy;
  } else if (e == EACCES || e == EPERM) {
    *why = "permission denied connecting to " + path;
    *code = util::kExitPermission;
  } else {
    *why = "cannot connect to " + path + ": " + std::strerror(e);
    *code = util::kExitInternal;
  }
}

// Connects to the socket at `path` and checks that pid, of our uid, serves it; the connected fd
// with send and receive timeouts, or -1 with why and code filled.
int connect_to_target(int pid, const std::string& path, std::string* why, int* code) {
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    *why = "socket path too long: " + path;
    *code = util::kExitInternal;
    return -1;
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *why = std::string("socket: ") + std::strerror(errno);
    *code = util::kExitInternal;
    return -1;
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  // A full listen backlog makes connect() wait, for as long as the send timeout.
  timeval answer{kAnswerSeconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &answer, sizeof answer);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &answer, sizeof answer);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int e = errno;
    close(fd);
    explain_connect_error(e, pid, path, why, code);
    return -1;
  }
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.pid != pid ||
      cred.uid != geteuid()) {
    close(fd);
    *why = "socket " + path + " is not served by pid " + std::to_string(pid) + " of uid " +
           std::to_string(geteuid());
    *code = util::kExitPermission;
    return -1;
  }
  return fd;
}

}  // namespace

std::unique_ptr<PreloadConnection> PreloadConnection::open(int pid, std::string* why, int* code,
                                                           const std::string& socket_dir) {
  int dummy = 0;
  if (code == nullptr) code = &dummy;
  std::string dir_choice = socket_dir.empty() ? env_or_empty("ASYNCPROBE_SOCKET_DIR") : socket_dir;
  std::string dir = proto::socket_directory(dir_choice, geteuid());
  std::string path = proto::socket_path(dir_choice, geteuid(), pid);
  if (!check_socket_dir(pid, dir, why, code)) return nullptr;
  int fd = connect_to_target(pid, path, why, code);
  if (fd < 0) return nullptr;
  std::unique_ptr<PreloadConnection> c(new PreloadConnection());
  c->fd_ = fd;
  c->pid_ = pid;
  proto::ReplyHeader h{};
  std::string body;
  if (!c->request(proto::kHello, nullptr, 0, &h, &body)) {
    if (c->last_errno_ == EAGAIN) {
      *why = busy_text(pid);
      *code = util::kExitBusy;
    } else if (kill(pid, 0) != 0 && errno == ESRCH) {
      *why = "pid " + std::to_string(pid) + " exited while connecting to its socket";
      *code = util::kExitTargetExited;
    } else {
      *why = "pid " + std::to_string(pid) + " closed the socket without answering";
      *code = util::kExitPermission;
    }
    return nullptr;
  }
  if (h.status == proto::kErrBusy) {
    *why = busy_text(pid);
    *code = util::kExitBusy;
    return nullptr;
  }
  // Answered: from now on a request may take longer (a large read from a loaded program).
  timeval tv{30, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (h.status != proto::kOk || body.size() < sizeof(proto::HelloReply)) {
    *why = h.status == proto::kErrPermission
               ? "pid " + std::to_string(pid) + " serves only its own user; this is uid " +
                     std::to_string(geteuid())
               : std::string("pid ") + std::to_string(pid) + " refused: " + status_text(h.status);
    *code = util::kExitPermission;
    return nullptr;
  }
  std::memcpy(&c->hello_, body.data(), sizeof c->hello_);
  return c;
}

bool PreloadConnection::refresh_hello() {
  std::lock_guard<std::mutex> lock(mu_);
  proto::ReplyHeader h{};
  std::string body;
  if (!request(proto::kHello, nullptr, 0, &h, &body) || h.status != proto::kOk ||
      body.size() < sizeof hello_) {
    return false;
  }
  std::memcpy(&hello_, body.data(), sizeof hello_);
  return true;
}

PreloadConnection::~PreloadConnection() {
  if (fd_ >= 0) close(fd_);
}

bool PreloadConnection::send_all(const void* p, size_t n) {
  auto* c = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t w = ::send(fd_, c, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      last_errno_ = w < 0 ? errno : 0;
      return false;
    }
    c += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool PreloadConnection::recv_all(void* p, size_t n) {
  auto* c = static_cast<char*>(p);
  while (n > 0) {
    ssize_t r = ::recv(fd_, c, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      last_errno_ = r < 0 ? errno : 0;
      return false;
    }
    c += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool PreloadConnection::request(uint16_t op, const void* payload, size_t n,
                                proto::ReplyHeader* reply, std::string* body, size_t max_body) {
  if (broken_) return false;
  proto::RequestHeader rq{proto::kMagic, op, proto::kVersion, static_cast<uint32_t>(n), 0};
  if (!send_all(&rq, sizeof rq) || (n > 0 && !send_all(payload, n)) ||
      !recv_all(reply, sizeof *reply) || reply->magic != proto::kMagic ||
      reply->payload_bytes > max_body) {
    broken_ = true;
    return false;
  }
  body->resize(reply->payload_bytes);
  if (reply->payload_bytes > 0 && !recv_all(body->data(), body->size())) {
    broken_ = true;
    return false;
  }
  return true;
}

size_t PreloadConnection::read_prefix(uint64_t addr, void* out, size_t len) {
  if (len == 0) return 0;
  std::lock_guard<std::mutex> lock(mu_);
  size_t done = 0;
  while (done < len) {
    uint64_t piece = std::min<uint64_t>(len - done, proto::kMaxRead);
    proto::ReadRequest rq{addr + done, piece};
    proto::RequestHeader h{proto::kMagic, proto::kReadMemory, proto::kVersion, sizeof rq, 0};
    proto::ReplyHeader reply{};
    if (broken_ || !send_all(&h, sizeof h) || !send_all(&rq, sizeof rq) ||
        !recv_all(&reply, sizeof reply) || reply.magic != proto::kMagic) {
      broken_ = true;
      return done;
    }
    if (reply.status != proto::kOk) return done;
    if (reply.payload_bytes != piece + 8 || !recv_all(static_cast<char*>(out) + done, piece)) {
      broken_ = true;
      return done;
    }
    uint64_t readable = 0;
    if (!recv_all(&readable, sizeof readable) || readable > piece) {
      broken_ = true;
      return done;
    }
    done += readable;
    if (readable < piece) break;
  }
  return done;
}

bool PreloadConnection::read(uint64_t addr, void* out, size_t len) {
  return read_prefix(addr, out, len) == len;
}

bool PreloadConnection::proc_file(const std::string& name, std::string* out) {
  std::lock_guard<std::mutex> lock(mu_);
  proto::ReplyHeader h{};
  if (!request(proto::kProcFile, name.data(), name.size(), &h, out)) return false;
  return h.status == proto::kOk;
}

bool PreloadConnection::trace_start(bool events, uint64_t* start_ns, std::string* why) {
  std::lock_guard<std::mutex> lock(mu_);
  proto::TraceStartRequest rq{events ? 1u : 0u, 0};
  proto::ReplyHeader h{};
  std::string body;
  if (!request(proto::kTraceStart, &rq, sizeof rq, &h, &body)) {
    *why = "pid " + std::to_string(pid_) + " closed the socket";
    return false;
  }
  if (h.status == proto::kErrUnsupported) {
    *why = "pid " + std::to_string(pid_) +
           " does not trace in-process: start it with `asyncprobe run --trace`";
    return false;
  }
  if (h.status == proto::kErrBusy) {
    *why = "pid " + std::to_string(pid_) + " is already being traced by another asyncprobe";
    return false;
  }
  if (h.status != proto::kOk || body.size() < sizeof(proto::TraceStartReply)) {
    *why = std::string("trace start refused: ") + status_text(h.status);
    return false;
  }
  proto::TraceStartReply r;
  std::memcpy(&r, body.data(), sizeof r);
  *start_ns = r.start_ns;
  return true;
}

bool PreloadConnection::trace_poll(TracePoll* out, bool stop, std::string* why) {
  std::lock_guard<std::mutex> lock(mu_);
  proto::ReplyHeader h{};
  std::string body;
  if (!request(stop ? proto::kTraceStop : proto::kTracePoll, nullptr, 0, &h, &body)) {
    *why = "pid " + std::to_string(pid_) + " closed the socket during the trace";
    return false;
  }
  proto::TracePollReply r{};
  if (h.status != proto::kOk || body.size() < sizeof r) {
    *why = std::string("trace poll refused: ") + status_text(h.status);
    return false;
  }
  std::memcpy(&r, body.data(), sizeof r);
  size_t need =
      sizeof r + r.events * sizeof(proto::ResumeEvent) + r.counts * sizeof(proto::CountRecord);
  if (body.size() != need) {
    *why = "malformed trace reply";
    return false;
  }
  out->now_ns = r.now_ns;
  out->lost_events = r.lost_events;
  out->total_resumes = r.total_resumes;
  const char* p = body.data() + sizeof r;
  out->events.resize(r.events);
  std::memcpy(out->events.data(), p, r.events * sizeof(proto::ResumeEvent));
  p += r.events * sizeof(proto::ResumeEvent);
  out->counts.resize(r.counts);
  std::memcpy(out->counts.data(), p, r.counts * sizeof(proto::CountRecord));
  return true;
}

bool PreloadConnection::trace_functions(std::vector<TraceFunction>* out) {
  std::lock_guard<std::mutex> lock(mu_);
  proto::ReplyHeader h{};
  std::string body;
  return request(proto::kTraceFunctions, nullptr, 0, &h, &body) && h.status == proto::kOk &&
         decode_trace_functions(body, out);
}

bool PreloadConnection::blocking_poll(uint64_t since, BlockingPoll* out, std::string* why) {
  std::lock_guard<std::mutex> lock(mu_);
  proto::BlockingPollRequest rq{since};
  proto::ReplyHeader h{};
  std::string body;
  if (!request(proto::kBlockingPoll, &rq, sizeof rq, &h, &body)) {
    *why = "pid " + std::to_string(pid_) + " closed the socket";
    return false;
  }
  if (h.status != proto::kOk) {
    *why = std::string("blocking poll refused: ") + status_text(h.status);
    return false;
  }
  if (!decode_blocking_poll(body, out)) {
    *why = "malformed blocking reply";
    return false;
  }
  return true;
}

std::optional<PreloadSource> preload_source(int pid, std::string* why, int* code) {
  std::shared_ptr<PreloadConnection> c = PreloadConnection::open(pid, why, code);
  if (c == nullptr) return std::nullopt;
  PreloadSource s;
  if (!c->proc_file("maps", &s.maps)) {
    *why = "pid " + std::to_string(pid) + " did not serve its memory map";
    if (code != nullptr) *code = util::kExitTargetExited;
    return std::nullopt;
  }
  c->proc_file("exe", &s.exe);
  c->proc_file("comm", &s.comm);
  while (!s.comm.empty() && s.comm.back() == '\n') s.comm.pop_back();
  s.connection = c;
  s.read = [c](uint64_t addr, void* out, size_t len) { return c->read(addr, out, len); };
  return s;
}

}  // namespace asyncprobe::process
