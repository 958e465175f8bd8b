#include "userspace/preload/exit_report.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "userspace/preload/config.h"
#include "userspace/preload/protocol.h"
#include "userspace/preload/service.h"
#include "userspace/preload/signal_safe.h"
#include "userspace/preload/tracer.h"

namespace asyncprobe::preload {

namespace proto = preload_proto;

namespace {

void warn(const char* what, const char* detail) {
  std::string line = std::string("asyncprobe-preload: ") + what + detail + "\n";
  write_fully(2, line.data(), line.size());
}

// The thread group's name (/proc/self/comm: the main thread's, whichever thread exits).
void read_comm(char (&out)[16]) {
  std::memset(out, 0, sizeof out);
  int fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  long n = read(fd, out, sizeof out - 1);
  close(fd);
  for (long i = 0; i < n; ++i) {
    if (out[i] == '\n') out[i] = '\0';
  }
}

// Header, payload and (trace) the counts since start and the per-thread totals.
std::string exit_stream(uint16_t kind, uint64_t start_ns) {
  proto::ExitReportHeader h{};
  h.magic = proto::kExitMagic;
  h.version = proto::kVersion;
  h.kind = kind;
  h.pid = static_cast<uint32_t>(self_pid());
  h.duration_ns = monotonic_ns() - start_ns;
  read_comm(h.command);
  std::string payload, tail;
  if (kind == proto::kExitTrace) {
    payload = trace_functions_payload();
    h.untraced = tracer_unpatched_count();
    std::vector<EntryCounts> counts;
    tracer_sum_counts(&counts);
    for (size_t i = 0; i < counts.size(); ++i) {
      if (counts[i].resumes == 0 && counts[i].starts == 0) continue;
      proto::CountRecord c{static_cast<uint32_t>(i), 0, counts[i].resumes, counts[i].starts,
                           counts[i].dispatches};
      tail.append(reinterpret_cast<const char*>(&c), sizeof c);
      ++h.counts;
    }
    std::vector<std::pair<int, uint64_t>> threads;
    tracer_thread_totals(&threads);
    for (const auto& [tid, resumes] : threads) {
      proto::ExitThreadCount t{static_cast<uint32_t>(tid), 0, resumes};
      tail.append(reinterpret_cast<const char*>(&t), sizeof t);
    }
    h.threads = static_cast<uint32_t>(threads.size());
  } else {
    payload = blocking_payload(0);
  }
  h.payload_bytes = payload.size();
  std::string stream(reinterpret_cast<const char*>(&h), sizeof h);
  return stream + payload + tail;
}

bool send_all(int fd, const std::string& data) {
  const char* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    ssize_t w = send(fd, p, left, MSG_NOSIGNAL);  // a dead helper must not SIGPIPE the program
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    left -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

bool write_exit_report(uint16_t kind, const char* path, uint64_t start_ns) {
  const char* helper = config().helper;
  if (helper[0] == '\0' || access(helper, X_OK) != 0) {
    warn("no asyncprobe-preload-helper to write the report to ", path[0] != '\0' ? path : "stderr");
    return false;
  }
  std::string stream = exit_stream(kind, start_ns);
  // A socket rather than a pipe: send(MSG_NOSIGNAL) never raises SIGPIPE in the program.
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    warn("cannot start the report helper: ", std::strerror(errno));
    return false;
  }
  std::string out = path[0] != '\0' ? path : "-";
  std::string args[] = {helper, "--exit-report", out, "--json"};
  char* argv[] = {args[0].data(), args[1].data(), args[2].data(),
                  config().json ? args[3].data() : nullptr, nullptr};
  // Its own stack: the service thread may be starting a table helper meanwhile.
  constexpr size_t kStack = size_t{64} * 1024;
  void* stack = mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  pid_t pid = -1;
  if (stack != MAP_FAILED) {
    // stdout and stderr are the program's stderr: the text report without a file, warnings.
    pid = spawn_hidden_child(helper, argv, sv[1], 2, 2, false, static_cast<char*>(stack), kStack);
  }
  close(sv[1]);
  if (pid < 0) {
    close(sv[0]);
    if (stack != MAP_FAILED) munmap(stack, kStack);
    warn("cannot start the report helper ", helper);
    return false;
  }
  send_all(sv[0], stream);
  close(sv[0]);
  int st = 0;
  while (waitpid(pid, &st, __WCLONE) < 0 && errno == EINTR) {
  }
  munmap(stack, kStack);
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

}  // namespace asyncprobe::preload
