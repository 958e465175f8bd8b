// C++ demangling through the ABI runtime; returns the input unchanged when it is not a mangled
// name.
#pragma once

#include <string>

namespace asyncprobe::symbolizer {

std::string demangle(const std::string& mangled);
// A mangled type name as std::type_info::name() gives it ("St13runtime_error", "i") demangled
// ("std::runtime_error", "int"); the input unchanged when it does not demangle.
std::string demangle_type(const std::string& mangled);

}  // namespace asyncprobe::symbolizer
