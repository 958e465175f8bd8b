#include "userspace/output/preload_report.h"
#include "userspace/util/format.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <tuple>

namespace asyncprobe::output {

namespace {

// Printable ASCII only: names come from the target.
std::string clean(const std::string& s) {
  std::string out;
  for (unsigned char c : s) out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  return out;
}

std::string where(const std::string& file, int line) {
  return line > 0 ? clean(file) + ":" + std::to_string(line) : std::string();
}

}  // namespace

void write_trace_report_text(std::ostream& out, const model::PreloadTraceReport& r) {
  out << "asyncprobe trace (in-process, " << r.mode << "): pid " << r.pid << " ("
      << clean(r.command) << "), " << util::format_duration(r.duration_s) << ", " << r.total_resumes
      << " resumes";
  if (r.events > 0 || r.lost_events > 0)
    out << ", " << r.events << " events, " << r.lost_events << " lost";
  out << "\n";
  if (r.untraced > 0) {
    out << "warning: " << r.untraced
        << " resume functions could not be patched safely; their resumes are not counted\n";
  }
  out << "\n   resumes  coroutine\n";
  for (const auto& f : r.functions) {
    char num[32];
    std::snprintf(num, sizeof num, "%10llu", static_cast<unsigned long long>(f.resumes));
    out << num << "  " << clean(f.function);
    if (f.line > 0) out << "  (" << where(f.file, f.line) << ")";
    if (f.starts > 0) out << "  [" << f.starts << " started]";
    if (f.frames > 0) out << "  [" << f.frames << " frames]";
    out << "\n";
  }
  if (r.functions.empty()) out << "         0  (no coroutine was resumed)\n";
  if (!r.threads.empty()) {
    out << "\n   resumes  thread\n";
    for (const auto& [tid, n] : r.threads) {
      char num[32];
      std::snprintf(num, sizeof num, "%10llu", static_cast<unsigned long long>(n));
      out << num << "  " << tid << "\n";
    }
  }
}

void write_trace_report_json(std::ostream& out, const model::PreloadTraceReport& r) {
  nlohmann::ordered_json j;
  j["schema"] = "asyncprobe.preload-trace/1";
  j["pid"] = r.pid;
  j["command"] = clean(r.command);
  j["mode"] = r.mode;
  j["duration_s"] = r.duration_s;
  j["total_resumes"] = r.total_resumes;
  j["events"] = r.events;
  j["lost_events"] = r.lost_events;
  j["untraced_functions"] = r.untraced;
  j["functions"] = nlohmann::ordered_json::array();
  for (const auto& f : r.functions) {
    nlohmann::ordered_json o;
    o["function"] = clean(f.function);
    o["object"] = clean(f.object);
    o["file"] = clean(f.file);
    o["line"] = f.line;
    o["resume"] = util::hex(f.resume);
    o["resumes"] = f.resumes;
    o["starts"] = f.starts;
    o["frames"] = f.frames;
    j["functions"].push_back(o);
  }
  j["threads"] = nlohmann::ordered_json::array();
  for (const auto& [tid, n] : r.threads) j["threads"].push_back({{"tid", tid}, {"resumes", n}});
  out << j.dump(2) << "\n";
}

void write_blocking_report_text(std::ostream& out, const model::PreloadBlockingReport& r) {
  struct Group {
    const model::PreloadBlockingCall* first = nullptr;
    uint64_t count = 0, total = 0, max = 0;
  };
  std::vector<Group> groups;
  std::map<std::string, size_t> index;
  for (const auto& c : r.calls) {
    std::string key = c.call + "|" + c.call_site;
    for (const auto& f : c.stack)
      key += "|" + f.function + "@" + f.file + ":" + std::to_string(f.line);
    auto [it, inserted] = index.emplace(key, groups.size());
    if (inserted) groups.push_back(Group{&c});
    Group& g = groups[it->second];
    g.count++;
    g.total += c.duration_ns;
    g.max = std::max(g.max, c.duration_ns);
  }
  out << "asyncprobe: blocking calls inside coroutines in pid " << r.pid << " (" << clean(r.command)
      << "), threshold " << util::format_duration_ns(r.threshold_ns) << ": " << r.calls.size()
      << " recorded";
  if (r.dropped > 0) out << ", " << r.dropped << " more not kept (buffer full)";
  out << "\n";
  for (const auto& g : groups) {
    const model::PreloadBlockingCall& c = *g.first;
    out << "  " << clean(c.call) << " x" << g.count << ", total "
        << util::format_duration_ns(g.total) << ", max " << util::format_duration_ns(g.max)
        << ", thread " << c.tid << "\n";
    out << "    called from " << clean(c.call_site) << "\n";
    for (size_t k = 0; k < c.stack.size(); ++k) {
      const auto& f = c.stack[k];
      out << "    #" << k << " " << clean(f.function);
      if (k == 0) {
        out << " running";
        if (f.line > 0) out << " at " << where(f.file, f.line);
      } else if (f.line > 0) {
        out << " awaiting at " << where(f.file, f.line);
      } else {
        out << " awaiting (line unknown)";
      }
      out << "\n";
    }
  }
}

void write_blocking_report_json(std::ostream& out, const model::PreloadBlockingReport& r) {
  nlohmann::ordered_json j;
  j["schema"] = "asyncprobe.preload-blocking/1";
  j["pid"] = r.pid;
  j["command"] = clean(r.command);
  j["threshold_ns"] = r.threshold_ns;
  j["dropped"] = r.dropped;
  j["calls"] = nlohmann::ordered_json::array();
  for (const auto& c : r.calls) {
    nlohmann::ordered_json o;
    o["call"] = clean(c.call);
    o["tid"] = c.tid;
    o["duration_ns"] = c.duration_ns;
    o["call_site"] = clean(c.call_site);
    o["stack"] = nlohmann::ordered_json::array();
    for (const auto& f : c.stack) {
      o["stack"].push_back({{"function", clean(f.function)},
                            {"file", clean(f.file)},
                            {"line", f.line},
                            {"frame", util::hex(f.frame)}});
    }
    j["calls"].push_back(o);
  }
  out << j.dump(2) << "\n";
}

}  // namespace asyncprobe::output
