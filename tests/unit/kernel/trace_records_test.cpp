// The kernel boundary of `asyncprobe trace`: ring-buffer records laid out as bpf/trace.bpf.c
// writes them (bpf/trace.h) become trace::TraceEvent with every field in its named place, and
// records the session cannot trust (too short, unknown kind, a stack longer than the record) are
// refused. This is the one test that speaks the BPF layout: the model's and the reports' tests
// use trace_events.h only.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <variant>
#include <vector>

#include "bpf/trace.h"
#include "userspace/kernel/trace_records.h"

namespace asyncprobe::kernel {
namespace {

template <typename R>
std::optional<trace::TraceEvent> decode(const R& r) {
  return decode_trace_record(&r, sizeof r);
}

TEST(TraceRecords, ResumeFieldsLandInTheirNamedPlaces) {
  trace_resume_event r{};
  r.h = {TRACE_EV_RESUME, 12, 3456};
  r.fn = 7;
  r.popped = 2;
  r.mode = TRACE_RESUME_REPLACE;
  r.what = TRACE_RESUME_START;
  r.index_ok = 1;
  r.index = 0;
  r.frame = 0xabc0;
  r.promise[0] = 0x10;
  r.promise[2] = 0x30;
  auto e = decode(r);
  ASSERT_TRUE(e.has_value());
  const auto& ev = std::get<trace::ResumeEvent>(*e);
  EXPECT_EQ(ev.tid, 12u);
  EXPECT_EQ(ev.ts, 3456u);
  EXPECT_EQ(ev.fn, 7u);
  EXPECT_EQ(ev.popped, 2u);
  EXPECT_TRUE(ev.replaces_top);
  EXPECT_TRUE(ev.start_of_body);
  EXPECT_EQ(ev.index, 0);
  EXPECT_EQ(ev.frame, 0xabc0u);
  EXPECT_EQ(ev.promise[0], 0x10u);
  EXPECT_EQ(ev.promise[2], 0x30u);

  r.index_ok = 0;  // unreadable index: -1 whatever the field holds
  r.index = 5;
  r.mode = TRACE_RESUME_PUSH;
  r.what = TRACE_RESUME_RESUME;
  const auto unread = std::get<trace::ResumeEvent>(*decode(r));
  EXPECT_EQ(unread.index, -1);
  EXPECT_FALSE(unread.replaces_top);
  EXPECT_FALSE(unread.start_of_body);
}

TEST(TraceRecords, BlockCarriesOnlyTheStackBytesItHolds) {
  auto r = std::make_unique<trace_block_event>();
  r->h = {TRACE_EV_BLOCK, 3, 9000};
  r->nr = 35;
  r->fn = 1;
  r->enter_ts = 1000;
  r->frame = 0xf000;
  r->ret = -4;
  r->regs[7] = 0x7ff0;
  r->stack_addr = 0x7ff0;
  r->stack_len = 16;
  r->flags = TRACE_BLOCK_STACK_TRUNCATED;
  for (int i = 0; i < 16; ++i) r->stack[i] = static_cast<uint8_t>(i + 1);
  // The program submits the fixed part and the bytes in use.
  const size_t size = offsetof(trace_block_event, stack) + 16;
  auto e = decode_trace_record(r.get(), size);
  ASSERT_TRUE(e.has_value());
  const auto& b = std::get<trace::BlockEvent>(*e);
  EXPECT_EQ(b.tid, 3u);
  EXPECT_EQ(b.ts, 9000u);
  EXPECT_EQ(b.enter_ts, 1000u);
  EXPECT_EQ(b.nr, 35u);
  EXPECT_EQ(b.ret, -4);
  EXPECT_EQ(b.regs[7], 0x7ff0u);
  EXPECT_EQ(b.stack.size(), 16u);
  EXPECT_EQ(b.stack[15], 16);
  EXPECT_TRUE(b.stack_truncated);
  EXPECT_FALSE(b.stack_failed);

  r->stack_len = 17;  // claims a byte the record does not hold
  EXPECT_FALSE(decode_trace_record(r.get(), size).has_value());
  r->stack_len = TRACE_STACK_MAX + 1;  // more than any record can hold
  EXPECT_FALSE(decode_trace_record(r.get(), sizeof *r).has_value());
}

TEST(TraceRecords, UntrustedRecordsAreRefused) {
  const uint8_t junk[3] = {1, 2, 3};
  EXPECT_FALSE(decode_trace_record(junk, sizeof junk).has_value());
  trace_event_header unknown{99, 1, 1};
  EXPECT_FALSE(decode(unknown).has_value());
  trace_resume_event r{};
  r.h = {TRACE_EV_RESUME, 1, 1};
  EXPECT_FALSE(decode_trace_record(&r, sizeof r - 1).has_value());  // cut short
  trace_event_header exit{TRACE_EV_THREAD_EXIT, 4, 77};
  auto e = decode(exit);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(trace::header_of(*e).tid, 4u);
  EXPECT_EQ(trace::header_of(*e).ts, 77u);
}

TEST(TraceRecords, StallAndOffCpuKeepTheirTimes) {
  trace_stall_event s{};
  s.h = {TRACE_EV_STALL, 2, 500};
  s.start_ts = 100;
  s.nr = 232;
  const auto st = std::get<trace::StallEvent>(*decode(s));
  EXPECT_EQ(st.start_ts, 100u);
  EXPECT_EQ(st.ts, 500u);
  EXPECT_EQ(st.nr, 232u);
  trace_offcpu_event o{};
  o.h = {TRACE_EV_OFFCPU, 2, 900};
  o.off_ts = 800;
  EXPECT_EQ(std::get<trace::OffCpuEvent>(*decode(o)).off_ts, 800u);
}

}  // namespace
}  // namespace asyncprobe::kernel
