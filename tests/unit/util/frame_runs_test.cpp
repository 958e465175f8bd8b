#include "userspace/util/frame_runs.h"

#include <gtest/gtest.h>

#include <vector>

namespace asyncprobe {
namespace {

// The printed lines of a stack under the rule: (frame, count) pairs.
std::vector<std::pair<int, size_t>> lines(const std::vector<int>& stack) {
  std::vector<std::pair<int, size_t>> out;
  for (size_t i = 0; i < stack.size();) {
    const size_t run =
        util::folded_run(i, stack.size(), [&](size_t a, size_t b) { return stack[a] == stack[b]; });
    out.emplace_back(stack[i], run);
    i += run;
  }
  return out;
}

TEST(FrameRuns, DeepRecursionIsOneLineWithItsCount) {
  // crash_here <- handle x4996 <- serve <- main: a 5,000-deep recursion.
  std::vector<int> stack{1};
  stack.insert(stack.end(), 4996, 2);
  stack.push_back(3);
  stack.push_back(4);
  using L = std::vector<std::pair<int, size_t>>;
  EXPECT_EQ(lines(stack), (L{{1, 1}, {2, 4996}, {3, 1}, {4, 1}}));
}

TEST(FrameRuns, ShortRepeatsPrintEveryFrame) {
  using L = std::vector<std::pair<int, size_t>>;
  EXPECT_EQ(lines({5, 5, 6, 7, 7, 7}), (L{{5, 1}, {5, 1}, {6, 1}, {7, 3}}));
  EXPECT_EQ(lines({}), L{});
  EXPECT_EQ(lines({9}), (L{{9, 1}}));
}

}  // namespace
}  // namespace asyncprobe
