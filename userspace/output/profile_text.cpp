#include "userspace/output/profile_text.h"
#include "userspace/util/format.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "userspace/output/function_name_shortener.h"
#include "userspace/output/profile_stacks.h"

namespace asyncprobe::output {

namespace {

std::string percent(int64_t part, int64_t total) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", total > 0 ? 100.0 * part / total : 0.0);
  return buf;
}

std::string kind_tag(const model::ProfileFrame& f, bool uncertain) {
  switch (f.kind) {
    case model::ProfileFrame::Kind::kCoroutine:
      return "[coroutine]";
    case model::ProfileFrame::Kind::kAsync:
      return uncertain ? "[async, uncertain]" : "[async]";
    case model::ProfileFrame::Kind::kKernel:
      return "[kernel]";
    case model::ProfileFrame::Kind::kNative:
      break;
  }
  return f.inlined ? "[inlined]" : "";
}

// A function name as printed: shortened past max_chars (0: whole).
std::string display_name(const std::string& name, size_t max_chars) {
  return max_chars == 0 ? name : shorten_function_name(name, max_chars);
}

std::string function_name(const model::ProfileFrame& f) {
  return f.function.empty() ? "[unknown]" : f.function;
}

// Samples with the same frames (and the same certainty), whatever thread or coroutine they
// belong to: one entry of "Top stacks". Frames compare by what is printed (an awaiting
// coroutine's frame is interned per frame address, a native one per pc).
struct StackGroup {
  std::vector<size_t> samples;  // indexes into Profile::samples
  int64_t weight = 0;
};

std::string printed_stack_key(const model::Profile& p, const model::ProfileSample& s) {
  std::string key(s.async_uncertain ? "?" : "");
  for (const uint32_t i : s.frames) {
    const model::ProfileFrame& f = p.frames[i];
    key += std::to_string(static_cast<int>(f.kind)) + (f.inlined ? "i" : "") + f.function + '\0' +
           f.file + ':' + std::to_string(f.line) + '\0';
  }
  return key;
}

std::vector<StackGroup> group_stacks(const model::Profile& p) {
  std::map<std::string, size_t> index;
  std::vector<StackGroup> groups;
  for (size_t i = 0; i < p.samples.size(); ++i) {
    const model::ProfileSample& s = p.samples[i];
    auto [it, fresh] = index.try_emplace(printed_stack_key(p, s), groups.size());
    if (fresh) groups.emplace_back();
    groups[it->second].samples.push_back(i);
    groups[it->second].weight += profile_weight(p, s);
  }
  std::stable_sort(groups.begin(), groups.end(),
                   [](const StackGroup& a, const StackGroup& b) { return a.weight > b.weight; });
  return groups;
}

// "  thread 4243 worker  coroutine compute(int) @ 0x7f...": whose stack it is. A group of
// several samples names how many threads and coroutines, and the coroutine function when they
// share it.
std::string owner_text(const model::Profile& p, const StackGroup& g, size_t max_chars) {
  const model::ProfileSample& first = p.samples[g.samples.front()];
  std::string out;
  if (g.samples.size() == 1) {
    if (first.tid != 0) {
      out += "  thread " + std::to_string(first.tid);
      if (!first.thread_name.empty()) out += " " + first.thread_name;
    }
    if (first.coroutine != 0) {
      const std::string& fn = first.coroutine_function;
      out += "  coroutine " + (fn.empty() ? "?" : display_name(fn, max_chars)) + " @ " +
             util::hex(first.coroutine);
    }
    return out;
  }
  std::set<int> tids;
  std::set<uint64_t> coroutines;
  bool same_function = true;
  for (const size_t i : g.samples) {
    const model::ProfileSample& s = p.samples[i];
    if (s.tid != 0) tids.insert(s.tid);
    if (s.coroutine != 0) coroutines.insert(s.coroutine);
    same_function = same_function && s.coroutine_function == first.coroutine_function;
  }
  if (!tids.empty()) {
    out += "  " + std::to_string(tids.size()) + (tids.size() == 1 ? " thread" : " threads");
  }
  if (!coroutines.empty()) {
    out += "  " + std::to_string(coroutines.size()) +
           (coroutines.size() == 1 ? " coroutine" : " coroutines");
    if (same_function && !first.coroutine_function.empty()) {
      out += " " + display_name(first.coroutine_function, max_chars);
    }
  }
  return out;
}

void write_header(std::ostream& out, const model::Profile& p, int64_t total, int64_t total_count) {
  out << "asyncprobe " << (p.type == model::Profile::Type::kCpu ? "CPU" : "await")
      << " profile of pid " << p.pid;
  if (!p.command.empty()) out << " (" << p.command << ")";
  if (!p.executable.empty()) out << " " << p.executable;
  out << "\n";
  out << "duration " << util::format_duration_ns(p.duration_ns);
  if (p.type == model::Profile::Type::kCpu && p.frequency_hz > 0)
    out << " at " << p.frequency_hz << " Hz";
  if (p.type == model::Profile::Type::kAwait && p.period_ns > 0) {
    out << ", a snapshot every " << util::format_duration_ns(p.period_ns);
  }
  out << ": " << total_count
      << (p.type == model::Profile::Type::kCpu ? " samples" : " suspensions seen");
  if (p.type == model::Profile::Type::kAwait)
    out << ", " << profile_weight_text(p, total) << " suspended";
  out << " in " << p.samples.size() << " distinct stacks";
  if (p.type == model::Profile::Type::kCpu) out << ", " << p.lost_samples << " lost";
  out << "\n";
}

// Self: the leaf frame's function. Total: every function on the stack, once per stack.
void write_top_functions(std::ostream& out, const model::Profile& p, int64_t total,
                         const ProfileTextOptions& opts) {
  std::map<std::string, std::pair<int64_t, int64_t>> functions;  // name -> {self, total}
  for (const model::ProfileSample& s : p.samples) {
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
  char line[160];
  for (size_t i = 0; i < by_self.size() && i < opts.top_functions; ++i) {
    const auto& [name, w] = by_self[i];
    std::snprintf(line, sizeof line, "  %7s %7s  ", percent(w.first, total).c_str(),
                  percent(w.second, total).c_str());
    out << line << display_name(name, opts.max_name_chars) << "\n";
  }
}

void write_top_stacks(std::ostream& out, const model::Profile& p, int64_t total,
                      const ProfileTextOptions& opts) {
  const std::vector<StackGroup> groups = group_stacks(p);
  out << "\nTop stacks (leaf first):\n";
  for (size_t rank = 0; rank < groups.size() && rank < opts.top_stacks; ++rank) {
    const StackGroup& g = groups[rank];
    const model::ProfileSample& s = p.samples[g.samples.front()];
    if (g.weight <= 0) break;
    out << "#" << rank + 1 << "  " << profile_weight_text(p, g.weight) << " ("
        << percent(g.weight, total) << ")" << owner_text(p, g, opts.max_name_chars);
    if (s.async_uncertain) out << "  (async stack uncertain)";
    out << "\n";
    for (size_t i = 0; i < s.frames.size() && i < opts.max_frames; ++i) {
      const model::ProfileFrame& f = p.frames[s.frames[i]];
      out << "    " << display_name(function_name(f), opts.max_name_chars);
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

}  // namespace

void write_profile_text(std::ostream& out, const model::Profile& p,
                        const ProfileTextOptions& opts) {
  int64_t total = 0;
  int64_t total_count = 0;
  for (const model::ProfileSample& s : p.samples) {
    total += profile_weight(p, s);
    total_count += s.count;
  }
  write_header(out, p, total, total_count);
  for (const std::string& w : p.warnings) out << "warning: " << w << "\n";
  if (total <= 0) {
    out << "\nno samples\n";
    return;
  }
  write_top_functions(out, p, total, opts);
  write_top_stacks(out, p, total, opts);
}

}  // namespace asyncprobe::output
