// The coroutine code mapped in one process: every module's catalog placed at its load bias, and
// lookups from absolute resume/destroy addresses (the words of a frame header) to coroutines.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "symbolizer/coro_catalog.h"

namespace asyncprobe::snapshot {

struct LoadedCatalog {
  std::shared_ptr<const symbolizer::CoroCatalog> catalog;
  uint64_t bias = 0;        // absolute = object vaddr + bias
  std::string target_path;  // as the target names the object
};

struct CoroutineRef {
  const LoadedCatalog* loaded = nullptr;
  const symbolizer::CoroFunction* fn = nullptr;
  bool via_cleanup = false;  // destroy slot held Clang's .cleanup (an elided frame)
};

class CoroutineIndex {
 public:
  void add(LoadedCatalog loaded);
  bool empty() const { return destroy_.empty(); }
  size_t function_count() const { return destroy_.size(); }  // coroutines whose frames it knows
  // Header words -> coroutine; nullptr-valued ref when the pair is not a frame header.
  CoroutineRef match_header(uint64_t resume_word, uint64_t destroy_word) const;
  // Quick reject for the scanner: is this word possibly a destroy/cleanup address?
  bool maybe_destroy(uint64_t word) const { return word - lo_ <= hi_ - lo_; }
  // The range every destroy/cleanup address lies in, for block-wise rejection in the scanner.
  uint64_t destroy_lo() const { return lo_; }
  uint64_t destroy_span() const { return hi_ - lo_; }
  const std::vector<std::unique_ptr<LoadedCatalog>>& catalogs() const { return loaded_; }

 private:
  std::vector<std::unique_ptr<LoadedCatalog>> loaded_;
  std::unordered_map<uint64_t, CoroutineRef> destroy_;
  uint64_t lo_ = UINT64_MAX;
  uint64_t hi_ = 0;
};

}  // namespace asyncprobe::snapshot
