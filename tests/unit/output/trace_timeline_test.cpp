// The Chrome trace writer's string quoting: target-supplied names must come out as valid JSON.
#include <gtest/gtest.h>

#include <string>

#include "userspace/output/trace_timeline.h"

namespace asyncprobe::output {
namespace {

TEST(TraceTimelineStrings, JsonQuoteEscapesAndRepairs) {
  EXPECT_EQ(output::json_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(output::json_quote(std::string("x\n\x01", 3)), "\"x\\u000a\\u0001\"");
  EXPECT_EQ(output::json_quote("operator\"\" _k"), "\"operator\\\"\\\" _k\"");
  EXPECT_EQ(output::json_quote("\xc3\xa9"), "\"\xc3\xa9\"");  // valid UTF-8 kept
  EXPECT_EQ(output::json_quote("\xff"), "\"\xef\xbf\xbd\"");  // invalid byte replaced
  EXPECT_EQ(output::json_quote("\xe2\x82"), "\"\xef\xbf\xbd\xef\xbf\xbd\"");  // truncated sequence
}

}  // namespace
}  // namespace asyncprobe::output
