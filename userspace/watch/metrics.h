// The watcher's Prometheus metrics: families of samples rendered in the text exposition format
// 0.0.4 (what `promtool check metrics` lints), a cumulative histogram, and the page the HTTP
// thread serves (rebuilt by the watcher after each tick, read under a lock).
// Names follow Prometheus' rules: the asyncprobe_ prefix, base units as suffixes, counters end
// in _total.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace asyncprobe::watch {

using Labels = std::vector<std::pair<std::string, std::string>>;

struct Sample {
  std::string suffix;  // "_bucket", "_sum", "_count" for histograms; empty otherwise
  Labels labels;
  double value = 0.0;
};

struct Family {
  std::string name;
  std::string help;
  std::string type;  // gauge | counter | histogram
  std::vector<Sample> samples;
};

// The exposition text: HELP and TYPE per family, label values escaped (\\, \", \n).
std::string render_exposition(const std::vector<Family>& families);

// Cumulative buckets with fixed upper bounds (seconds), plus +Inf, sum and count.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // Appends this histogram's samples (with `labels` and "le") to `family`.
  void append_to(Family& family, const Labels& labels) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bound, not cumulative; last = above every bound
  double sum_ = 0.0;
  uint64_t count_ = 0;
};

// The page served on /metrics. The watcher replaces it whole; the server copies it out.
class MetricsPage {
 public:
  void set(std::string text);
  std::string get() const;

 private:
  mutable std::mutex mutex_;
  std::string text_;
};

}  // namespace asyncprobe::watch
