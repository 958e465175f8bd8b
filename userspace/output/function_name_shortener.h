// Demangled C++ names of library coroutines run to hundreds of characters (Boost.Asio's
// initiation functions: return type, every template argument, every parameter type). The text
// report shortens the long ones the way a reader skims them: return type dropped, then template
// argument lists, then the parameter list folded to "<...>" and "(...)". The JSON and CSV keep full
// names. A name the shortener cannot parse (unbalanced brackets, odd operators) stays as it is.
#pragma once

#include <cstddef>
#include <string>

namespace asyncprobe::output {

// `name` unchanged when it is at most `max_len` characters; otherwise the first of these that
// fits: without the return type; with every template argument list folded; with the parameter
// list folded too (the last one is returned even when it is still longer).
std::string shorten_function_name(const std::string& name, size_t max_len);

}  // namespace asyncprobe::output
