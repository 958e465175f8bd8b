#include "userspace/kernel/trace_records.h"

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "bpf/trace.h"

namespace asyncprobe::kernel {

namespace {

static_assert(TRACE_PROMISE_WORDS == trace::kPromiseWords);
static_assert(TRACE_NREGS == trace::kUserRegs);

template <typename T>
bool read_record(const void* data, size_t size, T* out) {
  if (size < sizeof(T)) return false;
  std::memcpy(out, data, sizeof(T));
  return true;
}

void set_header(const trace_event_header& h, trace::EventHeader* out) {
  out->tid = h.tid;
  out->ts = h.ts;
}

std::optional<trace::TraceEvent> decode_resume(const void* data, size_t size) {
  trace_resume_event r{};
  if (!read_record(data, size, &r)) return std::nullopt;
  trace::ResumeEvent e;
  set_header(r.h, &e);
  e.fn = r.fn;
  e.popped = r.popped;
  e.replaces_top = r.mode == TRACE_RESUME_REPLACE;
  e.start_of_body = r.what == TRACE_RESUME_START;
  e.frame = r.frame;
  e.index = r.index_ok ? r.index : -1;
  std::copy(std::begin(r.promise), std::end(r.promise), e.promise.begin());
  return e;
}

std::optional<trace::TraceEvent> decode_block(const void* data, size_t size) {
  constexpr size_t kFixed = offsetof(trace_block_event, stack);
  if (size < kFixed) return std::nullopt;
  trace_block_event head;  // the fixed part only: the stack is copied by its length
  std::memcpy(&head, data, kFixed);
  if (head.stack_len > TRACE_STACK_MAX || size < kFixed + head.stack_len) return std::nullopt;
  trace::BlockEvent e;
  set_header(head.h, &e);
  e.nr = head.nr;
  e.fn = head.fn;
  e.frame = head.frame;
  e.enter_ts = head.enter_ts;
  e.ret = head.ret;
  std::copy(std::begin(head.regs), std::end(head.regs), e.regs.begin());
  e.stack_addr = head.stack_addr;
  const auto* stack = static_cast<const uint8_t*>(data) + kFixed;
  e.stack.assign(stack, stack + head.stack_len);
  e.stack_failed = (head.flags & TRACE_BLOCK_STACK_FAILED) != 0;
  e.stack_truncated = (head.flags & TRACE_BLOCK_STACK_TRUNCATED) != 0;
  return e;
}

std::optional<trace::TraceEvent> decode_fixed(const trace_event_header& h, const void* data,
                                              size_t size) {
  switch (h.kind) {
    case TRACE_EV_DESTROY: {
      trace_destroy_event r{};
      if (!read_record(data, size, &r)) return std::nullopt;
      trace::DestroyEvent e;
      set_header(h, &e);
      e.fn = r.fn;
      e.popped = r.popped;
      e.frame = r.frame;
      return e;
    }
    case TRACE_EV_RUN_END: {
      trace_run_end_event r{};
      if (!read_record(data, size, &r)) return std::nullopt;
      trace::RunEndEvent e;
      set_header(h, &e);
      e.popped = r.popped;
      return e;
    }
    case TRACE_EV_STALL: {
      trace_stall_event r{};
      if (!read_record(data, size, &r)) return std::nullopt;
      trace::StallEvent e;
      set_header(h, &e);
      e.start_ts = r.start_ts;
      e.nr = r.nr;
      return e;
    }
    case TRACE_EV_OFFCPU: {
      trace_offcpu_event r{};
      if (!read_record(data, size, &r)) return std::nullopt;
      trace::OffCpuEvent e;
      set_header(h, &e);
      e.off_ts = r.off_ts;
      return e;
    }
    case TRACE_EV_THREAD_EXIT: {
      trace::ThreadExitEvent e;
      set_header(h, &e);
      return e;
    }
    default:
      return std::nullopt;
  }
}

}  // namespace

std::optional<trace::TraceEvent> decode_trace_record(const void* data, size_t size) {
  trace_event_header h{};
  if (!read_record(data, size, &h)) return std::nullopt;
  if (h.kind == TRACE_EV_RESUME) return decode_resume(data, size);
  if (h.kind == TRACE_EV_BLOCK) return decode_block(data, size);
  return decode_fixed(h, data, size);
}

}  // namespace asyncprobe::kernel
