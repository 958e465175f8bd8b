// Kernel function names for kernel stack addresses (`profile --kernel`), from /proc/kallsyms.
// Without the privilege to see addresses (kptr_restrict) every address reads as 0: lookups then
// fail and frames are shown by address.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace asyncprobe::process {

class KernelSymbols {
 public:
  // Reads the text symbols of `path` (default /proc/kallsyms). False when none is usable.
  bool load(const std::string& path = "/proc/kallsyms");
  // The function containing `addr` ("name" or "name [module]"), empty when unknown.
  std::string name_at(uint64_t addr) const;
  size_t size() const { return symbols_.size(); }

 private:
  struct Symbol {
    uint64_t addr;
    std::string name;
  };
  std::vector<Symbol> symbols_;  // sorted by address
};

}  // namespace asyncprobe::process
