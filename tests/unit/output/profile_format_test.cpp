#include "tests/unit/profile_builders.h"
#include "userspace/output/profile_export.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>

namespace asyncprobe {
namespace {

TEST(ProfileFormat, ParsesEveryFormatNameAndNothingElse) {
  const std::pair<const char*, output::ProfileFormat> names[] = {
      {"text", output::ProfileFormat::kText},   {"folded", output::ProfileFormat::kFolded},
      {"svg", output::ProfileFormat::kSvg},     {"speedscope", output::ProfileFormat::kSpeedscope},
      {"pprof", output::ProfileFormat::kPprof}, {"json", output::ProfileFormat::kJson},
  };
  for (const auto& [name, format] : names) {
    output::ProfileFormat f = output::ProfileFormat::kText;
    EXPECT_TRUE(output::parse_profile_format(name, &f)) << name;
    EXPECT_EQ(f, format) << name;
    EXPECT_STREQ(output::profile_format_name(format), name);
  }
  for (const char* bad : {"", "SVG", "flamegraph", "pb.gz", "text "}) {
    output::ProfileFormat f = output::ProfileFormat::kJson;
    EXPECT_FALSE(output::parse_profile_format(bad, &f)) << bad;
    EXPECT_EQ(f, output::ProfileFormat::kJson) << "untouched";
  }
}

TEST(ProfileFormat, ChoosesByOutputExtension) {
  const std::pair<const char*, output::ProfileFormat> paths[] = {
      {"out.folded", output::ProfileFormat::kFolded},
      {"/tmp/x.collapsed", output::ProfileFormat::kFolded},
      {"cpu.txt", output::ProfileFormat::kText},
      {"flame.svg", output::ProfileFormat::kSvg},
      {"FLAME.SVG", output::ProfileFormat::kSvg},
      {"p.speedscope.json", output::ProfileFormat::kSpeedscope},
      {"p.json", output::ProfileFormat::kJson},
      {"cpu.pb.gz", output::ProfileFormat::kPprof},
      {"cpu.pb", output::ProfileFormat::kPprof},
      {"cpu.pprof", output::ProfileFormat::kPprof},
  };
  for (const auto& [path, format] : paths) {
    EXPECT_EQ(output::profile_format_for_path(path, output::ProfileFormat::kText), format) << path;
  }
  for (const char* other : {"-", "out", "out.gz", ".svg", "svg", "x.html"}) {
    EXPECT_EQ(output::profile_format_for_path(other, output::ProfileFormat::kFolded),
              output::ProfileFormat::kFolded)
        << other;
  }
}

TEST(ProfileFormat, WritesEveryFormatAndRefusesBrokenProfiles) {
  const model::Profile p = testing::coroutine_cpu_profile();
  for (const output::ProfileFormat f :
       {output::ProfileFormat::kText, output::ProfileFormat::kFolded, output::ProfileFormat::kSvg,
        output::ProfileFormat::kSpeedscope, output::ProfileFormat::kPprof,
        output::ProfileFormat::kJson}) {
    std::ostringstream out;
    std::string error;
    EXPECT_TRUE(output::write_profile(out, p, f, &error))
        << output::profile_format_name(f) << ": " << error;
    EXPECT_FALSE(out.str().empty()) << output::profile_format_name(f);
    model::Profile broken = p;
    broken.samples[2].frames.push_back(10);
    std::ostringstream none;
    EXPECT_FALSE(output::write_profile(none, broken, f, &error));
    EXPECT_EQ(error, "profile sample 2 names frame 10 of 10");
    EXPECT_TRUE(none.str().empty()) << "nothing written for a broken profile";
  }
}

TEST(ProfileFormat, ReportsAFailedStream) {
  std::ostringstream out;
  out.setstate(std::ios::badbit);
  std::string error;
  EXPECT_FALSE(output::write_profile(out, testing::coroutine_cpu_profile(),
                                     output::ProfileFormat::kFolded, &error));
  EXPECT_EQ(error, "writing the profile failed");
}

}  // namespace
}  // namespace asyncprobe
