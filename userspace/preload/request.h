// The service's reading of one request on the run socket (protocol.h): the header checked, the
// payload decoded for its op, a proc file name resolved to the only path it may open. Pure and
// header-only: no I/O, no allocation, nothing but the bytes given (the service thread calls it,
// and tests/fuzz/fuzz_run_protocol feeds it hostile bytes with coverage).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "userspace/preload/protocol.h"

namespace asyncprobe::preload {

// Larger payloads are refused with the header, before any byte of them is read.
inline constexpr uint32_t kMaxRequestPayload = 1u << 20;

// True when `h` is a request of this protocol whose payload will be read.
inline bool request_header_ok(const preload_proto::RequestHeader& h) {
  return h.magic == preload_proto::kMagic && h.version == preload_proto::kVersion &&
         h.payload_bytes <= kMaxRequestPayload;
}

struct Request {
  uint16_t op = 0;
  bool ok = false;                    // false: the reply is kErrBadRequest
  preload_proto::ReadRequest read{};  // kReadMemory: length <= kMaxRead, no wrap-around
  uint32_t trace_flags = 0;           // kTraceStart (0 when the payload is not a request)
  uint64_t since = 0;                 // kBlockingPoll (0 when the payload is not a request)
  // kProcFile: the file under /proc/self to open ("" when the name is not one served), or the
  // two that are no plain file.
  char proc_path[48] = {};
  bool proc_exe = false;    // "exe": the link target
  bool proc_tasks = false;  // "tasks": the thread ids
};

namespace request_detail {

inline bool is(const char* p, size_t n, const char* word) {
  return n == std::strlen(word) && std::memcmp(p, word, n) == 0;
}

// "/proc/self/" + the parts, into `out` (room checked by the caller's bounds).
inline void proc_path(char* out, const char* a, size_t an, const char* b, size_t bn) {
  static constexpr char kRoot[] = "/proc/self/";
  std::memcpy(out, kRoot, sizeof kRoot - 1);
  std::memcpy(out + sizeof kRoot - 1, a, an);
  std::memcpy(out + sizeof kRoot - 1 + an, b, bn);
  out[sizeof kRoot - 1 + an + bn] = '\0';
}

// The served names (protocol.h): maps, comm, status, cmdline, exe, tasks, task/<tid>/{stat,
// comm,syscall} with a tid of 1 to 10 digits.
inline void decode_proc_name(const char* p, size_t n, Request* r) {
  if (is(p, n, "maps") || is(p, n, "comm") || is(p, n, "status") || is(p, n, "cmdline")) {
    proc_path(r->proc_path, p, n, "", 0);
  } else if (is(p, n, "exe")) {
    r->proc_exe = true;
  } else if (is(p, n, "tasks")) {
    r->proc_tasks = true;
  } else if (n > 5 && std::memcmp(p, "task/", 5) == 0) {
    size_t digits = 0;
    while (5 + digits < n && p[5 + digits] >= '0' && p[5 + digits] <= '9') ++digits;
    if (digits == 0 || digits > 10 || 5 + digits >= n || p[5 + digits] != '/') return;
    const char* file = p + 5 + digits + 1;
    const size_t file_n = n - (5 + digits + 1);
    if (is(file, file_n, "stat") || is(file, file_n, "comm") || is(file, file_n, "syscall")) {
      proc_path(r->proc_path, p, 5 + digits + 1, file, file_n);
    }
  }
}

}  // namespace request_detail

// The request `op` with its payload (`n` bytes at `payload`), as the service will serve it.
inline Request decode_request(uint16_t op, const char* payload, size_t n) {
  namespace proto = preload_proto;
  Request r;
  r.op = op;
  switch (op) {
    case proto::kHello:
    case proto::kTracePoll:
    case proto::kTraceStop:
    case proto::kTraceFunctions:
      r.ok = true;
      break;
    case proto::kReadMemory:
      if (n != sizeof r.read) break;
      std::memcpy(&r.read, payload, sizeof r.read);
      r.ok = r.read.length <= proto::kMaxRead && r.read.address + r.read.length >= r.read.address;
      break;
    case proto::kProcFile:
      r.ok = true;  // a name not served is kErrNotFound, not a bad request
      request_detail::decode_proc_name(payload, n, &r);
      break;
    case proto::kTraceStart: {
      proto::TraceStartRequest t{};
      if (n == sizeof t) std::memcpy(&t, payload, sizeof t);
      r.trace_flags = t.flags;
      r.ok = true;
      break;
    }
    case proto::kBlockingPoll: {
      proto::BlockingPollRequest b{};
      if (n == sizeof b) std::memcpy(&b, payload, sizeof b);
      r.since = b.since;
      r.ok = true;
      break;
    }
    default:
      break;
  }
  return r;
}

}  // namespace asyncprobe::preload
