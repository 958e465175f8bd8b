// The decoders of the preload library's binary records (process/preload_wire): an exit report
// built field by field decodes to exactly those fields, and every truncated or inconsistent stream
// is refused without reading past its end.
#include "userspace/process/preload_wire.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace asyncprobe::process {
namespace {

namespace proto = preload_proto;

template <typename T>
void put(std::string* s, const T& v) {
  s->append(reinterpret_cast<const char*>(&v), sizeof v);
}

// Two functions (one unnamed), counts for both, two threads; strings: "", "f()", "/lib/a.so",
// "a.cpp".
std::string trace_stream() {
  const std::string strings("\0f()\0/lib/a.so\0a.cpp\0", 21);
  std::string payload;
  put(&payload, uint32_t{2});
  put(&payload, static_cast<uint32_t>(strings.size()));
  put(&payload, proto::FunctionRecord{0, 1, 0x1000, 5, 15, 7, 1, 0, 0});
  put(&payload, proto::FunctionRecord{1, 0, 0x2a0, 5, 0, 0, 0, 0, 0});
  payload += strings;
  proto::ExitReportHeader h{};
  h.magic = proto::kExitMagic;
  h.version = proto::kVersion;
  h.kind = proto::kExitTrace;
  h.pid = 42;
  h.untraced = 1;
  h.duration_ns = 1'500'000'000;
  h.payload_bytes = payload.size();
  h.counts = 2;
  h.threads = 2;
  std::strcpy(h.command, "svc");
  std::string s;
  put(&s, h);
  s += payload;
  put(&s, proto::CountRecord{1, 0, 3, 0, 0});
  put(&s, proto::CountRecord{0, 0, 10, 2, 0});
  put(&s, proto::ExitThreadCount{8, 0, 9});
  put(&s, proto::ExitThreadCount{7, 0, 4});
  return s;
}

TEST(PreloadWire, ATraceExitReportDecodesToExactlyItsFields) {
  PreloadExitReport r;
  std::string why;
  ASSERT_TRUE(decode_exit_report(trace_stream(), &r, &why)) << why;
  EXPECT_EQ(r.kind, proto::kExitTrace);
  EXPECT_EQ(r.trace.pid, 42);
  EXPECT_EQ(r.trace.command, "svc");
  EXPECT_EQ(r.trace.mode, "from start to exit");
  EXPECT_DOUBLE_EQ(r.trace.duration_s, 1.5);
  EXPECT_EQ(r.trace.untraced, 1u);
  EXPECT_EQ(r.trace.total_resumes, 13u);
  ASSERT_EQ(r.trace.functions.size(), 2u);  // most resumes first
  EXPECT_EQ(r.trace.functions[0].function, "f()");
  EXPECT_EQ(r.trace.functions[0].object, "/lib/a.so");
  EXPECT_EQ(r.trace.functions[0].file, "a.cpp");
  EXPECT_EQ(r.trace.functions[0].line, 7);
  EXPECT_EQ(r.trace.functions[0].resumes, 10u);
  EXPECT_EQ(r.trace.functions[0].starts, 2u);
  EXPECT_TRUE(r.trace.functions[0].traced);
  EXPECT_EQ(r.trace.functions[1].function, "0x2a0");  // no name: its resume address
  EXPECT_FALSE(r.trace.functions[1].traced);
  ASSERT_EQ(r.trace.threads.size(), 2u);  // by tid
  EXPECT_EQ(r.trace.threads[0], (std::pair<int, uint64_t>{7, 4}));
  EXPECT_EQ(r.trace.threads[1], (std::pair<int, uint64_t>{8, 9}));
}

TEST(PreloadWire, EveryTruncatedOrExtendedStreamIsRefused) {
  const std::string s = trace_stream();
  PreloadExitReport r;
  std::string why;
  for (size_t n = 0; n < s.size(); ++n) {
    EXPECT_FALSE(decode_exit_report(s.substr(0, n), &r, &why)) << n;
  }
  EXPECT_FALSE(decode_exit_report(s + "x", &r, &why));
  std::string bad_magic = s;
  bad_magic[0] ^= 1;
  EXPECT_FALSE(decode_exit_report(bad_magic, &r, &why));
  EXPECT_EQ(why, "malformed exit report");
}

TEST(PreloadWire, ABlockingPayloadWithAFrameRangePastItsFramesKeepsOnlyTheFramesItHas) {
  const std::string strings("\0read\0leaf()\0", 13);
  std::string payload;
  put(&payload,
      proto::BlockingPollReply{5, 20'000'000, 1, 3, 1, static_cast<uint32_t>(strings.size())});
  put(&payload, proto::BlockingRecord{1, 9, 100, 30'000'000, 0x10, 999, 0, 4, 0});
  put(&payload, proto::BlockingFrame{0xf00, 6, 0, 12, 0});
  payload += strings;
  PreloadBlockingBatch b;
  ASSERT_TRUE(decode_blocking_poll(payload, &b));
  EXPECT_EQ(b.next, 5u);
  EXPECT_EQ(b.threshold_ns, 20'000'000u);
  EXPECT_EQ(b.dropped, 3u);
  ASSERT_EQ(b.calls.size(), 1u);
  EXPECT_EQ(b.calls[0].call, "read");
  EXPECT_EQ(b.calls[0].tid, 9);
  EXPECT_EQ(b.calls[0].call_site, "");  // offset 999 is past the strings
  ASSERT_EQ(b.calls[0].stack.size(), 1u);
  EXPECT_EQ(b.calls[0].stack[0].function, "leaf()");
  EXPECT_EQ(b.calls[0].stack[0].line, 12);
  std::string unterminated = payload;
  unterminated.back() = 'x';
  EXPECT_FALSE(decode_blocking_poll(unterminated, &b));
}

}  // namespace
}  // namespace asyncprobe::process
