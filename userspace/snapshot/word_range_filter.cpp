#include "userspace/snapshot/word_range_filter.h"

#include <immintrin.h>

#include <limits>

namespace asyncprobe::snapshot {

void find_words_in_range_scalar(const uint64_t* words, size_t n, uint64_t lo, uint64_t span,
                                std::vector<size_t>* hits) {
  for (size_t i = 0; i < n; ++i) {
    if (words[i] - lo <= span) hits->push_back(i);
  }
}

namespace {

// All-ones lanes where the word is OUTSIDE the range: (w - lo) ^ 2^63 > span ^ 2^63.
__attribute__((target("avx2"))) inline __m256i outside_range(const uint64_t* at, __m256i vlo,
                                                             __m256i flip, __m256i vspan) {
  __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(at));
  return _mm256_cmpgt_epi64(_mm256_xor_si256(_mm256_sub_epi64(w, vlo), flip), vspan);
}

// 32 words (256 bytes) per step: eight 4-word compares folded into one branch. AVX2 has only a
// signed 64-bit compare, so both sides are shifted by 2^63 to compare unsigned.
__attribute__((target("avx2"))) void find_words_in_range_avx2(const uint64_t* words, size_t n,
                                                              uint64_t lo, uint64_t span,
                                                              std::vector<size_t>* hits) {
  const __m256i vlo = _mm256_set1_epi64x(static_cast<long long>(lo));
  const __m256i flip = _mm256_set1_epi64x(std::numeric_limits<long long>::min());
  const __m256i vspan = _mm256_xor_si256(_mm256_set1_epi64x(static_cast<long long>(span)), flip);
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i all = outside_range(words + i, vlo, flip, vspan);
    for (size_t k = 4; k < 32; k += 4) {
      all = _mm256_and_si256(all, outside_range(words + i + k, vlo, flip, vspan));
    }
    if (_mm256_movemask_epi8(all) == -1) continue;
    for (size_t j = i; j < i + 32; ++j) {
      if (words[j] - lo <= span) hits->push_back(j);
    }
  }
  for (; i < n; ++i) {
    if (words[i] - lo <= span) hits->push_back(i);
  }
}

}  // namespace

void find_words_in_range(const uint64_t* words, size_t n, uint64_t lo, uint64_t span,
                         std::vector<size_t>* hits) {
  static const bool has_avx2 = __builtin_cpu_supports("avx2");
  if (has_avx2) {
    find_words_in_range_avx2(words, n, lo, span, hits);
  } else {
    find_words_in_range_scalar(words, n, lo, span, hits);
  }
}

}  // namespace asyncprobe::snapshot
