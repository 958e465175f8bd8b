// Await markers in fixture sources: every co_await/co_yield line of a fixture carries a comment
// "// @await <name>", so tests compute expected suspend lines from the source instead of
// hard-coding numbers.
#pragma once

#include <map>
#include <string>

namespace asyncprobe::testing {

// The 1-based line of "// @await <name>" (or "// @site <name>") in source_path. A relative path is
// taken from the source tree root (e.g. "tests/fixtures/chain.cpp"). Throws std::runtime_error when
// the file cannot be read or the marker is absent or appears more than once.
int marker_line(const std::string& source_path, const std::string& name);

// Every marker of a file, name -> line. Throws std::runtime_error on a duplicated name.
std::map<std::string, int> source_markers(const std::string& source_path);

// "<absolute source path>:<line>" for a marker, the form a report prints a suspend point in.
std::string marker_location(const std::string& source_path, const std::string& name);

// The absolute path of a source file given relative to the source tree root.
std::string source_file(const std::string& relative_path);

}  // namespace asyncprobe::testing
