// The run socket's protocol (userspace/preload/protocol.h) fed hostile bytes from both ends.
// First byte even: the bytes are what a client sends the library's service, a stream of requests
// read as serve_one reads them (header, payload, decode_request); whatever the bytes, a request
// the service accepts must be one it can serve safely (a bounded read, a path under /proc/self
// among the served names). First byte odd: the bytes are a reply or exit report a target sends
// asyncprobe, through the client's decoders (preload_wire.h).
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "userspace/preload/request.h"
#include "userspace/process/preload_wire.h"

namespace {

namespace proto = asyncprobe::preload_proto;
using asyncprobe::preload::Request;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

// What the service would do with this accepted request must stay inside the protocol's limits.
void check_accepted(const Request& r) {
  if (r.op == proto::kReadMemory) {
    check(r.read.length <= proto::kMaxRead);
    check(r.read.address + r.read.length >= r.read.address);
  }
  const size_t n = strnlen(r.proc_path, sizeof r.proc_path);
  check(n < sizeof r.proc_path);
  if (n == 0) return;
  check(r.op == proto::kProcFile);
  check(std::strncmp(r.proc_path, "/proc/self/", 11) == 0);
  check(std::strstr(r.proc_path, "..") == nullptr);
  const char* rest = r.proc_path + 11;
  const bool plain = std::strcmp(rest, "maps") == 0 || std::strcmp(rest, "comm") == 0 ||
                     std::strcmp(rest, "status") == 0 || std::strcmp(rest, "cmdline") == 0;
  check(plain || std::strncmp(rest, "task/", 5) == 0);
}

void requests(const uint8_t* p, const uint8_t* end) {
  while (static_cast<size_t>(end - p) >= sizeof(proto::RequestHeader)) {
    proto::RequestHeader h;
    std::memcpy(&h, p, sizeof h);
    p += sizeof h;
    if (!asyncprobe::preload::request_header_ok(h)) return;  // the service closes the connection
    if (h.payload_bytes > static_cast<size_t>(end - p)) return;  // the client hung up mid-body
    // A copy of exactly the payload, so that reading past it is caught.
    std::vector<char> payload(p, p + h.payload_bytes);
    p += h.payload_bytes;
    const Request r = asyncprobe::preload::decode_request(h.op, payload.data(), payload.size());
    if (r.ok) check_accepted(r);
  }
}

void replies(const uint8_t* p, size_t n) {
  std::string_view body(reinterpret_cast<const char*>(p), n);
  std::vector<asyncprobe::process::PreloadFunction> functions;
  asyncprobe::process::decode_trace_functions(body, &functions);
  asyncprobe::process::PreloadBlockingBatch batch;
  asyncprobe::process::decode_blocking_poll(body, &batch);
  asyncprobe::process::PreloadExitReport report;
  std::string why;
  if (!asyncprobe::process::decode_exit_report(body, &report, &why)) check(!why.empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  if ((data[0] & 1) == 0) {
    requests(data + 1, data + size);
  } else {
    replies(data + 1, size - 1);
  }
  return 0;
}
