// The boundary between asyncprobe and the preload library: the environment `asyncprobe run`
// passes (docs/PRELOAD.md, "Environment") and the wire protocol of the library's socket
// (docs/PRELOAD.md, "Socket protocol"). A Unix stream socket at <dir>/<pid>.sock, dir =
// $ASYNCPROBE_SOCKET_DIR or /tmp/asyncprobe-<uid> (mode 0700, socket 0600); the library serves only
// peers of its own effective uid (SO_PEERCRED). Little-endian, packed as declared (every struct is
// naturally aligned and padded explicitly). One request, one reply, in order.
#pragma once

#include <cstdint>
#include <string>

namespace asyncprobe::preload_proto {

// Environment variables `asyncprobe run` sets for the library.
inline constexpr const char* kEnvOptions = "ASYNCPROBE_PRELOAD_OPTIONS";  // see Config's parser
inline constexpr const char* kEnvCrashReport = "ASYNCPROBE_CRASH_REPORT";
inline constexpr const char* kEnvTraceOut = "ASYNCPROBE_TRACE_OUT";
inline constexpr const char* kEnvBlockingOut = "ASYNCPROBE_BLOCKING_OUT";
inline constexpr const char* kEnvHelper = "ASYNCPROBE_PRELOAD_HELPER";
inline constexpr const char* kEnvDebugDirs = "ASYNCPROBE_DEBUG_DIRS";
inline constexpr const char* kEnvSocketDir = "ASYNCPROBE_SOCKET_DIR";
inline constexpr const char* kEnvOrigPreload = "ASYNCPROBE_ORIG_LD_PRELOAD";

inline constexpr uint32_t kMagic = 0x50525041;  // "APRP"
inline constexpr uint16_t kVersion = 1;
inline constexpr uint64_t kMaxRead = 64ull << 20;   // one ReadMemory request
inline constexpr uint32_t kMaxPayload = 64u << 20;  // any other reply

enum Op : uint16_t {
  kHello = 1,           // -> HelloReply
  kReadMemory = 2,      // ReadRequest -> len bytes, then uint64_t readable prefix
  kProcFile = 3,        // file name (see below) -> its bytes
  kTraceStart = 4,      // TraceStartRequest -> TraceStartReply
  kTracePoll = 5,       // -> TracePollReply, events, counts
  kTraceStop = 6,       // -> TracePollReply, events, counts (the last ones)
  kTraceFunctions = 7,  // -> FunctionRecord[] + strings
  kBlockingPoll = 8,    // -> BlockingRecord[] + frames + strings
};

enum Status : int32_t {
  kOk = 0,
  kErrPermission = 1,  // the peer is not the library's user
  kErrBadRequest = 2,
  kErrUnsupported = 3,  // feature not enabled (e.g. tracing without `run --trace`)
  kErrBusy = 4,         // another trace session is active
  kErrNotFound = 5,     // proc file not served
};

struct RequestHeader {
  uint32_t magic;
  uint16_t op;
  uint16_t version;
  uint32_t payload_bytes;
  uint32_t reserved;
};

struct ReplyHeader {
  uint32_t magic;
  uint16_t op;
  uint16_t version;
  int32_t status;
  uint32_t reserved;
  uint64_t payload_bytes;
};

enum Feature : uint32_t {
  kFeatureTrace = 1,           // resume functions were patched (`run --trace`)
  kFeatureBlocking = 2,        // blocking calls are recorded
  kFeatureTablesComplete = 4,  // the coroutine tables (names, lines) are ready
};

struct HelloReply {
  uint32_t pid;
  uint32_t uid;
  uint32_t features;
  uint32_t traced_functions;    // resume functions patched
  uint32_t untraced_functions;  // resume functions that could not be patched safely
  uint32_t reserved;
};

struct ReadRequest {
  uint64_t address;
  uint64_t length;
};

// Proc files served (for a target whose /proc/PID is closed to its own user, e.g. non-dumpable):
// "maps", "comm", "status", "cmdline", "exe" (the link target), "tasks" (thread ids, one per
// line), "task/<tid>/stat", "task/<tid>/comm", "task/<tid>/syscall".

struct TraceStartRequest {
  uint32_t flags;  // 1 = record events (else counts only)
  uint32_t reserved;
};

struct TraceStartReply {
  uint64_t start_ns;  // CLOCK_MONOTONIC of the target when recording began
};

struct TracePollReply {
  uint64_t now_ns;         // CLOCK_MONOTONIC at this poll
  uint64_t events;         // ResumeEvent records that follow
  uint64_t lost_events;    // since start: events dropped because a thread's buffer was full
  uint64_t counts;         // CountRecord records that follow (every function with resumes)
  uint64_t total_resumes;  // since start, exact (resumes only, not starts or destroys)
};

// One run of a coroutine, in the order the thread ran them. `time_ns` is approximate: events
// are stamped when drained (resolution: the poll interval); the order per thread is exact.
struct ResumeEvent {
  uint64_t frame;  // coroutine frame address
  uint64_t time_ns;
  uint32_t function;  // FunctionRecord id
  uint32_t tid;
  uint32_t kind;  // 0 resumed from a suspend point, 1 started by its ramp (GCC)
  uint32_t reserved;
};

struct CountRecord {
  uint32_t function;
  uint32_t reserved;
  uint64_t resumes;     // since start: resumed from a suspend point
  uint64_t starts;      // GCC: bodies started by the ramp
  uint64_t dispatches;  // GCC: frames destroyed through the actor
};

struct FunctionRecord {
  uint32_t id;
  uint32_t name;    // string offset (demangled ramp name; "" until the tables are ready)
  uint64_t resume;  // absolute address of the resume function
  uint32_t object;  // string offset (path)
  uint32_t file;    // declaration file, string offset ("" if unknown)
  uint32_t line;    // declaration line, 0 if unknown
  uint32_t traced;  // 1 when patched
  uint32_t flags;   // 1 = GCC actor whose entries are told apart (start / resume / destroy)
  uint32_t reserved;
};
// The kTraceFunctions payload: uint32_t count, uint32_t string_bytes, FunctionRecord[count],
// char strings[string_bytes] (offset 0 is "").

// kBlockingPoll: request BlockingPollRequest; reply BlockingPollReply, BlockingRecord[count],
// BlockingFrame[frames], char strings[string_bytes] (offset 0 is "").
struct BlockingPollRequest {
  uint64_t since;  // sequence number: records numbered >= since (0: all kept)
};

struct BlockingPollReply {
  uint64_t next;          // pass as `since` next time
  uint64_t threshold_ns;  // calls shorter than this are not recorded
  uint32_t count;
  uint32_t dropped;  // records overwritten before anyone read them (the buffer keeps 1024)
  uint32_t frames;
  uint32_t string_bytes;
};

struct BlockingRecord {
  uint32_t call;  // string offset: "pthread_mutex_lock", "nanosleep", ...
  uint32_t tid;
  uint64_t start_ns;  // CLOCK_MONOTONIC
  uint64_t duration_ns;
  uint64_t call_site;       // return address of the call
  uint32_t call_site_text;  // string offset: "function at file:line (object+0xoff)"
  uint32_t frames_begin;    // async stack, innermost (the running coroutine) first
  uint32_t frames_count;
  uint32_t reserved;
};

struct BlockingFrame {
  uint64_t frame;
  uint32_t function;  // string offset (coroutine name)
  uint32_t file;      // string offset: where it is suspended, or where it runs (innermost)
  uint32_t line;
  uint32_t reserved;
};

// The exit reports (`asyncprobe run --trace-out/--blocking-out`): rendering them needs JSON and
// the report writers, which stay out of the target. At exit the library starts
// `asyncprobe-preload-helper --exit-report FILE [--json]` (FILE "-": the helper's stdout, which is
// the target's stderr) and writes to its stdin one ExitReportHeader, then the kTraceFunctions
// payload followed by CountRecord[counts] and ExitThreadCount[threads] (kind 1, trace), or the
// kBlockingPoll payload (kind 2, blocking); it waits for the helper to finish.
inline constexpr uint32_t kExitMagic = 0x50525845;  // "EXRP"
enum ExitKind : uint16_t { kExitTrace = 1, kExitBlocking = 2 };

struct ExitReportHeader {
  uint32_t magic;
  uint16_t version;
  uint16_t kind;  // ExitKind
  uint32_t pid;
  uint32_t untraced;       // trace: resume functions that could not be patched safely
  uint64_t duration_ns;    // from the library's start to exit
  uint64_t payload_bytes;  // the kTraceFunctions / kBlockingPoll payload that follows
  uint32_t counts;         // trace: CountRecord[counts] after the payload (since start)
  uint32_t threads;        // trace: ExitThreadCount[threads] after them
  char command[16];        // the target's comm, NUL-terminated
};

struct ExitThreadCount {
  uint32_t tid;
  uint32_t reserved;
  uint64_t resumes;
};

// The socket path the library listens on for `pid`, in `dir` (empty: the default directory of
// effective uid `uid`).
inline std::string socket_directory(const std::string& dir, unsigned uid) {
  return dir.empty() ? "/tmp/asyncprobe-" + std::to_string(uid) : dir;
}
inline std::string socket_path(const std::string& dir, unsigned uid, int pid) {
  return socket_directory(dir, uid) + "/" + std::to_string(pid) + ".sock";
}

}  // namespace asyncprobe::preload_proto
