// CPU time of the calling thread (user + kernel). Costs asyncprobe reports about itself are
// measured with it: on a shared machine, wall time would also count waiting for a CPU.
#pragma once

#include <time.h>

namespace asyncprobe::util {

inline double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

}  // namespace asyncprobe::util
