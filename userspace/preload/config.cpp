#include "userspace/preload/config.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "userspace/preload/protocol.h"

namespace asyncprobe::preload {

Config& config() {
  static Config c;
  return c;
}

namespace {

bool parse_u64(const std::string& s, uint64_t* out) {
  if (s.empty() || s.size() > 19) return false;
  uint64_t v = 0;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return false;
    v = v * 10 + static_cast<uint64_t>(ch - '0');
  }
  *out = v;
  return true;
}

void copy_path(char* dst, const char* src) {
  if (src == nullptr) return;
  std::strncpy(dst, src, kPathMax - 1);
  dst[kPathMax - 1] = '\0';
}

}  // namespace

bool parse_options(const char* options, Config* c) {
  if (options == nullptr) return true;
  std::string all = options;
  size_t at = 0;
  bool ok = true;
  while (at <= all.size()) {
    size_t comma = all.find(',', at);
    if (comma == std::string::npos) comma = all.size();
    std::string word = all.substr(at, comma - at);
    at = comma + 1;
    if (word.empty()) continue;
    std::string key = word, value;
    if (size_t eq = word.find('='); eq != std::string::npos) {
      key = word.substr(0, eq);
      value = word.substr(eq + 1);
    }
    uint64_t n = 0;
    if (key == "crash") {
      c->crash = true;
    } else if (key == "no-crash") {
      c->crash = false;
    } else if (key == "socket") {
      c->socket = true;
    } else if (key == "no-socket") {
      c->socket = false;
    } else if (key == "trace") {
      c->trace = true;
    } else if (key == "trace-from-start") {
      c->trace = true;
      c->trace_from_start = true;
    } else if (key == "blocking") {
      c->blocking = true;
      if (!value.empty()) {
        if (parse_u64(value, &n)) {
          c->blocking_threshold_ns = n;
        } else {
          ok = false;
        }
      }
    } else if (key == "follow-children") {
      c->follow_children = true;
    } else if (key == "json") {
      c->json = true;
    } else if (key == "crash-wait") {
      if (parse_u64(value, &n) && n <= 3'600'000) {
        c->crash_wait_ms = static_cast<int>(n);
      } else {
        ok = false;
      }
    }
  }
  return ok;
}

void load_config_from_environment() {
  Config& c = config();
  parse_options(std::getenv(preload_proto::kEnvOptions), &c);
  copy_path(c.crash_report, std::getenv(preload_proto::kEnvCrashReport));
  copy_path(c.trace_out, std::getenv(preload_proto::kEnvTraceOut));
  copy_path(c.blocking_out, std::getenv(preload_proto::kEnvBlockingOut));
  copy_path(c.helper, std::getenv(preload_proto::kEnvHelper));
  copy_path(c.debug_dirs, std::getenv(preload_proto::kEnvDebugDirs));
  copy_path(c.socket_dir, std::getenv(preload_proto::kEnvSocketDir));
  if (c.follow_children) return;
  // Children must not inherit us: put LD_PRELOAD back the way the user had it.
  if (std::getenv(preload_proto::kEnvOptions) != nullptr) {
    const char* orig = std::getenv(preload_proto::kEnvOrigPreload);
    if (orig != nullptr && orig[0] != '\0') {
      setenv("LD_PRELOAD", orig, 1);
    } else {
      unsetenv("LD_PRELOAD");
    }
  }
  for (const char* name :
       {preload_proto::kEnvOptions, preload_proto::kEnvCrashReport, preload_proto::kEnvTraceOut,
        preload_proto::kEnvBlockingOut, preload_proto::kEnvHelper, preload_proto::kEnvDebugDirs,
        preload_proto::kEnvSocketDir, preload_proto::kEnvOrigPreload}) {
    unsetenv(name);
  }
}

}  // namespace asyncprobe::preload
