#include "userspace/output/profile_svg.h"
#include "tests/unit/profile_builders.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>

namespace asyncprobe {
namespace {

std::string svg(const model::Profile& p, const output::SvgOptions& opts = {}) {
  std::ostringstream out;
  output::write_flame_svg(out, p, opts);
  return out.str();
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(ProfileSvg, DrawsOneFrameBoxPerFunctionAndPathRootAtTheBottom) {
  const std::string s = svg(testing::coroutine_cpu_profile());
  EXPECT_EQ(s.rfind("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n<svg ", 0), 0u);
  // 8 levels (all, main, run, resume, handle, render, compute, mix): 60 + 8*16 + 28.
  EXPECT_NE(s.find("width=\"1200\" height=\"216\" viewBox=\"0 0 1200 216\" data-total=\"10\" "
                   "data-unit=\"samples\""),
            std::string::npos);
  EXPECT_EQ(count(s, "\" class=\"f "), 12u);
  EXPECT_NE(s.find("<g id=\"f0\" class=\"f root\" data-s=\"0\" data-w=\"10\" data-d=\"0\" "
                   "data-name=\"all\"><title>all\nall samples\n10 samples, 100.00%</title><rect "
                   "x=\"10.00\" y=\"172\" width=\"1180.00\" height=\"15\" rx=\"2\" "
                   "fill=\"rgb(200,200,200)\"/><text x=\"13.00\" y=\"184\">all</text></g>\n"),
            std::string::npos);
  EXPECT_NE(
      s.find("<g id=\"f7\" class=\"f k-async\" data-s=\"1\" data-w=\"8\" data-d=\"5\" "
             "data-name=\"render(int)\"><title>render(int)\nburn.cpp:30\nasync parent, "
             "awaiting (not on the thread&apos;s stack)\n8 samples, 80.00%</title><rect "
             "x=\"128.00\" y=\"92\" width=\"944.00\" height=\"15\" rx=\"2\" "
             "fill=\"rgb(167,123,237)\"/><text x=\"131.00\" y=\"104\">render(int)</text></g>\n"),
      std::string::npos);
  EXPECT_NE(
      s.find("<g id=\"f8\" class=\"f k-coro\" data-s=\"1\" data-w=\"8\" data-d=\"6\" "
             "data-name=\"compute(int)\"><title>compute(int)\nburn.cpp:21\ncoroutine, running "
             "on the thread\n8 samples, 80.00%</title><rect x=\"128.00\" y=\"76\" "
             "width=\"944.00\" height=\"15\" rx=\"2\" fill=\"rgb(53,123,227)\"/>"),
      std::string::npos);
  EXPECT_NE(
      s.find("<g id=\"f9\" class=\"f k-inlined\" data-s=\"1\" data-w=\"6\" data-d=\"7\" "
             "data-name=\"mix(unsigned long)\"><title>mix(unsigned long)\nburn.cpp:9\nnative, "
             "inlined\n6 samples, 60.00%</title>"),
      std::string::npos);
  // The uncertain join: its own box (not merged with certain parents), flagged, name cut to fit.
  EXPECT_NE(s.find("<g id=\"f10\" class=\"f k-async uncertain\" data-s=\"9\" data-w=\"1\" "
                   "data-d=\"4\" data-name=\"maybe_parent(int)\"><title>maybe_parent(int)\n"
                   "burn.cpp:50\nasync parent, awaiting (not on the thread&apos;s stack); join "
                   "uncertain\n1 sample, 10.00%</title><rect x=\"1072.00\" y=\"108\" "
                   "width=\"118.00\" height=\"15\" rx=\"2\" fill=\"rgb(158,116,231)\"/><text "
                   "x=\"1075.00\" y=\"120\">maybe_parent(..</text></g>\n"),
            std::string::npos);
  EXPECT_NE(s.find("class=\"f k-kernel\" data-s=\"0\" data-w=\"1\" data-d=\"4\" "
                   "data-name=\"do_epoll_wait\""),
            std::string::npos);
  // Distinct styles for coroutine kinds; the script comes last and nothing is fetched.
  EXPECT_NE(s.find("g.k-async rect { stroke: #3a1a72; stroke-width: 1.2; stroke-dasharray: 4 2; }"),
            std::string::npos);
  EXPECT_NE(s.find("g.uncertain rect { stroke: #d00000;"), std::string::npos);
  EXPECT_NE(s.find("<script type=\"text/ecmascript\"><![CDATA["), std::string::npos);
  EXPECT_EQ(s.substr(s.size() - 20), "]]></script>\n</svg>\n");
  EXPECT_EQ(count(s, "href"), 0u);
  EXPECT_EQ(count(s, "http"), 1u);  // the SVG namespace only
  EXPECT_NE(s.find("<text id=\"subtitle\" x=\"600\" y=\"36\" text-anchor=\"middle\">10 samples in "
                   "2.00 s at 99 Hz, 1 warning: 1 stack joined by a best guess</text>"),
            std::string::npos);
}

TEST(ProfileSvg, AwaitProfilesShowSuspendedTimeAndTitleOverride) {
  output::SvgOptions opts;
  opts.title = "where <requests> wait";
  const std::string s = svg(testing::coroutine_await_profile(), opts);
  EXPECT_NE(s.find(">where &lt;requests&gt; wait</text>"), std::string::npos);
  EXPECT_NE(s.find("data-unit=\"ns\""), std::string::npos);
  EXPECT_NE(s.find("<title>all\nall samples\n101 ms, 100.00%</title>"), std::string::npos);
  EXPECT_NE(s.find(">101 ms suspended in 2.00 s</text>"), std::string::npos);
}

TEST(ProfileSvg, NarrowFramesAreLeftOutAndNamesAreEscaped) {
  using K = model::ProfileFrame::Kind;
  model::Profile p;
  p.frames = {testing::profile_frame(K::kNative, "wide<&>\"'", "a.cpp", 1, 1),
              testing::profile_frame(K::kNative, "tiny", "a.cpp", 2, 2),
              testing::profile_frame(K::kNative, "bad\xff\x01utf8", "a.cpp", 3, 3)};
  model::ProfileSample wide;
  wide.frames = {0};
  wide.count = 100000;
  model::ProfileSample tiny;  // 1/100001 of 1180 px < 0.1 px
  tiny.frames = {1};
  tiny.count = 1;
  p.samples = {wide, tiny};
  std::string s = svg(p);
  EXPECT_EQ(count(s, "\" class=\"f "), 2u);  // all + wide
  EXPECT_EQ(s.find("tiny"), std::string::npos);
  EXPECT_NE(s.find("data-name=\"wide&lt;&amp;&gt;&quot;&apos;\""), std::string::npos);
  p.samples = {wide};
  p.samples[0].frames = {2};
  s = svg(p);
  EXPECT_NE(s.find("data-name=\"bad\xEF\xBF\xBD\xEF\xBF\xBDutf8\""), std::string::npos);
}

TEST(ProfileSvg, XmlEscapeKeepsValidUtf8AndReplacesTheRest) {
  EXPECT_EQ(output::xml_escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
  EXPECT_EQ(output::xml_escape("caf\xC3\xA9 \xE2\x86\x92 \xF0\x9F\x94\xA5"),
            "caf\xC3\xA9 \xE2\x86\x92 \xF0\x9F\x94\xA5");
  EXPECT_EQ(output::xml_escape("tab\tnl\ncr\r"), "tab\tnl\ncr\r");
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(output::xml_escape(std::string("nul\0x", 5)), "nul" + r + "x");
  EXPECT_EQ(output::xml_escape("\xC0\xAF"), r + r);                  // overlong
  EXPECT_EQ(output::xml_escape("\xED\xA0\x80"), r + r + r);          // surrogate
  EXPECT_EQ(output::xml_escape("\xE2\x86"), r + r);                  // truncated
  EXPECT_EQ(output::xml_escape("\xF4\x90\x80\x80"), r + r + r + r);  // past U+10FFFF
  EXPECT_EQ(output::xml_escape("\xEF\xBF\xBE"), r + r + r);  // U+FFFE is not an XML character
}

TEST(ProfileSvg, EmptyProfilesStillMakeAValidPicture) {
  model::Profile p;
  const std::string s = svg(p);
  EXPECT_EQ(count(s, "\" class=\"f "), 1u);
  EXPECT_NE(s.find("data-total=\"0\""), std::string::npos);
  EXPECT_NE(s.find("</svg>\n"), std::string::npos);
}

}  // namespace
}  // namespace asyncprobe
