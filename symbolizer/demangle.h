// C++ demangling through the ABI runtime; returns the input unchanged when it is not a mangled
// name.
#pragma once

#include <string>

namespace asyncprobe::sym {

std::string demangle(const std::string& mangled);

}  // namespace asyncprobe::sym
