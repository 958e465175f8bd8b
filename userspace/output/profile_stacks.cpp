#include "userspace/output/profile_stacks.h"
#include "userspace/util/format.h"

#include <cinttypes>
#include <cstdio>

namespace asyncprobe::output {

bool check_profile(const model::Profile& p, std::string* error) {
  for (size_t i = 0; i < p.samples.size(); ++i) {
    for (const uint32_t f : p.samples[i].frames) {
      if (f >= p.frames.size()) {
        if (error != nullptr) {
          *error = "profile sample " + std::to_string(i) + " names frame " + std::to_string(f) +
                   " of " + std::to_string(p.frames.size());
        }
        return false;
      }
    }
  }
  return true;
}

int64_t profile_weight(const model::Profile& p, const model::ProfileSample& s) {
  return p.type == model::Profile::Type::kCpu ? s.count : s.value_ns;
}

const char* profile_weight_unit(const model::Profile& p) {
  return p.type == model::Profile::Type::kCpu ? "samples" : "ns";
}

const char* profile_type_name(model::Profile::Type t) {
  return t == model::Profile::Type::kCpu ? "cpu" : "await";
}

const char* frame_kind_name(model::ProfileFrame::Kind k) {
  switch (k) {
    case model::ProfileFrame::Kind::kNative:
      return "native";
    case model::ProfileFrame::Kind::kCoroutine:
      return "coroutine";
    case model::ProfileFrame::Kind::kAsync:
      return "async";
    case model::ProfileFrame::Kind::kKernel:
      return "kernel";
  }
  return "native";
}

std::string frame_location(const model::ProfileFrame& f) {
  if (f.file.empty()) return "";
  if (f.line <= 0) return f.file;
  return f.file + ":" + std::to_string(f.line);
}

std::string profile_weight_text(const model::Profile& p, int64_t w) {
  if (p.type == model::Profile::Type::kCpu)
    return std::to_string(w) + (w == 1 ? " sample" : " samples");
  return util::format_duration_ns(w < 0 ? 0 : static_cast<uint64_t>(w));
}

}  // namespace asyncprobe::output
