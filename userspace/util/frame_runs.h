// Folding of repeated frames where stacks are printed: a deep recursion is one line with a count
// ("handle x4996") instead of thousands of identical lines. One rule for every printer (the text
// report's native stacks, the in-target crash and terminate reports); header-only, without
// allocation and async-signal-safe, so that the in-target library can use it too.
#pragma once

#include <cstddef>

namespace asyncprobe::util {

// Runs shorter than this print every frame: two equal frames in a row are no recursion worth
// hiding.
inline constexpr size_t kMinFoldedRun = 3;

// How many frames starting at `i` (of `n`) print as one line: the length of the run of frames
// equal to frame i (`same(i, j)`), when at least kMinFoldedRun long; 1 otherwise. A printer
// writes frame i once, followed by " x<count>" when the count is above 1, and goes on at
// i + count.
template <typename Same>
size_t folded_run(size_t i, size_t n, Same&& same) {
  size_t end = i + 1;
  while (end < n && same(i, end)) ++end;
  return end - i >= kMinFoldedRun ? end - i : 1;
}

}  // namespace asyncprobe::util
