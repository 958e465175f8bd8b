// The shared number formats: one rule per quantity, whatever report prints it.
#include <gtest/gtest.h>

#include "userspace/util/format.h"

namespace asyncprobe::util {
namespace {

TEST(Format, Hex) {
  EXPECT_EQ(hex(0), "0x0");
  EXPECT_EQ(hex(0x7f12ab340010), "0x7f12ab340010");
  EXPECT_EQ(hex(~0ull), "0xffffffffffffffff");
}

TEST(Format, Bytes) {
  EXPECT_EQ(format_bytes(0), "0 B");
  EXPECT_EQ(format_bytes(1023), "1023 B");
  EXPECT_EQ(format_bytes(1536), "1.5 KiB");
  EXPECT_EQ(format_bytes(12897484), "12.3 MiB");
  EXPECT_EQ(format_bytes(3ull << 30), "3.0 GiB");
  EXPECT_EQ(format_bytes(~0ull), "16.0 EiB");
}

TEST(Format, DurationsKeepThreeSignificantFigures) {
  EXPECT_EQ(format_duration(0.0041), "4.10 ms");
  EXPECT_EQ(format_duration(0.00085), "850 us");
  EXPECT_EQ(format_duration(2.5), "2.50 s");
  EXPECT_EQ(format_duration(12.34), "12.3 s");
  EXPECT_EQ(format_duration(123.4), "123 s");
  EXPECT_EQ(format_duration(0.0000042), "4.20 us");
  EXPECT_EQ(format_duration(0), "0 ns");
  EXPECT_EQ(format_duration(-1), "?");
  EXPECT_EQ(format_duration_ns(850), "850 ns");
  EXPECT_EQ(format_duration_ns(850'000), "850 us");
  EXPECT_EQ(format_duration_ns(12'340'000), "12.3 ms");
  EXPECT_EQ(format_duration_ns(2'500'000'000), "2.50 s");
}

TEST(Format, LowerBoundsAreNeverRoundedUp) {
  EXPECT_EQ(format_lower_bound(1.0), "1.0s");
  EXPECT_EQ(format_lower_bound(1.99), "1.9s");
  EXPECT_EQ(format_lower_bound(0.3), "300ms");
  EXPECT_EQ(format_lower_bound(0.0509), "50ms");
  EXPECT_EQ(format_lower_bound(3600), "3600.0s");
}

}  // namespace
}  // namespace asyncprobe::util
