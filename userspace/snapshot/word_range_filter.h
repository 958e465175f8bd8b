// The scanner's inner loop: which words of a buffer hold a value in a narrow range (a coroutine
// destroy-function address). Almost no word does, so the test runs on many words at once (AVX2
// when the CPU has it, chosen at run time) and only the rare hits are looked at one by one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace asyncprobe::snapshot {

// Appends to `hits` the index of every word w of words[0, n) with w - lo <= span (unsigned
// arithmetic: the closed range [lo, lo + span]), in increasing order.
void find_words_in_range(const uint64_t* words, size_t n, uint64_t lo, uint64_t span,
                         std::vector<size_t>* hits);

// The same, one word at a time, whatever the CPU: the reference the vector version is tested
// against, and the fallback.
void find_words_in_range_scalar(const uint64_t* words, size_t n, uint64_t lo, uint64_t span,
                                std::vector<size_t>* hits);

}  // namespace asyncprobe::snapshot
