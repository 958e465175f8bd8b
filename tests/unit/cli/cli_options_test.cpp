// The option walker the subcommands share, and the small value parsers.
#include "userspace/cli/cli_options.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace asyncprobe {
namespace {

// Every (option, value) the cursor yields; value "" for flags, "!" + error when one was missing.
std::vector<std::pair<std::string, std::string>> walk(std::vector<std::string> args,
                                                      const std::vector<std::string>& with_value) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  cli::OptionCursor opt(static_cast<int>(argv.size()), argv.data());
  std::vector<std::pair<std::string, std::string>> out;
  while (opt.next()) {
    std::string v;
    std::string error;
    bool wants = std::find(with_value.begin(), with_value.end(), opt.name()) != with_value.end();
    if (wants && !opt.value(&v, &error)) v = "!" + error;
    out.emplace_back(opt.name(), v);
  }
  return out;
}

TEST(OptionCursor, SplitsInlineValuesAndTakesTheNextArgumentOtherwise) {
  auto got = walk({"profile", "-p", "42", "--format=svg", "--await", "-d", "2s", "--x=a=b"},
                  {"-p", "--format", "-d", "--x"});
  std::vector<std::pair<std::string, std::string>> want = {
      {"-p", "42"}, {"--format", "svg"}, {"--await", ""}, {"-d", "2s"}, {"--x", "a=b"}};
  EXPECT_EQ(got, want);
}

TEST(OptionCursor, AMissingValueIsAnErrorNamingTheOption) {
  auto got = walk({"trace", "--json", "-p"}, {"-p"});
  std::vector<std::pair<std::string, std::string>> want = {{"--json", ""},
                                                           {"-p", "!option -p needs a value"}};
  EXPECT_EQ(got, want);
  // A single dash with '=' is not split: "-p=3" is an option of its own name.
  EXPECT_EQ(walk({"x", "-p=3"}, {}),
            (std::vector<std::pair<std::string, std::string>>{{"-p=3", ""}}));
}

TEST(ParseRingbufMb, AcceptsOneToOneThousandTwentyFour) {
  uint32_t mb = 0;
  std::string error;
  EXPECT_TRUE(cli::parse_ringbuf_mb("1", &mb, &error));
  EXPECT_EQ(mb, 1u);
  EXPECT_TRUE(cli::parse_ringbuf_mb("1024", &mb, &error));
  EXPECT_EQ(mb, 1024u);
  for (const char* bad : {"0", "1025", "-1", "", "8k", "99999999999"}) {
    EXPECT_FALSE(cli::parse_ringbuf_mb(bad, &mb, &error)) << bad;
    EXPECT_EQ(error, std::string("invalid --ringbuf-mb '") + bad + "': 1..1024");
  }
}

TEST(ParsePid, DigitsOnlyWithinTheKernelsRange) {
  int pid = 0;
  EXPECT_TRUE(cli::parse_pid("1", &pid));
  EXPECT_EQ(pid, 1);
  EXPECT_TRUE(cli::parse_pid("1073741823", &pid));
  EXPECT_EQ(pid, 0x3fffffff);
  for (const char* bad : {"0", "", "-5", "12a", "1073741824", "99999999999", " 7"}) {
    EXPECT_FALSE(cli::parse_pid(bad, &pid)) << bad;
  }
}

}  // namespace
}  // namespace asyncprobe
