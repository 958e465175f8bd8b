#include "userspace/process/preload_wire.h"

#include <cstring>

#include "userspace/util/format.h"

namespace asyncprobe::process {

namespace proto = preload_proto;

namespace {

template <typename T>
T load(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The string table that ends a payload: offset 0 is "", the last byte a NUL.
class StringTable {
 public:
  StringTable(const char* begin, size_t bytes) : begin_(begin), bytes_(bytes) {}
  bool valid() const { return bytes_ > 0 && begin_[bytes_ - 1] == '\0'; }
  std::string at(uint32_t off) const { return off < bytes_ ? std::string(begin_ + off) : ""; }

 private:
  const char* begin_;
  size_t bytes_;
};

}  // namespace

bool decode_trace_functions(std::string_view body, std::vector<PreloadFunction>* out) {
  if (body.size() < 8) return false;
  uint32_t head[2];
  std::memcpy(head, body.data(), sizeof head);
  size_t recs = head[0], strings = head[1];
  if (body.size() != 8 + recs * sizeof(proto::FunctionRecord) + strings) return false;
  StringTable s(body.data() + 8 + recs * sizeof(proto::FunctionRecord), strings);
  if (!s.valid()) return false;
  out->clear();
  for (size_t i = 0; i < recs; ++i) {
    auto r = load<proto::FunctionRecord>(body.data() + 8 + i * sizeof(proto::FunctionRecord));
    out->push_back({r.id, s.at(r.name), s.at(r.object), s.at(r.file), static_cast<int>(r.line),
                    r.resume, r.traced != 0});
  }
  return true;
}

bool decode_blocking_poll(std::string_view body, PreloadBlockingBatch* out) {
  if (body.size() < sizeof(proto::BlockingPollReply)) return false;
  auto r = load<proto::BlockingPollReply>(body.data());
  size_t need = sizeof r + r.count * sizeof(proto::BlockingRecord) +
                r.frames * sizeof(proto::BlockingFrame) + r.string_bytes;
  if (body.size() != need) return false;
  const char* recs = body.data() + sizeof r;
  const char* frames = recs + r.count * sizeof(proto::BlockingRecord);
  StringTable s(frames + r.frames * sizeof(proto::BlockingFrame), r.string_bytes);
  if (!s.valid()) return false;
  out->next = r.next;
  out->threshold_ns = r.threshold_ns;
  out->dropped = r.dropped;
  out->calls.clear();
  for (uint32_t i = 0; i < r.count; ++i) {
    auto b = load<proto::BlockingRecord>(recs + i * sizeof(proto::BlockingRecord));
    model::PreloadBlockingCall c;
    c.call = s.at(b.call);
    c.tid = static_cast<int>(b.tid);
    c.duration_ns = b.duration_ns;
    c.call_site = s.at(b.call_site_text);
    for (uint32_t k = 0; k < b.frames_count && b.frames_begin + k < r.frames; ++k) {
      auto f =
          load<proto::BlockingFrame>(frames + (b.frames_begin + k) * sizeof(proto::BlockingFrame));
      c.stack.push_back({s.at(f.function), s.at(f.file), static_cast<int>(f.line), f.frame});
    }
    out->calls.push_back(std::move(c));
  }
  return true;
}

model::PreloadTraceFunction trace_report_function(const std::vector<PreloadFunction>& functions,
                                                  const proto::CountRecord& count) {
  model::PreloadTraceFunction f;
  f.resumes = count.resumes;
  f.starts = count.starts;
  if (count.function < functions.size()) {
    const PreloadFunction& fn = functions[count.function];
    f.function = fn.name;
    f.object = fn.object;
    f.file = fn.file;
    f.line = fn.line;
    f.resume = fn.resume;
    f.traced = fn.traced;
  }
  if (f.function.empty()) f.function = util::hex(f.resume);
  return f;
}

namespace {

bool decode_exit_trace(const proto::ExitReportHeader& h, std::string_view payload,
                       std::string_view tail, model::PreloadTraceReport* r) {
  std::vector<PreloadFunction> functions;
  if (tail.size() !=
          h.counts * sizeof(proto::CountRecord) + h.threads * sizeof(proto::ExitThreadCount) ||
      !decode_trace_functions(payload, &functions)) {
    return false;
  }
  r->mode = "from start to exit";
  r->untraced = h.untraced;
  for (uint32_t i = 0; i < h.counts; ++i) {
    auto c = load<proto::CountRecord>(tail.data() + i * sizeof(proto::CountRecord));
    r->functions.push_back(trace_report_function(functions, c));
    r->total_resumes += c.resumes;
  }
  const char* threads = tail.data() + h.counts * sizeof(proto::CountRecord);
  for (uint32_t i = 0; i < h.threads; ++i) {
    auto t = load<proto::ExitThreadCount>(threads + i * sizeof(proto::ExitThreadCount));
    r->threads.emplace_back(static_cast<int>(t.tid), t.resumes);
  }
  model::sort_trace_report(r);
  return true;
}

}  // namespace

bool decode_exit_report(std::string_view stream, PreloadExitReport* out, std::string* why) {
  *why = "malformed exit report";
  if (stream.size() < sizeof(proto::ExitReportHeader)) return false;
  auto h = load<proto::ExitReportHeader>(stream.data());
  if (h.magic != proto::kExitMagic || h.version != proto::kVersion ||
      h.payload_bytes > stream.size() - sizeof h) {
    return false;
  }
  std::string_view payload = stream.substr(sizeof h, h.payload_bytes);
  std::string_view tail = stream.substr(sizeof h + h.payload_bytes);
  std::string command(h.command, strnlen(h.command, sizeof h.command));
  *out = PreloadExitReport{};
  out->kind = h.kind;
  if (h.kind == proto::kExitTrace) {
    out->trace.pid = static_cast<int>(h.pid);
    out->trace.command = command;
    out->trace.duration_s = static_cast<double>(h.duration_ns) / 1e9;
    return decode_exit_trace(h, payload, tail, &out->trace);
  }
  if (h.kind == proto::kExitBlocking) {
    PreloadBlockingBatch batch;
    if (!tail.empty() || !decode_blocking_poll(payload, &batch)) return false;
    out->blocking.pid = static_cast<int>(h.pid);
    out->blocking.command = command;
    out->blocking.threshold_ns = batch.threshold_ns;
    out->blocking.dropped = batch.dropped;
    out->blocking.calls = std::move(batch.calls);
    return true;
  }
  *why = "exit report of unknown kind " + std::to_string(h.kind);
  return false;
}

}  // namespace asyncprobe::process
