// The scanner's word filter: the vector version finds exactly the words the one-at-a-time
// reference finds, at every position of a block, at the range's edges and around wrap-around.
#include "userspace/snapshot/word_range_filter.h"

#include <gtest/gtest.h>

#include <random>

namespace asyncprobe {
namespace {

std::vector<size_t> vector_hits(const std::vector<uint64_t>& w, uint64_t lo, uint64_t span) {
  std::vector<size_t> hits;
  snapshot::find_words_in_range(w.data(), w.size(), lo, span, &hits);
  return hits;
}

std::vector<size_t> scalar_hits(const std::vector<uint64_t>& w, uint64_t lo, uint64_t span) {
  std::vector<size_t> hits;
  snapshot::find_words_in_range_scalar(w.data(), w.size(), lo, span, &hits);
  return hits;
}

TEST(WordRangeFilter, FindsEachEdgeValueAtEveryPositionOfABlock) {
  const uint64_t lo = 0x55550000'1000;
  const uint64_t span = 0x2000;
  for (size_t n : {1u, 7u, 31u, 32u, 33u, 64u, 97u}) {
    for (size_t pos = 0; pos < n; ++pos) {
      for (uint64_t v : {lo, lo + span, lo + 1, lo + span / 2}) {
        std::vector<uint64_t> w(n, 0);
        w[pos] = v;
        EXPECT_EQ(vector_hits(w, lo, span), std::vector<size_t>{pos}) << n << " " << pos;
      }
      for (uint64_t v :
           {lo - 1, lo + span + 1, uint64_t{0}, ~uint64_t{0}, lo ^ (uint64_t{1} << 63)}) {
        std::vector<uint64_t> w(n, 0);
        w[pos] = v;
        EXPECT_TRUE(vector_hits(w, lo, span).empty()) << n << " " << pos << " " << v;
      }
    }
  }
}

TEST(WordRangeFilter, AgreesWithTheReferenceOnRandomWordsNearTheRange) {
  std::mt19937_64 rng(7);
  for (uint64_t lo :
       {uint64_t{0}, uint64_t{0x7fff'ffff'f000}, ~uint64_t{0} - 0x100, uint64_t{1} << 63}) {
    const uint64_t span = 0x100;
    std::vector<uint64_t> w(10'000);
    // A third of the words land in or right around the range (including wrap-around below 0).
    for (auto& x : w) x = rng() % 3 == 0 ? lo + (rng() % 0x300) - 0x100 : rng();
    EXPECT_EQ(vector_hits(w, lo, span), scalar_hits(w, lo, span)) << lo;
    EXPECT_FALSE(scalar_hits(w, lo, span).empty());
  }
}

TEST(WordRangeFilter, AppendsAfterWhatTheCallerAlreadyHas) {
  std::vector<uint64_t> w(40, 5);
  std::vector<size_t> hits{1000};
  snapshot::find_words_in_range(w.data(), w.size(), 5, 0, &hits);
  ASSERT_EQ(hits.size(), 41u);
  EXPECT_EQ(hits[0], 1000u);
  EXPECT_EQ(hits[1], 0u);
  EXPECT_EQ(hits[40], 39u);
}

}  // namespace
}  // namespace asyncprobe
