// C++ demangling through the ABI runtime; returns the input unchanged when it is not a mangled
// name.
#pragma once

#include <string>

namespace asyncprobe::symbolizer {

std::string demangle(const std::string& mangled);

}  // namespace asyncprobe::symbolizer
