// The cost of one C++ throw caught three calls up, as the program sees it: run alone, then under
// `asyncprobe run`, whose __cxa_throw keeps registers and a copy of the stack top for
// std::terminate reports (tools/bench/preload_throw_bench compares the two; docs/BENCHMARKS.md).
// Prints "ns_per_throw=N" (median of the rounds) on one line.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace {

__attribute__((noinline)) void thrower(int i) {
  if (i >= 0) throw std::runtime_error("bench");
}
__attribute__((noinline)) void middle(int i) { thrower(i); }
__attribute__((noinline)) void outer(int i) { middle(i); }

}  // namespace

int main(int argc, char** argv) {
  int rounds = 21, throws = 20000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--rounds") == 0) rounds = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--throws") == 0) throws = std::atoi(argv[i + 1]);
  }
  std::vector<double> ns;
  long caught = 0;
  for (int r = 0; r < rounds; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < throws; ++i) {
      try {
        outer(i);
      } catch (const std::exception&) {
        ++caught;
      }
    }
    ns.push_back(
        std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() /
        throws);
  }
  std::sort(ns.begin(), ns.end());
  std::printf("ns_per_throw=%.1f caught=%ld\n", ns[ns.size() / 2], caught);
  return caught == static_cast<long>(rounds) * throws ? 0 : 1;
}
