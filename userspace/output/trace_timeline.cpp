#include "userspace/output/trace_timeline.h"
#include "userspace/util/format.h"

#include <cinttypes>
#include <cstdio>
#include <set>
#include <string_view>

#include "userspace/output/trace_report.h"
#include "userspace/trace/trace_events.h"

namespace asyncprobe::output {

namespace {

// Microseconds with nanosecond decimals, relative to base (never negative).
std::string micros(uint64_t ts, uint64_t base) {
  uint64_t ns = ts > base ? ts - base : 0;
  char buf[40];
  std::snprintf(buf, sizeof buf, "%" PRIu64 ".%03" PRIu64, ns / 1000, ns % 1000);
  return buf;
}

// Concatenation into one string, without temporaries.
template <typename... Parts>
std::string cat(const Parts&... parts) {
  std::string out;
  (out.append(std::string_view(parts)), ...);
  return out;
}

std::string base_name(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Length of a valid UTF-8 sequence at s[i], 0 when invalid.
size_t utf8_length(const std::string& s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return 0;
  }
  return n;
}

}  // namespace

std::string json_quote(const std::string& s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
      ++i;
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
      ++i;
    } else if (size_t n = utf8_length(s, i); n > 0) {
      out.append(s, i, n);
      i += n;
    } else {
      out += "\xef\xbf\xbd";
      ++i;
    }
  }
  out += '"';
  return out;
}

namespace {

// One timeline document: the events in the order the format needs them, comma-separated.
class ChromeTraceWriter {
 public:
  ChromeTraceWriter(std::ostream& out, const trace::TraceModel& model, const TimelineInfo& info)
      : out(out), model(model), info(info), base(info.base_ts), pid(std::to_string(info.pid)) {}

  TimelineStats write() {
    out << "{\"displayTimeUnit\": \"ns\", \"otherData\": {\"tool\": \"asyncprobe trace\", "
           "\"pid\": "
        << pid << "}, \"traceEvents\": [";
    write_metadata();
    // Stalls first: at equal timestamps the enclosing slice must come before what it encloses.
    write_stalls();
    write_slices();
    write_blocking();
    write_flows();
    out << "\n]}\n";
    return stats_;
  }

 private:
  std::ostream& out;
  const trace::TraceModel& model;
  const TimelineInfo& info;
  const uint64_t base;
  const std::string pid;
  bool first = true;
  TimelineStats stats_;

  void event(const std::string& body) {
    out << (first ? "\n" : ",\n") << "{" << body << "}";
    first = false;
  }
  std::string fn_name(uint32_t fn) const {
    return fn < model.functions().size() ? model.functions()[fn].name : std::string("?");
  }

  // The process and one named track per thread.
  void write_metadata() {
    event(cat("\"name\": \"process_name\", \"ph\": \"M\", \"pid\": ", pid,
              ", \"tid\": 0, \"args\": {\"name\": ",
              json_quote(cat(info.command, " (pid ", pid, ")")), "}"));
    std::set<uint32_t> tids;
    for (const auto& s : model.slices()) tids.insert(s.tid);
    for (const auto& b : model.blocking()) tids.insert(b.tid);
    for (const auto& s : model.stalls()) tids.insert(s.tid);
    for (uint32_t tid : tids) {
      auto it = info.thread_names.find(tid);
      const std::string t = std::to_string(tid);
      std::string name = it != info.thread_names.end() && !it->second.empty()
                             ? cat(it->second, " (", t, ")")
                             : cat("thread ", t);
      event(cat("\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": ", pid, ", \"tid\": ", t,
                ", \"args\": {\"name\": ", json_quote(name), "}"));
    }
  }

  void write_stalls() {
    for (const auto& s : model.stalls()) {
      std::string args =
          cat("\"ended_by\": ",
              json_quote(s.ended_by_nr == UINT32_MAX ? std::string("(still stalled)")
                                                     : trace::syscall_name(s.ended_by_nr)),
              ", \"runs\": ", std::to_string(s.runs));
      if (s.have_culprit) {
        args += cat(", \"responsible\": ", json_quote(fn_name(s.culprit_fn)),
                    ", \"responsible_running_us\": ", micros(s.culprit_self_ns, 0));
      }
      event(cat("\"name\": \"event-loop stall\", \"cat\": \"stall\", \"ph\": \"X\", \"ts\": ",
                micros(s.start_ts, base), ", \"dur\": ", micros(s.end_ts - s.start_ts, 0),
                ", \"pid\": ", pid, ", \"tid\": ", std::to_string(s.tid), ", \"args\": {", args,
                "}"));
      ++stats_.stalls;
    }
  }

  void write_slices() {
    const auto& slices = model.slices();
    for (const auto& s : slices) {
      std::string args = cat("\"frame\": \"", util::hex(s.frame), "\"");
      if (s.start_of_body) {
        args += ", \"resumed_from\": \"start\"";
      } else if (s.index >= 0) {
        trace::SuspendPointLocation loc = model.location(s.fn, s.index);
        args +=
            cat(", \"resumed_from\": ",
                json_quote(loc.line > 0 ? cat(base_name(loc.file), ":", std::to_string(loc.line))
                                        : cat("index ", std::to_string(s.index))));
      }
      if (s.offcpu_ns > 0) args += cat(", \"off_cpu_us\": ", micros(s.offcpu_ns, 0));
      if (s.open_at_end) args += ", \"running_at_end\": true";
      event(cat("\"name\": ", json_quote(fn_name(s.fn)),
                ", \"cat\": \"coroutine\", \"ph\": \"X\", \"ts\": ", micros(s.start, base),
                ", \"dur\": ", micros(s.end - s.start, 0), ", \"pid\": ", pid,
                ", \"tid\": ", std::to_string(s.tid), ", \"args\": {", args, "}"));
      ++stats_.slices;
    }
  }

  void write_blocking() {
    for (const auto& b : model.blocking()) {
      std::string args = cat("\"coroutine\": ", json_quote(fn_name(b.fn)));
      if (const symbolizer::InlineFrame* site = blocking_site(b)) {
        args += cat(", \"site\": ", json_quote(cat(base_name(site->location.file), ":",
                                                   std::to_string(site->location.line))));
      }
      if (b.in_progress) args += ", \"in_progress\": true";
      event(cat("\"name\": ", json_quote(trace::syscall_name(b.nr)),
                ", \"cat\": \"blocking\", \"ph\": \"X\", \"ts\": ", micros(b.enter_ts, base),
                ", \"dur\": ", micros(b.exit_ts - b.enter_ts, 0), ", \"pid\": ", pid,
                ", \"tid\": ", std::to_string(b.tid), ", \"args\": {", args, "}"));
      ++stats_.blocking;
    }
  }

  // Flows bind to the slice enclosing their timestamp: one nanosecond into each run.
  void write_flows() {
    const auto& slices = model.slices();
    uint64_t id = 1;
    for (const auto& f : model.flows()) {
      if (f.from_slice >= slices.size() || f.to_slice >= slices.size()) continue;
      const trace::RunSlice& a = slices[f.from_slice];
      const trace::RunSlice& b = slices[f.to_slice];
      uint64_t ta = a.end > a.start ? a.start + 1 : a.start;
      uint64_t tb = b.end > b.start ? b.start + 1 : b.start;
      const std::string fid = std::to_string(id++);
      event(cat("\"name\": \"awaits\", \"cat\": \"await\", \"ph\": \"s\", \"id\": ", fid,
                ", \"ts\": ", micros(ta, base), ", \"pid\": ", pid,
                ", \"tid\": ", std::to_string(a.tid)));
      event(cat("\"name\": \"awaits\", \"cat\": \"await\", \"ph\": \"f\", \"bp\": \"e\", \"id\": ",
                fid, ", \"ts\": ", micros(tb, base), ", \"pid\": ", pid,
                ", \"tid\": ", std::to_string(b.tid)));
      ++stats_.flows;
    }
  }
};

}  // namespace

TimelineStats write_chrome_trace(std::ostream& out, const trace::TraceModel& model,
                                 const TimelineInfo& info) {
  return ChromeTraceWriter(out, model, info).write();
}

}  // namespace asyncprobe::output
