#include "userspace/watch/event.h"

#include <ctime>
#include <nlohmann/json.hpp>
#include <tuple>

#include "userspace/util/format.h"

namespace asyncprobe::watch {

const char* to_string(EventKind k) {
  switch (k) {
    case EventKind::kAttached:
      return "attached";
    case EventKind::kDetached:
      return "detached";
    case EventKind::kError:
      return "error";
    case EventKind::kUnchanged:
      return "unchanged";
    case EventKind::kStuck:
      return "stuck";
    case EventKind::kRecovered:
      return "recovered";
    case EventKind::kOrphaned:
      return "orphaned";
    case EventKind::kAwaitCycle:
      return "await_cycle";
    case EventKind::kThreadDeadlock:
      return "thread_deadlock";
    case EventKind::kLockOwnerGone:
      return "lock_owner_gone";
    case EventKind::kFailed:
      return "failed";
  }
  return "?";
}

bool PointKey::operator<(const PointKey& o) const {
  return std::tie(function, file, line, index) < std::tie(o.function, o.file, o.line, o.index);
}

bool PointKey::operator==(const PointKey& o) const {
  return std::tie(function, file, line, index) == std::tie(o.function, o.file, o.line, o.index);
}

std::string rfc3339(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto ms = duration_cast<milliseconds>(t.time_since_epoch()).count();
  const time_t secs = static_cast<time_t>(ms / 1000);
  struct tm utc;
  gmtime_r(&secs, &utc);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

namespace {

bool is_point_event(EventKind k) {
  return k == EventKind::kUnchanged || k == EventKind::kStuck || k == EventKind::kRecovered;
}

// The key a duration goes by: what it bounds differs per event.
const char* duration_key(EventKind k) {
  switch (k) {
    case EventKind::kStuck:
      return "stuck_for_s";
    case EventKind::kUnchanged:
      return "unchanged_for_s";
    default:
      return "lasted_s";
  }
}

nlohmann::ordered_json point_json(const PointKey& p) {
  nlohmann::ordered_json j;
  j["function"] = p.function;
  j["file"] = p.file.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(p.file);
  j["line"] = p.line > 0 ? nlohmann::ordered_json(p.line) : nlohmann::ordered_json();
  if (p.line <= 0) j["index"] = p.index;
  return j;
}

bool is_diagnosis_event(EventKind k) {
  return k == EventKind::kOrphaned || k == EventKind::kAwaitCycle ||
         k == EventKind::kThreadDeadlock || k == EventKind::kLockOwnerGone ||
         k == EventKind::kFailed;
}

nlohmann::ordered_json frames_json(const std::vector<StackFrame>& frames) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const StackFrame& f : frames) {
    out.push_back(point_json(PointKey{f.function, f.file, f.line, -1}));
    out.back().erase("index");
  }
  return out;
}

void diagnosis_json(const Event& e, nlohmann::ordered_json& j) {
  j["count"] = e.count;
  j["update"] = e.previous_count > 0;
  if (e.previous_count > 0) j["previous_count"] = e.previous_count;
  switch (e.kind) {
    case EventKind::kOrphaned:
      j["frames"] = e.frames;
      j["stack"] = frames_json(e.stack);
      break;
    case EventKind::kAwaitCycle:
      j["members"] = frames_json(e.stack);
      break;
    case EventKind::kFailed: {
      nlohmann::ordered_json ex;
      ex["type"] = e.exception.type.empty() ? nlohmann::ordered_json()
                                            : nlohmann::ordered_json(e.exception.type);
      ex["what"] = e.exception.has_what ? nlohmann::ordered_json(e.exception.what)
                                        : nlohmann::ordered_json();
      j["exception"] = std::move(ex);
      j["in_window"] = e.in_window;
      j["window_s"] = e.window_s;
      nlohmann::ordered_json fns = nlohmann::ordered_json::array();
      for (const auto& [fn, n] : e.failed_in) fns.push_back({{"function", fn}, {"count", n}});
      j["functions"] = std::move(fns);
      break;
    }
    default: {
      j["threads"] = e.threads;
      nlohmann::ordered_json locks = nlohmann::ordered_json::array();
      for (const model::Diagnosis::Lock& l : e.locks) {
        locks.push_back({{"address", util::hex(l.address)},
                         {"type", l.type},
                         {"owner", l.owner},
                         {"owner_alive", l.owner_alive},
                         {"waiters", l.waiters}});
      }
      j["locks"] = std::move(locks);
    }
  }
  j["summary"] = e.summary;
}

// Seconds with millisecond resolution, rounded down: the value is a lower bound.
double floor_ms(double s) {
  return s > 0 ? static_cast<double>(static_cast<long long>(s * 1000)) / 1000 : 0;
}

}  // namespace

std::string format_json(const Event& e) {
  nlohmann::ordered_json j;
  j["time"] = rfc3339(e.time);
  j["event"] = to_string(e.kind);
  j["pid"] = e.pid;
  j["command"] = e.command;
  j["container"] =
      e.container.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(e.container);
  if (is_point_event(e.kind)) {
    j["suspend"] = point_json(e.suspend);
    j["count"] = e.count;
    if (e.kind != EventKind::kRecovered) {
      j["update"] = e.previous_count > 0;
      if (e.previous_count > 0) j["previous_count"] = e.previous_count;
    }
    j[duration_key(e.kind)] = floor_ms(e.for_s);
    j["evidence"] = e.evidence;
    if (!e.message.empty()) j["note"] = e.message;
    nlohmann::ordered_json stack = nlohmann::ordered_json::array();
    for (const StackFrame& f : e.stack) {
      stack.push_back(point_json(PointKey{f.function, f.file, f.line, -1}));
      stack.back().erase("index");
    }
    j["stack"] = std::move(stack);
  } else if (is_diagnosis_event(e.kind)) {
    diagnosis_json(e, j);
  } else if (e.kind == EventKind::kAttached) {
    j["coroutines"] = e.coroutines;
    j["functions"] = e.functions;
    j["objects"] = e.objects;
    j["objects_shared"] = e.objects_shared;
  } else {
    j["reason"] = e.reason;
    j["message"] = e.message;
  }
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

std::string format_text(const Event& e) {
  std::string s = rfc3339(e.time) + " " + to_string(e.kind) + " pid=" + std::to_string(e.pid) +
                  " (" + e.command + ")";
  if (!e.container.empty()) s += " container=" + e.container.substr(0, 12);
  if (is_point_event(e.kind)) {
    s += " " + std::to_string(e.count) + "x " + e.suspend.function;
    if (e.suspend.line > 0) {
      s += " at " + e.suspend.file + ":" + std::to_string(e.suspend.line);
    } else {
      s += " at suspend index " + std::to_string(e.suspend.index) + " (line unknown)";
    }
    if (e.kind == EventKind::kRecovered) {
      s += " moved on after >=" + util::format_lower_bound(e.for_s);
    } else {
      s += std::string(e.kind == EventKind::kStuck ? " stuck" : " unchanged") +
           " >=" + util::format_lower_bound(e.for_s);
      if (e.previous_count > 0) s += " (was " + std::to_string(e.previous_count) + ")";
    }
    s += " [" + e.evidence + "]";
  } else if (is_diagnosis_event(e.kind)) {
    s += " " + e.summary;
    if (e.kind == EventKind::kFailed) {
      s += " (" + std::to_string(e.in_window) + " in the last " +
           util::format_duration(e.window_s) + ")";
    }
  } else if (e.kind == EventKind::kAttached) {
    s += " " + std::to_string(e.coroutines) + " coroutines of " + std::to_string(e.functions) +
         " functions; " + std::to_string(e.objects_shared) + " of " + std::to_string(e.objects) +
         " objects' catalogs shared";
  } else {
    s += " " + e.reason + ": " + e.message;
  }
  return s;
}

}  // namespace asyncprobe::watch
