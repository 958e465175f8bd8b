// `go tool pprof` as the integration tests run it (the real consumer of asyncprobe's pprof
// export), and its `-traces` output parsed into one block per stack. Shared by the export tests
// and the real-code matrix.
#pragma once

#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/fixture_process.h"

namespace asyncprobe::testing {

inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// Runs of blanks become one space, leading and trailing blanks go: pprof aligns its columns.
inline std::string squeeze(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (c == ' ' || c == '\t') {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else {
      out += c;
    }
  }
  if (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// `go tool pprof VIEW... FILE`; go wants a writable HOME and build cache: `scratch` (a directory
// of the test's own) serves.
inline RunResult go_pprof(const std::string& scratch, const std::vector<std::string>& views,
                          const std::string& file) {
  std::vector<std::string> argv{"env",
                                "HOME=" + scratch + "/home",
                                "GOCACHE=" + scratch + "/gocache",
                                "GOFLAGS=",
                                "go",
                                "tool",
                                "pprof"};
  argv.insert(argv.end(), views.begin(), views.end());
  argv.push_back(file);
  return run_command(argv, std::chrono::seconds(180));
}

// `-traces` output as blocks (one per sample): label lines and frame lines, squeezed.
struct Trace {
  std::map<std::string, std::string> labels;
  std::string value;
  std::vector<std::string> frames;  // leaf first
};

inline std::vector<Trace> parse_traces(const std::string& text) {
  std::vector<Trace> out;
  std::optional<Trace> cur;
  for (const std::string& raw : lines_of(text)) {
    if (raw.rfind("-----------+", 0) == 0) {
      if (cur) out.push_back(*cur);
      cur = Trace{};
      continue;
    }
    if (!cur) continue;
    const std::string line = squeeze(raw);
    const size_t colon = line.find(": ");
    if (cur->frames.empty() && cur->value.empty() && colon != std::string::npos &&
        raw.find(":  ") != std::string::npos) {
      cur->labels[line.substr(0, colon)] = line.substr(colon + 2);
    } else if (cur->value.empty()) {
      const size_t space = line.find(' ');
      cur->value = line.substr(0, space);
      cur->frames.push_back(line.substr(space + 1));
    } else {
      cur->frames.push_back(line);
    }
  }
  return out;  // the output ends with a separator line: the last block is in
}

}  // namespace asyncprobe::testing
