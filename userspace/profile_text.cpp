#include "userspace/profile_text.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "userspace/profile_stacks.h"

namespace asyncprobe {

namespace {

std::string percent(int64_t part, int64_t total) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", total > 0 ? 100.0 * part / total : 0.0);
  return buf;
}

// "12 samples" or "3.250 ms".
std::string weight_text(const Profile& p, int64_t w) {
  if (p.type == Profile::Type::kCpu) return std::to_string(w) + (w == 1 ? " sample" : " samples");
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.3f ms", w / 1e6);
  return buf;
}

std::string kind_tag(const ProfileFrame& f, bool uncertain) {
  switch (f.kind) {
    case ProfileFrame::Kind::kCoroutine:
      return "[coroutine]";
    case ProfileFrame::Kind::kAsync:
      return uncertain ? "[async, uncertain]" : "[async]";
    case ProfileFrame::Kind::kKernel:
      return "[kernel]";
    case ProfileFrame::Kind::kNative:
      break;
  }
  return f.inlined ? "[inlined]" : "";
}

std::string function_name(const ProfileFrame& f) {
  return f.function.empty() ? "[unknown]" : f.function;
}

}  // namespace

void write_profile_text(std::ostream& out, const Profile& p, const ProfileTextOptions& opts) {
  int64_t total = 0;
  int64_t total_count = 0;
  for (const ProfileSample& s : p.samples) {
    total += profile_weight(p, s);
    total_count += s.count;
  }
  out << "asyncprobe " << (p.type == Profile::Type::kCpu ? "CPU" : "await") << " profile of pid "
      << p.pid;
  if (!p.command.empty()) out << " (" << p.command << ")";
  if (!p.executable.empty()) out << " " << p.executable;
  out << "\n";
  char line[160];
  std::snprintf(line, sizeof line, "duration %.3f s", p.duration_ns / 1e9);
  out << line;
  if (p.type == Profile::Type::kCpu && p.frequency_hz > 0) out << " at " << p.frequency_hz << " Hz";
  if (p.type == Profile::Type::kAwait && p.period_ns > 0) {
    std::snprintf(line, sizeof line, ", a snapshot every %.3f ms", p.period_ns / 1e6);
    out << line;
  }
  out << ": " << total_count << (p.type == Profile::Type::kCpu ? " samples" : " suspensions seen");
  if (p.type == Profile::Type::kAwait) out << ", " << weight_text(p, total) << " suspended";
  out << " in " << p.samples.size() << " distinct stacks";
  if (p.type == Profile::Type::kCpu) out << ", " << p.lost_samples << " lost";
  out << "\n";
  for (const std::string& w : p.warnings) out << "warning: " << w << "\n";
  if (total <= 0) {
    out << "\nno samples\n";
    return;
  }

  // Self: the leaf frame's function. Total: every function on the stack, once per stack.
  std::map<std::string, std::pair<int64_t, int64_t>> functions;  // name -> {self, total}
  for (const ProfileSample& s : p.samples) {
    const int64_t w = profile_weight(p, s);
    if (s.frames.empty() || w <= 0) continue;
    functions[function_name(p.frames[s.frames.front()])].first += w;
    std::set<std::string> seen;
    for (const uint32_t f : s.frames) {
      const std::string name = function_name(p.frames[f]);
      if (seen.insert(name).second) functions[name].second += w;
    }
  }
  std::vector<std::pair<std::string, std::pair<int64_t, int64_t>>> by_self(functions.begin(),
                                                                           functions.end());
  std::stable_sort(by_self.begin(), by_self.end(), [](const auto& a, const auto& b) {
    if (a.second.first != b.second.first) return a.second.first > b.second.first;
    return a.second.second > b.second.second;
  });
  out << "\nTop functions (self, total):\n";
  for (size_t i = 0; i < by_self.size() && i < opts.top_functions; ++i) {
    const auto& [name, w] = by_self[i];
    std::snprintf(line, sizeof line, "  %7s %7s  ", percent(w.first, total).c_str(),
                  percent(w.second, total).c_str());
    out << line << name << "\n";
  }

  std::vector<size_t> order(p.samples.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return profile_weight(p, p.samples[a]) > profile_weight(p, p.samples[b]);
  });
  out << "\nTop stacks (leaf first):\n";
  for (size_t rank = 0; rank < order.size() && rank < opts.top_stacks; ++rank) {
    const ProfileSample& s = p.samples[order[rank]];
    const int64_t w = profile_weight(p, s);
    if (w <= 0) break;
    out << "#" << rank + 1 << "  " << weight_text(p, w) << " (" << percent(w, total) << ")";
    if (s.tid != 0) {
      out << "  thread " << s.tid;
      if (!s.thread_name.empty()) out << " " << s.thread_name;
    }
    if (s.coroutine != 0) {
      out << "  coroutine " << (s.coroutine_function.empty() ? "?" : s.coroutine_function) << " @ "
          << hex_address(s.coroutine);
    }
    if (s.async_uncertain) out << "  (async stack uncertain)";
    out << "\n";
    for (size_t i = 0; i < s.frames.size() && i < opts.max_frames; ++i) {
      const ProfileFrame& f = p.frames[s.frames[i]];
      out << "    " << function_name(f);
      const std::string loc = frame_location(f);
      if (!loc.empty()) out << "  " << loc;
      const std::string tag = kind_tag(f, s.async_uncertain);
      if (!tag.empty()) out << "  " << tag;
      out << "\n";
    }
    if (s.frames.size() > opts.max_frames) {
      out << "    ... " << s.frames.size() - opts.max_frames << " more frames\n";
    }
  }
}

}  // namespace asyncprobe
