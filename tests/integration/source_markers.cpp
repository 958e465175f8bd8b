#include "tests/integration/source_markers.h"

#include <fstream>
#include <stdexcept>
#include <vector>

#include "tests/integration/fixture_process.h"

namespace asyncprobe::testing {
namespace {

// `// @await name` marks a co_await or co_yield line; `// @site name` marks any other line a test
// needs to name (a faulting statement, a blocking call). Names are unique across both kinds.
constexpr const char kAwaitMarker[] = "// @await ";
constexpr const char kSiteMarker[] = "// @site ";

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '.';
}

struct Marker {
  std::string name;
  int line;
};

std::vector<Marker> read_markers(const std::string& source_path, const char* kMarker,
                                 size_t marker_size) {
  const std::string path = source_file(source_path);
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::vector<Marker> markers;
  int line_number = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_number;
    const std::size_t at = line.find(kMarker);
    if (at == std::string::npos) continue;
    std::size_t begin = at + marker_size - 1;
    std::size_t end = begin;
    while (end < line.size() && is_name_char(line[end])) ++end;
    if (end == begin) continue;
    markers.push_back({line.substr(begin, end - begin), line_number});
  }
  return markers;
}

}  // namespace

std::string source_file(const std::string& relative_path) {
  if (!relative_path.empty() && relative_path[0] == '/') return relative_path;
  return source_dir() + "/" + relative_path;
}

std::map<std::string, int> source_markers(const std::string& source_path) {
  std::map<std::string, int> by_name;
  for (const Marker& m : read_markers(source_path, kAwaitMarker, sizeof kAwaitMarker)) {
    auto [it, inserted] = by_name.emplace(m.name, m.line);
    if (!inserted) {
      throw std::runtime_error(source_path + ": marker " + m.name + " on lines " +
                               std::to_string(it->second) + " and " + std::to_string(m.line));
    }
  }
  return by_name;
}

int marker_line(const std::string& source_path, const std::string& name) {
  std::map<std::string, int> markers = source_markers(source_path);
  for (const Marker& m : read_markers(source_path, kSiteMarker, sizeof kSiteMarker)) {
    auto [it, inserted] = markers.emplace(m.name, m.line);
    if (!inserted) {
      throw std::runtime_error(source_path + ": marker " + m.name + " on lines " +
                               std::to_string(it->second) + " and " + std::to_string(m.line));
    }
  }
  auto it = markers.find(name);
  if (it == markers.end()) throw std::runtime_error(source_path + ": no marker " + name);
  return it->second;
}

std::string marker_location(const std::string& source_path, const std::string& name) {
  return source_file(source_path) + ":" + std::to_string(marker_line(source_path, name));
}

}  // namespace asyncprobe::testing
