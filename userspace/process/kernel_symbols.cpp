#include "userspace/process/kernel_symbols.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace asyncprobe::process {

bool KernelSymbols::load(const std::string& path) {
  symbols_.clear();
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string addr, type, name, module;
    if (!(fields >> addr >> type >> name)) continue;
    if (type != "t" && type != "T" && type != "w" && type != "W") continue;
    const uint64_t a = std::strtoull(addr.c_str(), nullptr, 16);
    if (a == 0) continue;  // hidden by kptr_restrict
    if (fields >> module) name += " " + module;
    symbols_.push_back(Symbol{a, std::move(name)});
  }
  std::sort(symbols_.begin(), symbols_.end(),
            [](const Symbol& a, const Symbol& b) { return a.addr < b.addr; });
  return !symbols_.empty();
}

std::string KernelSymbols::name_at(uint64_t addr) const {
  auto it = std::upper_bound(symbols_.begin(), symbols_.end(), addr,
                             [](uint64_t v, const Symbol& s) { return v < s.addr; });
  if (it == symbols_.begin()) return {};
  return std::prev(it)->name;
}

}  // namespace asyncprobe::process
