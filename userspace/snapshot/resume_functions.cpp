#include "userspace/snapshot/resume_functions.h"

#include <algorithm>

#include "userspace/util/format.h"

namespace asyncprobe::snapshot {

ResumeFunctionTable::ResumeFunctionTable(const CoroutineIndex& index) {
  for (const auto& loaded : index.catalogs()) {
    if (loaded == nullptr || loaded->catalog == nullptr) continue;
    for (const symbolizer::CoroFunction& fn : loaded->catalog->functions()) {
      if (fn.resume == 0) continue;
      ResumeFunction r;
      r.start = fn.resume + loaded->bias;
      // A size-less symbol still covers its first instruction.
      r.end = r.start + std::max<uint64_t>(fn.resume_size, 1);
      r.destroy = fn.destroy != 0 ? fn.destroy + loaded->bias : 0;
      r.cleanup = fn.cleanup != 0 ? fn.cleanup + loaded->bias : 0;
      r.loaded = loaded.get();
      r.fn = &fn;
      r.name = !fn.name.empty()           ? fn.name
               : !fn.ramp_linkage.empty() ? fn.ramp_linkage
                                          : util::hex(r.start);
      functions_.push_back(std::move(r));
    }
  }
  std::sort(functions_.begin(), functions_.end(),
            [](const ResumeFunction& a, const ResumeFunction& b) { return a.start < b.start; });
}

const ResumeFunction* ResumeFunctionTable::at(uint64_t pc) const {
  auto it = std::upper_bound(functions_.begin(), functions_.end(), pc,
                             [](uint64_t v, const ResumeFunction& r) { return v < r.start; });
  if (it == functions_.begin()) return nullptr;
  --it;
  return pc < it->end ? &*it : nullptr;
}

}  // namespace asyncprobe::snapshot
