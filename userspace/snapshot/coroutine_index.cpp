#include "userspace/snapshot/coroutine_index.h"

#include <algorithm>

namespace asyncprobe::snapshot {

void CoroutineIndex::add(LoadedCatalog loaded) {
  loaded_.push_back(std::make_unique<LoadedCatalog>(std::move(loaded)));
  const LoadedCatalog* lc = loaded_.back().get();
  for (const auto& fn : lc->catalog->functions()) {
    destroy_[fn.destroy + lc->bias] = CoroutineRef{lc, &fn, false};
    if (fn.cleanup != 0) destroy_[fn.cleanup + lc->bias] = CoroutineRef{lc, &fn, true};
    for (uint64_t a : {fn.destroy, fn.cleanup}) {
      if (a == 0) continue;
      lo_ = std::min(lo_, a + lc->bias);
      hi_ = std::max(hi_, a + lc->bias);
    }
  }
}

CoroutineRef CoroutineIndex::match_header(uint64_t resume_word, uint64_t destroy_word) const {
  auto it = destroy_.find(destroy_word);
  if (it == destroy_.end()) return {};
  const CoroutineRef& ref = it->second;
  // A live frame names its own resume function; a finished one holds NULL there.
  if (resume_word != 0 && resume_word != ref.fn->resume + ref.loaded->bias) return {};
  return ref;
}

}  // namespace asyncprobe::snapshot
