#include "tests/unit/profile_builders.h"
#include "userspace/output/profile_export.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>

namespace asyncprobe {
namespace {

TEST(ProfileFormat, ParsesEveryFormatNameAndNothingElse) {
  const std::pair<const char*, ProfileFormat> names[] = {
      {"text", ProfileFormat::kText},   {"folded", ProfileFormat::kFolded},
      {"svg", ProfileFormat::kSvg},     {"speedscope", ProfileFormat::kSpeedscope},
      {"pprof", ProfileFormat::kPprof}, {"json", ProfileFormat::kJson},
  };
  for (const auto& [name, format] : names) {
    ProfileFormat f = ProfileFormat::kText;
    EXPECT_TRUE(parse_profile_format(name, &f)) << name;
    EXPECT_EQ(f, format) << name;
    EXPECT_STREQ(profile_format_name(format), name);
  }
  for (const char* bad : {"", "SVG", "flamegraph", "pb.gz", "text "}) {
    ProfileFormat f = ProfileFormat::kJson;
    EXPECT_FALSE(parse_profile_format(bad, &f)) << bad;
    EXPECT_EQ(f, ProfileFormat::kJson) << "untouched";
  }
}

TEST(ProfileFormat, ChoosesByOutputExtension) {
  const std::pair<const char*, ProfileFormat> paths[] = {
      {"out.folded", ProfileFormat::kFolded}, {"/tmp/x.collapsed", ProfileFormat::kFolded},
      {"cpu.txt", ProfileFormat::kText},      {"flame.svg", ProfileFormat::kSvg},
      {"FLAME.SVG", ProfileFormat::kSvg},     {"p.speedscope.json", ProfileFormat::kSpeedscope},
      {"p.json", ProfileFormat::kJson},       {"cpu.pb.gz", ProfileFormat::kPprof},
      {"cpu.pb", ProfileFormat::kPprof},      {"cpu.pprof", ProfileFormat::kPprof},
  };
  for (const auto& [path, format] : paths) {
    EXPECT_EQ(profile_format_for_path(path, ProfileFormat::kText), format) << path;
  }
  for (const char* other : {"-", "out", "out.gz", ".svg", "svg", "x.html"}) {
    EXPECT_EQ(profile_format_for_path(other, ProfileFormat::kFolded), ProfileFormat::kFolded)
        << other;
  }
}

TEST(ProfileFormat, WritesEveryFormatAndRefusesBrokenProfiles) {
  const Profile p = testing::coroutine_cpu_profile();
  for (const ProfileFormat f :
       {ProfileFormat::kText, ProfileFormat::kFolded, ProfileFormat::kSvg,
        ProfileFormat::kSpeedscope, ProfileFormat::kPprof, ProfileFormat::kJson}) {
    std::ostringstream out;
    std::string error;
    EXPECT_TRUE(write_profile(out, p, f, &error)) << profile_format_name(f) << ": " << error;
    EXPECT_FALSE(out.str().empty()) << profile_format_name(f);
    Profile broken = p;
    broken.samples[2].frames.push_back(10);
    std::ostringstream none;
    EXPECT_FALSE(write_profile(none, broken, f, &error));
    EXPECT_EQ(error, "profile sample 2 names frame 10 of 10");
    EXPECT_TRUE(none.str().empty()) << "nothing written for a broken profile";
  }
}

TEST(ProfileFormat, ReportsAFailedStream) {
  std::ostringstream out;
  out.setstate(std::ios::badbit);
  std::string error;
  EXPECT_FALSE(
      write_profile(out, testing::coroutine_cpu_profile(), ProfileFormat::kFolded, &error));
  EXPECT_EQ(error, "writing the profile failed");
}

}  // namespace
}  // namespace asyncprobe
