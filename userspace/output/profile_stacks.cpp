#include "userspace/output/profile_stacks.h"

#include <cinttypes>
#include <cstdio>

namespace asyncprobe {

bool check_profile(const Profile& p, std::string* error) {
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

int64_t profile_weight(const Profile& p, const ProfileSample& s) {
  return p.type == Profile::Type::kCpu ? s.count : s.value_ns;
}

const char* profile_weight_unit(const Profile& p) {
  return p.type == Profile::Type::kCpu ? "samples" : "ns";
}

const char* profile_type_name(Profile::Type t) {
  return t == Profile::Type::kCpu ? "cpu" : "await";
}

const char* frame_kind_name(ProfileFrame::Kind k) {
  switch (k) {
    case ProfileFrame::Kind::kNative:
      return "native";
    case ProfileFrame::Kind::kCoroutine:
      return "coroutine";
    case ProfileFrame::Kind::kAsync:
      return "async";
    case ProfileFrame::Kind::kKernel:
      return "kernel";
  }
  return "native";
}

std::string frame_location(const ProfileFrame& f) {
  if (f.file.empty()) return "";
  if (f.line <= 0) return f.file;
  return f.file + ":" + std::to_string(f.line);
}

std::string profile_weight_text(const Profile& p, int64_t w) {
  if (p.type == Profile::Type::kCpu) return std::to_string(w) + (w == 1 ? " sample" : " samples");
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.3f ms", static_cast<double>(w) / 1e6);
  return buf;
}

std::string hex_address(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
  return buf;
}

}  // namespace asyncprobe
