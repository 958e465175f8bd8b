// The client side of the preload library's socket (userspace/preload/protocol.h): for a process
// started with `asyncprobe run`, reads its memory, its /proc files, and drives in-process trace
// sessions, without any privilege beyond being the same user. The library verifies that the peer
// has its uid (SO_PEERCRED); we verify that the socket is served by the pid we asked for, by our
// uid.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "userspace/model/preload_reports.h"
#include "userspace/preload/protocol.h"
#include "userspace/process/memory_reader.h"
#include "userspace/process/preload_wire.h"

namespace asyncprobe::process {

class PreloadConnection {
 public:
  // Connects to pid's socket. nullptr with a one-line reason in `why` (and `code`, an ExitCode:
  // kExitNoProcess, kExitPermission, kExitTargetExited or kExitBusy) when it cannot.
  static std::unique_ptr<PreloadConnection> open(int pid, std::string* why, int* code = nullptr,
                                                 const std::string& socket_dir = "");
  ~PreloadConnection();
  PreloadConnection(const PreloadConnection&) = delete;
  PreloadConnection& operator=(const PreloadConnection&) = delete;

  int pid() const { return pid_; }
  const preload_proto::HelloReply& hello() const { return hello_; }
  bool has_feature(uint32_t f) const { return (hello_.features & f) != 0; }
  // Asks again (features change: the tables complete a while after start). False if gone.
  bool refresh_hello();

  // All-or-nothing read of the target's memory (never zero-filled).
  bool read(uint64_t addr, void* out, size_t len);
  // How many bytes from addr on were readable (0..len); they are in out.
  size_t read_prefix(uint64_t addr, void* out, size_t len);
  // A file the library serves: "maps", "comm", "status", "cmdline", "exe", "tasks",
  // "task/<tid>/stat", "task/<tid>/comm", "task/<tid>/syscall". False if not served.
  bool proc_file(const std::string& name, std::string* out);

  // In-process trace session (the target must run with `asyncprobe run --trace`).
  using TraceFunction = PreloadFunction;
  struct TracePoll {
    uint64_t now_ns = 0;
    uint64_t lost_events = 0;
    uint64_t total_resumes = 0;
    std::vector<preload_proto::ResumeEvent> events;
    std::vector<preload_proto::CountRecord> counts;
  };
  bool trace_start(bool events, uint64_t* start_ns, std::string* why);
  bool trace_poll(TracePoll* out, bool stop, std::string* why);
  bool trace_functions(std::vector<TraceFunction>* out);

  using BlockingPoll = PreloadBlockingBatch;
  bool blocking_poll(uint64_t since, BlockingPoll* out, std::string* why);

 private:
  PreloadConnection() = default;
  bool request(uint16_t op, const void* payload, size_t n, preload_proto::ReplyHeader* reply,
               std::string* body, size_t max_body = preload_proto::kMaxPayload);
  bool send_all(const void* p, size_t n);
  bool recv_all(void* p, size_t n);

  int fd_ = -1;
  int pid_ = 0;
  bool broken_ = false;
  int last_errno_ = 0;  // of the last failed send or receive
  preload_proto::HelloReply hello_{};
  std::mutex mu_;
};

// What the snapshot path needs from a preloaded target it may not read directly: memory through
// the socket, and the /proc files a non-dumpable process closes to its own user.
struct PreloadSource {
  ReadMemory read;
  std::string maps;  // /proc/PID/maps text
  std::string exe;   // /proc/PID/exe link target
  std::string comm;
  std::shared_ptr<PreloadConnection> connection;
};

// Memory plus maps/exe/comm; nullopt with `why` and `code` (ExitCode) on failure.
std::optional<PreloadSource> preload_source(int pid, std::string* why, int* code = nullptr);

}  // namespace asyncprobe::process
