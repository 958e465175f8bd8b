#include "symbolizer/demangle.h"

#include <cxxabi.h>

#include <cstdlib>
#include <memory>

namespace asyncprobe::symbolizer {

std::string demangle(const std::string& mangled) {
  if (mangled.size() < 2 || mangled[0] != '_' || mangled[1] != 'Z' || mangled.size() > 8192) {
    return mangled;
  }
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(
      abi::__cxa_demangle(mangled.c_str(), nullptr, nullptr, &status), std::free);
  if (status != 0 || out == nullptr) return mangled;
  return out.get();
}

std::string demangle_type(const std::string& mangled) {
  if (mangled.empty() || mangled.size() > 8192) return mangled;
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(
      abi::__cxa_demangle(mangled.c_str(), nullptr, nullptr, &status), std::free);
  if (status != 0 || out == nullptr) return mangled;
  return out.get();
}

}  // namespace asyncprobe::symbolizer
