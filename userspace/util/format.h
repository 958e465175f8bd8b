// The one home of the number formats every report shares: addresses in hex, durations with three
// significant figures, lower bounds rounded down.
#pragma once

#include <cstdint>
#include <string>

namespace asyncprobe::util {

// "0x7f12ab340010".
std::string hex(uint64_t value);

// Three significant figures in the largest unit that keeps the value >= 1: "850 ns", "4.20 us",
// "12.3 ms", "2.50 s", "123 s". "?" for a negative or non-finite value.
std::string format_duration(double seconds);
std::string format_duration_ns(uint64_t ns);

// A lower bound, rounded down so it stays one, in the compact form of "stuck >=1.0s": "50ms",
// "1.0s", "12.3s".
std::string format_lower_bound(double seconds);

// "12.3 MiB", "512 B": binary units, one decimal.
std::string format_bytes(uint64_t bytes);

}  // namespace asyncprobe::util
