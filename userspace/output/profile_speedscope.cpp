#include "userspace/output/profile_speedscope.h"

#include <map>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "userspace/output/profile_stacks.h"

namespace asyncprobe::output {

namespace {

using json = nlohmann::ordered_json;

constexpr const char* kSpeedscopeSchema = "https://www.speedscope.app/file-format-schema.json";

std::string speedscope_name(const model::ProfileFrame& f, bool uncertain) {
  std::string name = f.function.empty() ? "[unknown]" : f.function;
  switch (f.kind) {
    case model::ProfileFrame::Kind::kCoroutine:
      return name + " [coroutine]";
    case model::ProfileFrame::Kind::kAsync:
      return name + (uncertain ? " [async?]" : " [async]");
    case model::ProfileFrame::Kind::kKernel:
      return name + " [kernel]";
    case model::ProfileFrame::Kind::kNative:
      break;
  }
  return f.inlined ? name + " [inlined]" : name;
}

// speedscope merges frames by identity in its own frame table; we hand it each distinct
// (name, file, line) once.
class FrameTable {
 public:
  explicit FrameTable(const model::Profile& p) : p_(p) {}

  size_t index(uint32_t frame, bool uncertain) {
    const model::ProfileFrame& f = p_.frames[frame];
    const bool marks_uncertain = uncertain && f.kind == model::ProfileFrame::Kind::kAsync;
    auto [it, added] = by_model_.emplace(std::make_pair(frame, marks_uncertain), 0);
    if (!added) return it->second;
    const std::string name = speedscope_name(f, marks_uncertain);
    auto [jt, fresh] = by_identity_.emplace(std::make_tuple(name, f.file, f.line), frames_.size());
    if (fresh) {
      json j{{"name", name}};
      if (!f.file.empty()) j["file"] = f.file;
      if (f.line > 0) j["line"] = f.line;
      frames_.push_back(std::move(j));
    }
    it->second = jt->second;
    return it->second;
  }

  json take() { return std::move(frames_); }

 private:
  const model::Profile& p_;
  std::map<std::pair<uint32_t, bool>, size_t> by_model_;
  std::map<std::tuple<std::string, std::string, int>, size_t> by_identity_;
  json frames_ = json::array();
};

}  // namespace

json profile_to_speedscope(const model::Profile& p) {
  // CPU weights are nanoseconds when the sampler measured them for every stack, else counts.
  bool use_ns = true;
  if (p.type == model::Profile::Type::kCpu) {
    for (const model::ProfileSample& s : p.samples) {
      if (s.count > 0 && s.value_ns <= 0) use_ns = false;
    }
  }
  FrameTable table(p);
  struct Thread {
    std::string name;
    json samples = json::array();
    json weights = json::array();
    int64_t total = 0;
  };
  std::map<int, Thread> threads;  // by tid; 0 = merged across threads
  for (const model::ProfileSample& s : p.samples) {
    const int64_t w = use_ns ? s.value_ns : s.count;
    if (w <= 0 || s.frames.empty()) continue;
    Thread& t = threads[s.tid];
    if (t.name.empty()) {
      t.name = s.tid == 0 ? std::string("all threads") : "thread " + std::to_string(s.tid);
      if (s.tid != 0 && !s.thread_name.empty()) t.name += " (" + s.thread_name + ")";
    }
    json stack = json::array();
    for (auto it = s.frames.rbegin(); it != s.frames.rend(); ++it) {
      stack.push_back(table.index(*it, s.async_uncertain));
    }
    t.samples.push_back(std::move(stack));
    t.weights.push_back(w);
    t.total += w;
  }
  json profiles = json::array();
  for (auto& [tid, t] : threads) {
    profiles.push_back(json{{"type", "sampled"},
                            {"name", t.name},
                            {"unit", use_ns ? "nanoseconds" : "none"},
                            {"startValue", 0},
                            {"endValue", t.total},
                            {"samples", std::move(t.samples)},
                            {"weights", std::move(t.weights)}});
  }
  std::string name = std::string("asyncprobe ") + profile_type_name(p.type) + " profile of pid " +
                     std::to_string(p.pid);
  if (!p.command.empty()) name += " (" + p.command + ")";
  return json{{"$schema", kSpeedscopeSchema},    {"shared", json{{"frames", table.take()}}},
              {"profiles", std::move(profiles)}, {"name", name},
              {"activeProfileIndex", 0},         {"exporter", "asyncprobe"}};
}

void write_speedscope(std::ostream& out, const model::Profile& p) {
  out << profile_to_speedscope(p).dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
}

}  // namespace asyncprobe::output
