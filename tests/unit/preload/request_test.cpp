// The service's request decoder (userspace/preload/request.h): which headers it accepts, how each
// op's payload is read, and exactly which proc file names map to which paths under /proc/self.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "userspace/preload/request.h"

namespace asyncprobe::preload {
namespace {

namespace proto = preload_proto;

Request decode(uint16_t op, const std::string& payload) {
  return decode_request(op, payload.data(), payload.size());
}

template <typename T>
std::string bytes(const T& v) {
  return std::string(reinterpret_cast<const char*>(&v), sizeof v);
}

TEST(RequestHeader, AcceptsOnlyThisProtocolUpToOneMebibyte) {
  proto::RequestHeader h{proto::kMagic, proto::kHello, proto::kVersion, 0, 0};
  EXPECT_TRUE(request_header_ok(h));
  h.payload_bytes = 1u << 20;
  EXPECT_TRUE(request_header_ok(h));
  h.payload_bytes = (1u << 20) + 1;
  EXPECT_FALSE(request_header_ok(h));
  h.payload_bytes = 0;
  h.magic = proto::kMagic + 1;
  EXPECT_FALSE(request_header_ok(h));
  h.magic = proto::kMagic;
  h.version = proto::kVersion + 1;
  EXPECT_FALSE(request_header_ok(h));
}

TEST(DecodeRequest, ReadMemoryWantsExactlyOneBoundedRequest) {
  const Request ok = decode(proto::kReadMemory, bytes(proto::ReadRequest{0x1000, 64}));
  ASSERT_TRUE(ok.ok);
  EXPECT_EQ(ok.read.address, 0x1000u);
  EXPECT_EQ(ok.read.length, 64u);
  EXPECT_TRUE(decode(proto::kReadMemory, bytes(proto::ReadRequest{0, proto::kMaxRead})).ok);
  EXPECT_FALSE(decode(proto::kReadMemory, bytes(proto::ReadRequest{0, proto::kMaxRead + 1})).ok);
  EXPECT_FALSE(decode(proto::kReadMemory, bytes(proto::ReadRequest{~uint64_t{0} - 7, 16})).ok);
  EXPECT_FALSE(decode(proto::kReadMemory, bytes(proto::ReadRequest{0x1000, 64}) + "x").ok);
  EXPECT_FALSE(decode(proto::kReadMemory, "").ok);
}

TEST(DecodeRequest, ProcFileNamesMapToTheirPathsAndNothingElse) {
  const std::pair<const char*, const char*> served[] = {
      {"maps", "/proc/self/maps"},
      {"comm", "/proc/self/comm"},
      {"status", "/proc/self/status"},
      {"cmdline", "/proc/self/cmdline"},
      {"task/1/stat", "/proc/self/task/1/stat"},
      {"task/4194304/comm", "/proc/self/task/4194304/comm"},
      {"task/1234567890/syscall", "/proc/self/task/1234567890/syscall"}};
  for (const auto& [name, path] : served) {
    const Request r = decode(proto::kProcFile, name);
    EXPECT_TRUE(r.ok) << name;
    EXPECT_STREQ(r.proc_path, path) << name;
    EXPECT_FALSE(r.proc_exe || r.proc_tasks) << name;
  }
  EXPECT_TRUE(decode(proto::kProcFile, "exe").proc_exe);
  EXPECT_TRUE(decode(proto::kProcFile, "tasks").proc_tasks);
  const std::string refused[] = {"",
                                 "environ",
                                 "../maps",
                                 "maps/",
                                 std::string("maps\0", 5),
                                 "task/",
                                 "task//stat",
                                 "task/12345678901/stat",
                                 "task/1/../../environ",
                                 "task/1/environ",
                                 "task/-1/stat",
                                 "task/1/stat/",
                                 "task/1x/stat",
                                 "mem"};
  for (const std::string& name : refused) {
    const Request r = decode(proto::kProcFile, name);
    EXPECT_TRUE(r.ok) << name;  // answered kErrNotFound, the connection stays
    EXPECT_STREQ(r.proc_path, "") << name;
    EXPECT_FALSE(r.proc_exe || r.proc_tasks) << name;
  }
}

TEST(DecodeRequest, OptionalPayloadsAreReadOnlyAtTheirExactSize) {
  EXPECT_EQ(decode(proto::kTraceStart, bytes(proto::TraceStartRequest{1, 0})).trace_flags, 1u);
  EXPECT_EQ(decode(proto::kTraceStart, "").trace_flags, 0u);
  EXPECT_EQ(decode(proto::kTraceStart, bytes(proto::TraceStartRequest{1, 0}) + "x").trace_flags,
            0u);
  EXPECT_EQ(decode(proto::kBlockingPoll, bytes(proto::BlockingPollRequest{42})).since, 42u);
  EXPECT_EQ(decode(proto::kBlockingPoll, "1234").since, 0u);
  EXPECT_TRUE(decode(proto::kBlockingPoll, "1234").ok);
}

TEST(DecodeRequest, UnknownOpsAreBadRequests) {
  for (uint16_t op : {0, 9, 100, 0xffff}) EXPECT_FALSE(decode(op, "").ok) << op;
  for (uint16_t op : {proto::kHello, proto::kTracePoll, proto::kTraceStop, proto::kTraceFunctions})
    EXPECT_TRUE(decode(op, "anything").ok) << op;
}

}  // namespace
}  // namespace asyncprobe::preload
