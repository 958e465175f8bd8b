// Demangled C++ names of library coroutines run to hundreds of characters (Boost.Asio's
// initiation functions: return type, every template argument, every parameter type). The text
// report shortens the long ones the way a reader skims them: return type dropped, then template
// argument lists, then the parameter list folded to "<...>" and "(...)". The function's own
// template arguments are what tell two instantiations apart (Asio's read and write `initiate`),
// so they are kept, unqualified, as long as the result fits. The JSON and CSV keep full names. A
// name the shortener cannot parse (unbalanced brackets, odd operators) stays as it is. The
// symbolizer never shortens: this is the one place.
#pragma once

#include <cstddef>
#include <string>

namespace asyncprobe::output {

// `name` unchanged when it is at most `max_len` characters; otherwise the first of these that
// fits: without the return type; with every template argument list folded but the function's
// own, whose arguments keep their unqualified names; with every template argument list folded;
// the own arguments kept and the parameter list folded; only the first and last own arguments
// kept; only the first; everything folded (the last one is returned even when it is still
// longer).
std::string shorten_function_name(const std::string& name, size_t max_len);

}  // namespace asyncprobe::output
