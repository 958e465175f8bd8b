#include "userspace/model/preload_reports.h"

#include <algorithm>
#include <tuple>

namespace asyncprobe::model {

void sort_trace_report(PreloadTraceReport* r) {
  std::sort(r->functions.begin(), r->functions.end(), [](const auto& a, const auto& b) {
    return std::tie(b.resumes, a.function, a.resume) < std::tie(a.resumes, b.function, b.resume);
  });
  std::sort(r->threads.begin(), r->threads.end());
}

}  // namespace asyncprobe::model
