#include "userspace/util/format.h"

#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <iterator>

namespace asyncprobe::util {

std::string hex(uint64_t value) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%" PRIx64, value);
  return buf;
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0.0) return "?";
  static const struct {
    double scale;
    const char* unit;
  } kUnits[] = {{1.0, "s"}, {1e-3, "ms"}, {1e-6, "us"}};
  for (const auto& u : kUnits) {
    double v = seconds / u.scale;
    if (v < 1.0) continue;
    // Three significant figures: the decimals shrink as the integer part grows. Rounding can
    // carry 999.5 ms to "1000 ms", which still reads right.
    int decimals = v >= 100.0 ? 0 : v >= 10.0 ? 1 : 2;
    char buf[48];
    std::snprintf(buf, sizeof buf, "%.*f %s", decimals, v, u.unit);
    return buf;
  }
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.0f ns", seconds * 1e9);
  return buf;
}

std::string format_duration_ns(uint64_t ns) {
  return format_duration(static_cast<double>(ns) / 1e9);
}

std::string format_lower_bound(double seconds) {
  char buf[48];
  if (!std::isfinite(seconds) || seconds < 0.0) return "?";
  // Rounding up would claim more than was observed; the tiny epsilon keeps 0.3 from printing as
  // 0.2 through binary representation error.
  if (seconds < 1.0) {
    std::snprintf(buf, sizeof buf, "%.0fms", std::floor(seconds * 1e3 + 1e-9));
  } else if (seconds < 1e12) {
    std::snprintf(buf, sizeof buf, "%.1fs", std::floor(seconds * 10.0 + 1e-9) / 10.0);
  } else {
    std::snprintf(buf, sizeof buf, "%.3gs", seconds);
  }
  return buf;
}

std::string format_bytes(uint64_t bytes) {
  static const char* const kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double v = static_cast<double>(bytes) / 1024.0;
  size_t u = 0;
  while (v >= 1024.0 && u + 1 < std::size(kUnits)) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[u]);
  return buf;
}

}  // namespace asyncprobe::util
