// The profile export formats read by their real consumers: `go tool pprof` (-top, -traces) reads
// the pprof file, headless Chromium draws the SVG flame graph (screenshot pixels in each frame
// kind's colour) and runs its script (search and zoom driven from the URL, checked in the DOM and
// in a screenshot), the speedscope JSON validates against the schema speedscope publishes in its
// npm package, and folded stacks round-trip through our parser. First on a profile built here
// (tests/unit/profile_builders.h), then on real `asyncprobe profile` output for the CPU-burning
// fixture tests/fixtures/profile_burn.cpp, whose hot coroutine's parents are not on the stack.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/integration/fixture_process.h"
#include "tests/integration/pprof_support.h"
#include "tests/unit/profile_builders.h"
#include "userspace/output/profile_export.h"
#include "userspace/output/profile_folded.h"

namespace asyncprobe::testing {
namespace {

using nlohmann::json;

// ---- Files ------------------------------------------------------------------------------------

class TempDir {
 public:
  TempDir() {
    std::string tmpl = fixture_dir() + "/../profile-export-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    if (std::getenv("ASYNCPROBE_KEEP_TEST_FILES") == nullptr) {
      run_command({"rm", "-rf", path_});
    }
  }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_profile_file(const model::Profile& p, const std::string& path) {
  std::ofstream out(path, std::ios::binary);
  std::string error;
  ASSERT_TRUE(output::write_profile(
      out, p, output::profile_format_for_path(path, output::ProfileFormat::kText), &error))
      << error;
}

// ---- Chromium and PNG ------------------------------------------------------------------------

RunResult chromium(const TempDir& dir, std::vector<std::string> args, const std::string& url) {
  std::vector<std::string> argv{
      "chromium",      "--headless",        "--no-sandbox",
      "--disable-gpu", "--hide-scrollbars", "--user-data-dir=" + dir.file("chromium-profile")};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back(url);
  return run_command(argv, std::chrono::seconds(120));
}

struct Rgb {
  int r = 0, g = 0, b = 0;
  bool near(const Rgb& o, int tolerance = 3) const {
    return std::abs(r - o.r) <= tolerance && std::abs(g - o.g) <= tolerance &&
           std::abs(b - o.b) <= tolerance;
  }
};

std::ostream& operator<<(std::ostream& os, const Rgb& c) {
  return os << "rgb(" << c.r << "," << c.g << "," << c.b << ")";
}

struct Image {
  int width = 0, height = 0, channels = 0;
  std::vector<unsigned char> pixels;  // rows of width * channels bytes
  Rgb at(int x, int y) const {
    const unsigned char* p = &pixels[(static_cast<size_t>(y) * width + x) * channels];
    return Rgb{p[0], p[1], p[2]};
  }
};

uint32_t be32(const std::string& s, size_t at) {
  return (uint32_t{static_cast<unsigned char>(s[at])} << 24) |
         (uint32_t{static_cast<unsigned char>(s[at + 1])} << 16) |
         (uint32_t{static_cast<unsigned char>(s[at + 2])} << 8) |
         uint32_t{static_cast<unsigned char>(s[at + 3])};
}

// A PNG as Chromium writes screenshots: 8-bit RGB or RGBA, not interlaced.
Image decode_png(const std::string& png) {
  if (png.size() < 8 || png.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0) {
    throw std::runtime_error("not a PNG");
  }
  Image img;
  std::string idat;
  for (size_t pos = 8; pos + 12 <= png.size();) {
    const uint32_t len = be32(png, pos);
    const std::string type = png.substr(pos + 4, 4);
    if (type == "IHDR") {
      img.width = static_cast<int>(be32(png, pos + 8));
      img.height = static_cast<int>(be32(png, pos + 12));
      const int depth = png[pos + 16], colour = png[pos + 17], interlace = png[pos + 20];
      if (depth != 8 || (colour != 2 && colour != 6) || interlace != 0) {
        throw std::runtime_error("unsupported PNG layout");
      }
      img.channels = colour == 6 ? 4 : 3;
    } else if (type == "IDAT") {
      idat += png.substr(pos + 8, len);
    }
    pos += 12 + len;
  }
  const size_t stride = static_cast<size_t>(img.width) * img.channels;
  std::string raw((stride + 1) * img.height, '\0');
  uLongf raw_len = raw.size();
  if (uncompress(reinterpret_cast<Bytef*>(raw.data()), &raw_len,
                 reinterpret_cast<const Bytef*>(idat.data()), idat.size()) != Z_OK ||
      raw_len != raw.size()) {
    throw std::runtime_error("PNG image data does not inflate");
  }
  img.pixels.assign(stride * img.height, 0);
  const size_t bpp = img.channels;
  for (int y = 0; y < img.height; ++y) {
    const unsigned char filter = raw[y * (stride + 1)];
    const unsigned char* in = reinterpret_cast<const unsigned char*>(&raw[y * (stride + 1) + 1]);
    unsigned char* row = &img.pixels[y * stride];
    const unsigned char* up = y > 0 ? &img.pixels[(y - 1) * stride] : nullptr;
    for (size_t i = 0; i < stride; ++i) {
      const int a = i >= bpp ? row[i - bpp] : 0;
      const int b = up ? up[i] : 0;
      const int c = up && i >= bpp ? up[i - bpp] : 0;
      int pred = 0;
      switch (filter) {
        case 1:
          pred = a;
          break;
        case 2:
          pred = b;
          break;
        case 3:
          pred = (a + b) / 2;
          break;
        case 4: {
          const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
          pred = pa <= pb && pa <= pc ? a : (pb <= pc ? b : c);
          break;
        }
        default:
          break;
      }
      row[i] = static_cast<unsigned char>(in[i] + pred);
    }
  }
  return img;
}

// A frame box of our SVG, read from the SVG text itself.
struct Box {
  std::string id, cls, name;
  double x = 0, width = 0;
  int y = 0, height = 0;
  Rgb fill;
  int cx() const { return static_cast<int>(x + width / 2); }
  int cy() const { return y + height / 2; }
};

std::vector<Box> boxes_of(const std::string& svg) {
  static const std::regex re(
      "<g id=\"(f[0-9]+)\" class=\"f ([^\"]*)\"[^>]*data-name=\"([^\"]*)\"><title>[^<]*</title>"
      "<rect x=\"([0-9.]+)\" y=\"([0-9]+)\" width=\"([0-9.]+)\" height=\"([0-9]+)\" rx=\"2\" "
      "fill=\"rgb\\(([0-9]+),([0-9]+),([0-9]+)\\)\"/>");
  std::vector<Box> out;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator();
       ++it) {
    const std::smatch& m = *it;
    Box b;
    b.id = m[1];
    b.cls = m[2];
    b.name = m[3];
    b.x = std::stod(m[4]);
    b.y = std::stoi(m[5]);
    b.width = std::stod(m[6]);
    b.height = std::stoi(m[7]);
    b.fill = Rgb{std::stoi(m[8]), std::stoi(m[9]), std::stoi(m[10])};
    out.push_back(b);
  }
  return out;
}

const Box& widest(const std::vector<Box>& boxes, const std::string& name) {
  const Box* best = nullptr;
  for (const Box& b : boxes) {
    if (b.name == name && (best == nullptr || b.width > best->width)) best = &b;
  }
  if (best == nullptr) throw std::runtime_error("no frame box named " + name);
  return *best;
}

int svg_height(const std::string& svg) {
  std::smatch m;
  static const std::regex re("<svg [^>]*height=\"([0-9]+)\"");
  if (!std::regex_search(svg, m, re)) throw std::runtime_error("no svg height");
  return std::stoi(m[1]);
}

Image screenshot(const TempDir& dir, const std::string& svg_path, const std::string& fragment,
                 const std::string& png_name) {
  const std::string svg = read_file(svg_path);
  const std::string png = dir.file(png_name);
  RunResult r = chromium(
      dir, {"--screenshot=" + png, "--window-size=1200," + std::to_string(svg_height(svg))},
      "file://" + svg_path + fragment);
  if (r.exit.exit_code != 0) throw std::runtime_error("chromium failed: " + r.err);
  return decode_png(read_file(png));
}

// Colour changes along a pixel row: a dashed outline changes colour every few pixels.
int colour_changes(const Image& img, int y, int x0, int x1) {
  int changes = 0;
  for (int x = x0 + 1; x < x1; ++x) {
    if (!img.at(x, y).near(img.at(x - 1, y), 10)) ++changes;
  }
  return changes;
}

bool warm(const Rgb& c) { return c.r >= 210 && c.b <= 75; }
bool coroutine_blue(const Rgb& c) { return c.b >= 220 && c.r <= 95 && c.g <= 175; }
bool async_purple(const Rgb& c) { return c.b >= 220 && c.r >= 145 && c.g <= 145; }

// ---- speedscope's schema and ajv (npm, into the build tree on first use) -----------------------

struct SchemaTools {
  std::string ajv, schema;
};

const SchemaTools& speedscope_tools() {
  static std::optional<SchemaTools> cached;
  if (cached) return *cached;
  const std::string prefix = fixture_dir() + "/../profile-npm";
  SchemaTools t{prefix + "/node_modules/.bin/ajv",
                prefix + "/node_modules/speedscope/dist/release/file-format-schema.json"};
  if (access(t.ajv.c_str(), X_OK) != 0 || access(t.schema.c_str(), R_OK) != 0) {
    RunResult r = run_command({"npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix",
                               prefix, "speedscope@1.25.0", "ajv-cli@5.0.0"},
                              std::chrono::seconds(300));
    if (r.exit.exit_code != 0) std::cerr << "npm install failed: " << r.err << "\n";
  }
  if (access(t.ajv.c_str(), X_OK) != 0 || access(t.schema.c_str(), R_OK) != 0) t = {};
  cached = t;
  return *cached;
}

// The schema is draft-07 ("$schema": "http://json-schema.org/draft-07/schema#").
RunResult ajv_validate(const std::string& file) {
  const SchemaTools& t = speedscope_tools();
  return run_command(
      {t.ajv, "validate", "--spec=draft7", "--strict=false", "-s", t.schema, "-d", file},
      std::chrono::seconds(120));
}

// ---- The profile built here -------------------------------------------------------------------

class BuiltProfile : public ::testing::Test {
 protected:
  void SetUp() override { profile_ = coroutine_cpu_profile(); }
  std::string written(const std::string& name) {
    const std::string path = dir_.file(name);
    write_profile_file(profile_, path);
    return path;
  }
  TempDir dir_;
  model::Profile profile_;
};

TEST_F(BuiltProfile, GoPprofTopShowsFlatAndCumulativeTimeOfEveryFunctionAndKind) {
  RunResult r = go_pprof(dir_.file("go"), {"-top"}, written("cpu.pb.gz"));
  ASSERT_EQ(r.exit.exit_code, 0) << r.err;
  std::vector<std::string> lines;
  for (const std::string& l : lines_of(r.out)) lines.push_back(squeeze(l));
  for (const char* expected : {
           "Type: cpu",
           "Duration: 2s, Total samples = 101.01ms ( 5.05%)",
           "60.61ms 60.00% 60.00% 60.61ms 60.00% mix(unsigned long) (inline)",
           "30.30ms 30.00% 90.00% 90.91ms 90.00% compute(int) [coroutine]",
           "10.10ms 10.00% 100% 10.10ms 10.00% do_epoll_wait",
           "0 0% 100% 80.81ms 80.00% handle(request) [async]",
           "0 0% 100% 80.81ms 80.00% render(int) [async]",
           "0 0% 100% 10.10ms 10.00% maybe_parent(int) [async?]",
           "0 0% 100% 101.01ms 100% main",
       }) {
    EXPECT_NE(std::find(lines.begin(), lines.end(), expected), lines.end())
        << "missing: " << expected << "\n"
        << r.out;
  }
}

TEST_F(BuiltProfile, GoPprofTracesShowTheJoinedAsyncStackWithThreadAndCoroutineLabels) {
  RunResult r = go_pprof(dir_.file("go"), {"-traces"}, written("cpu.pb.gz"));
  ASSERT_EQ(r.exit.exit_code, 0) << r.err;
  const std::vector<Trace> traces = parse_traces(r.out);
  ASSERT_EQ(traces.size(), 4u) << r.out;
  const Trace& hot = traces[0];
  EXPECT_EQ(hot.value, "60.61ms");
  EXPECT_EQ(hot.frames, (std::vector<std::string>{
                            "mix(unsigned long) (inline)", "compute(int) [coroutine]",
                            "render(int) [async]", "handle(request) [async]",
                            "std::coroutine_handle::resume const", "event_loop::run", "main"}))
      << r.out;
  EXPECT_EQ(
      hot.labels,
      (std::map<std::string, std::string>{
          {"thread", "worker"}, {"tid", "4243"}, {"coroutine", "compute(int) @ 0x7f00000a0000"}}))
      << r.out;
  const Trace& guess = traces[3];
  EXPECT_EQ(guess.labels.at("async_stack"), "uncertain") << r.out;
  EXPECT_EQ(guess.frames[1], "maybe_parent(int) [async?]") << r.out;
}

TEST_F(BuiltProfile, ChromiumDrawsEveryFrameKindInItsOwnColourWithDashedAsyncOutlines) {
  const std::string svg_path = written("flame.svg");
  const std::string svg = read_file(svg_path);
  const std::vector<Box> boxes = boxes_of(svg);
  ASSERT_EQ(boxes.size(), 12u);
  const Image img = screenshot(dir_, svg_path, "", "flame.png");
  ASSERT_EQ(img.width, 1200);
  ASSERT_EQ(img.height, svg_height(svg));
  // Each box's centre shows its fill (boxes wide enough to leave the centre free of text).
  for (const char* name : {"compute(int)", "render(int)", "handle(request)", "main", "all"}) {
    const Box& b = widest(boxes, name);
    const Rgb seen = img.at(b.cx(), b.cy());
    EXPECT_TRUE(seen.near(b.fill)) << name << ": drew " << seen << ", SVG says " << b.fill;
  }
  EXPECT_TRUE(coroutine_blue(widest(boxes, "compute(int)").fill));
  EXPECT_TRUE(async_purple(widest(boxes, "render(int)").fill));
  EXPECT_TRUE(async_purple(widest(boxes, "handle(request)").fill));
  EXPECT_TRUE(warm(widest(boxes, "main").fill));
  const Box& mix = widest(boxes, "mix(unsigned long)");
  EXPECT_TRUE(img.at(mix.cx(), mix.cy()).near(Rgb{99, 221, 216})) << "inlined: aqua";
  // Async parents have a dashed outline (the top edge changes colour every few pixels); the
  // running coroutine's outline is solid.
  const Box& render = widest(boxes, "render(int)");
  const Box& compute = widest(boxes, "compute(int)");
  EXPECT_GT(colour_changes(img, render.y, 300, 1000), 150);
  EXPECT_EQ(colour_changes(img, compute.y, 300, 1000), 0);
  // The uncertain join's outline is red.
  const Box& guess = widest(boxes, "maybe_parent(int)");
  int red = 0;
  for (int x = static_cast<int>(guess.x); x < static_cast<int>(guess.x + guess.width); ++x) {
    const Rgb c = img.at(x, guess.y);
    if (c.r >= 180 && c.g <= 90 && c.b <= 90) ++red;
  }
  EXPECT_GT(red, 20);
}

TEST_F(BuiltProfile, ChromiumRunsTheScriptSearchAndZoomFromTheUrl) {
  const std::string svg_path = written("flame.svg");
  const std::vector<Box> boxes = boxes_of(read_file(svg_path));
  const Box& compute = widest(boxes, "compute(int)");
  const std::string fragment = "#s=compute&x=" + compute.id;
  RunResult dom = chromium(dir_, {"--dump-dom"}, "file://" + svg_path + fragment);
  ASSERT_EQ(dom.exit.exit_code, 0) << dom.err;
  EXPECT_NE(dom.out.find("data-viewer=\"ready\""), std::string::npos) << dom.out;
  EXPECT_NE(dom.out.find("data-matched=\"90.00\""), std::string::npos);
  EXPECT_NE(dom.out.find("data-zoom=\"" + compute.id + "\""), std::string::npos);
  EXPECT_NE(dom.out.find(">Matched: 90.0% (compute)</text>"), std::string::npos);
  EXPECT_NE(dom.out.find(">Click a frame to zoom, Search or Ctrl-F to find functions.</text>"),
            std::string::npos);
  // Outside the zoomed frame's subtree: hidden; its ancestors: dimmed.
  const Box& poll = widest(boxes, "poll_once()");
  EXPECT_NE(dom.out.find("<g id=\"" + poll.id +
                         "\" class=\"f k-native\" data-s=\"0\" "
                         "data-w=\"1\" data-d=\"3\" data-name=\"poll_once()\" "
                         "style=\"display: none;\">"),
            std::string::npos)
      << dom.out;
  const Box& main_box = widest(boxes, "main");
  EXPECT_NE(dom.out.find("<g id=\"" + main_box.id +
                         "\" class=\"f k-native anc\" data-s=\"0\" "
                         "data-w=\"10\" data-d=\"1\" data-name=\"main\">"),
            std::string::npos);

  // The zoomed picture: compute spans the whole width, highlighted as a search match.
  const Image img = screenshot(dir_, svg_path, fragment, "zoomed.png");
  for (const int x : {400, 600, 1180}) {
    EXPECT_TRUE(img.at(x, compute.cy()).near(Rgb{230, 0, 230}))
        << x << ": " << img.at(x, compute.cy());
  }
  // mix (6 of compute's 8 samples) now covers three quarters of the width.
  const Box& mix = widest(boxes, "mix(unsigned long)");
  EXPECT_TRUE(img.at(10 + 1180 * 6 / 8 - 20, mix.cy()).near(Rgb{99, 221, 216}));
  EXPECT_FALSE(img.at(10 + 1180 * 6 / 8 + 20, mix.cy()).near(Rgb{99, 221, 216}));
}

TEST_F(BuiltProfile, SpeedscopeJsonValidatesAgainstThePublishedSchema) {
  if (speedscope_tools().ajv.empty()) GTEST_SKIP() << "npm could not install speedscope/ajv-cli";
  const std::string path = written("cpu.speedscope.json");
  RunResult v = ajv_validate(path);
  EXPECT_EQ(v.exit.exit_code, 0) << v.out << v.err;
  // ... and the validator does reject what breaks the format.
  json broken = json::parse(read_file(path));
  broken["profiles"][0].erase("weights");
  std::ofstream(dir_.file("broken.speedscope.json")) << broken.dump();
  RunResult bad = ajv_validate(dir_.file("broken.speedscope.json"));
  EXPECT_NE(bad.exit.exit_code, 0) << "a sampled profile without weights must not validate";
}

// Folded text read back and written again gives the same bytes.
void expect_folded_round_trip(const std::string& text) {
  std::istringstream in(text);
  model::Profile back;
  std::string error;
  ASSERT_TRUE(output::read_folded(in, model::Profile::Type::kCpu, &back, &error)) << error;
  std::ostringstream again;
  ASSERT_TRUE(output::write_profile(again, back, output::ProfileFormat::kFolded, &error)) << error;
  EXPECT_EQ(again.str(), text);
}

TEST_F(BuiltProfile, FoldedFileRoundTrips) {
  const std::string path = written("cpu.folded");
  const std::string text = read_file(path);
  expect_folded_round_trip(text);
  EXPECT_EQ(lines_of(text).size(), 4u);
}

// ---- Real `asyncprobe profile` output ---------------------------------------------------------

constexpr const char* kVariant = "gcc12-O2";

// Profiles the burning fixture for 2 s into `path` (the format from its extension).
RunResult profile_burn_into(const std::string& path) {
  FixtureProcess burn({fixture_path(kVariant, "profile_burn"), "--mode", "burn"});
  return run_command(
      {asyncprobe_binary(), "profile", "-p", std::to_string(burn.pid()), "-d", "2", "-o", path},
      std::chrono::seconds(120));
}

class RealProfile : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "asyncprobe profile loads BPF: run as root";
  }
  std::string profiled(const std::string& name) {
    const std::string path = dir_.file(name);
    RunResult r = profile_burn_into(path);
    EXPECT_EQ(r.exit.exit_code, 0) << r.err;
    return path;
  }
  TempDir dir_;
};

// The hot stack, leaf first: burn_cpu in compute, whose parents render and handle are joined.
// The leaf by its exact name (internal linkage: qualified from its symbol); the coroutines by
// name and kind (their parameter lists are the fixture's business). go tool pprof prints C++
// names shortened: without parameter lists and with "(anonymous namespace)" reduced to "".
const std::string kLeaf = "(anonymous namespace)::burn_cpu(long)";
const std::string kLeafInPprof = "::burn_cpu";
const std::vector<std::pair<std::string, std::string>> kJoined = {
    {"", ""}, {"compute(", " [coroutine]"}, {"render(", " [async]"}, {"handle(", " [async]"}};

bool is_frame(const std::string& name, const std::string& function, const std::string& tag) {
  if (tag.empty()) return name == function;
  return name.rfind(function, 0) == 0 && name.size() > function.size() + tag.size() &&
         name.compare(name.size() - tag.size(), tag.size(), tag) == 0;
}

// The one name in `names` that is `function(...)` with `tag`, or "" (with a failure).
template <typename Names>
std::string find_frame(const Names& names, const std::string& function, const std::string& tag) {
  for (const std::string& n : names) {
    if (is_frame(n, function, tag)) return n;
  }
  ADD_FAILURE() << "no frame " << function << "..." << tag;
  return "";
}

void expect_joined(const std::vector<std::string>& leaf_first, const std::string& leaf,
                   const std::string& context) {
  ASSERT_GE(leaf_first.size(), kJoined.size()) << context;
  EXPECT_EQ(leaf_first[0], leaf) << context;
  for (size_t i = 1; i < kJoined.size(); ++i) {
    EXPECT_TRUE(is_frame(leaf_first[i], kJoined[i].first, kJoined[i].second))
        << "frame " << i << " is " << leaf_first[i] << ", expected " << kJoined[i].first << "..."
        << kJoined[i].second << "\n"
        << context;
  }
}

TEST_F(RealProfile, GoPprofShowsTheBurningCoroutineWithItsAsyncParents) {
  const std::string path = profiled("burn.pb.gz");
  RunResult top = go_pprof(dir_.file("go"), {"-top"}, path);
  ASSERT_EQ(top.exit.exit_code, 0) << top.err;
  // flat flat% sum% cum cum% name: burn_cpu has (nearly) all the flat time, the async parents
  // (never on the stack) as much cumulative time.
  std::map<std::string, std::vector<std::string>> rows;
  for (const std::string& l : lines_of(top.out)) {
    std::istringstream in(squeeze(l));
    std::vector<std::string> cols(5);
    for (std::string& c : cols) in >> c;
    std::string name;
    std::getline(in, name);
    if (!name.empty()) rows[name.substr(1)] = cols;
  }
  auto percent = [&](const std::string& name, int col) {
    EXPECT_TRUE(rows.count(name)) << name << " missing from\n" << top.out;
    return rows.count(name) ? std::stod(rows[name][col]) : 0.0;
  };
  EXPECT_GE(percent(kLeafInPprof, 1), 90.0) << top.out;
  std::vector<std::string> names;
  for (const auto& [name, cols] : rows) names.push_back(name);
  EXPECT_GE(percent(find_frame(names, "compute(", " [coroutine]"), 4), 90.0) << top.out;
  EXPECT_GE(percent(find_frame(names, "render(", " [async]"), 4), 90.0) << top.out;
  EXPECT_GE(percent(find_frame(names, "handle(", " [async]"), 4), 90.0) << top.out;

  RunResult traces = go_pprof(dir_.file("go"), {"-traces"}, path);
  ASSERT_EQ(traces.exit.exit_code, 0) << traces.err;
  const std::vector<Trace> parsed = parse_traces(traces.out);
  ASSERT_FALSE(parsed.empty()) << traces.out;
  const Trace& heaviest = parsed[0];
  expect_joined(heaviest.frames, kLeafInPprof, traces.out);
  EXPECT_EQ(heaviest.frames.back().rfind("_start", 0), 0u) << traces.out;
  EXPECT_EQ(heaviest.labels.at("thread"), "profile_burn") << traces.out;
  EXPECT_EQ(heaviest.labels.at("coroutine").rfind("compute(", 0), 0u) << traces.out;
  EXPECT_NE(heaviest.labels.at("coroutine").find(") @ 0x"), std::string::npos) << traces.out;
}

TEST_F(RealProfile, ChromiumDrawsTheBurningCoroutineAndItsParents) {
  const std::string svg_path = profiled("burn.svg");
  const std::string svg = read_file(svg_path);
  const std::vector<Box> boxes = boxes_of(svg);
  const Box& burn = widest(boxes, kLeaf);
  std::vector<std::string> names;
  for (const Box& b : boxes) names.push_back(b.name + " ");
  auto box = [&](const char* function) -> const Box& {
    const std::string n = find_frame(names, function, " ");
    return widest(boxes, n.substr(0, n.size() - 1));
  };
  const Box& compute = box("compute(");
  const Box& render = box("render(");
  const Box& handle = box("handle(");
  EXPECT_NE(compute.cls.find("k-coro"), std::string::npos);
  EXPECT_NE(render.cls.find("k-async"), std::string::npos);
  EXPECT_NE(handle.cls.find("k-async"), std::string::npos);
  // Stacked: handle under render under compute under burn_cpu (root at the bottom).
  EXPECT_EQ(render.y, handle.y - render.height - 1);
  EXPECT_EQ(compute.y, render.y - compute.height - 1);
  EXPECT_EQ(burn.y, compute.y - burn.height - 1);
  EXPECT_GT(burn.width, 1180 * 0.9);

  const Image img = screenshot(dir_, svg_path, "", "burn.png");
  // Sample right of the names, where only the fill shows.
  const int x = static_cast<int>(burn.x + burn.width) - 30;
  EXPECT_TRUE(img.at(x, compute.cy()).near(compute.fill)) << img.at(x, compute.cy());
  EXPECT_TRUE(coroutine_blue(img.at(x, compute.cy()))) << img.at(x, compute.cy());
  EXPECT_TRUE(async_purple(img.at(x, render.cy()))) << img.at(x, render.cy());
  EXPECT_TRUE(async_purple(img.at(x, handle.cy()))) << img.at(x, handle.cy());
  EXPECT_TRUE(warm(img.at(x, burn.cy()))) << img.at(x, burn.cy());
  EXPECT_GT(colour_changes(img, render.y, 300, 1000), 150);

  RunResult dom = chromium(dir_, {"--dump-dom"}, "file://" + svg_path + "#s=burn_cpu");
  ASSERT_EQ(dom.exit.exit_code, 0) << dom.err;
  EXPECT_NE(dom.out.find("data-viewer=\"ready\""), std::string::npos);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(dom.out, m, std::regex("data-matched=\"([0-9.]+)\"")));
  EXPECT_GE(std::stod(m[1]), 90.0);
}

TEST_F(RealProfile, SpeedscopeJsonValidatesAndHoldsTheJoinedStack) {
  if (speedscope_tools().ajv.empty()) GTEST_SKIP() << "npm could not install speedscope/ajv-cli";
  const std::string path = profiled("burn.speedscope.json");
  RunResult v = ajv_validate(path);
  EXPECT_EQ(v.exit.exit_code, 0) << v.out << v.err;
  const json j = json::parse(read_file(path));
  std::vector<std::string> names;
  for (const json& f : j["shared"]["frames"]) names.push_back(f["name"]);
  // The heaviest sample, root first: ... handle, render, compute, burn_cpu.
  const json& prof = j["profiles"][0];
  size_t heaviest = 0;
  for (size_t i = 0; i < prof["weights"].size(); ++i) {
    if (prof["weights"][i] > prof["weights"][heaviest]) heaviest = i;
  }
  std::vector<std::string> leaf_first;
  for (const json& i : prof["samples"][heaviest]) leaf_first.insert(leaf_first.begin(), names[i]);
  expect_joined(leaf_first, kLeaf, path);
}

TEST_F(RealProfile, FoldedStacksRoundTripAndEndInTheJoinedStack) {
  const std::string path = profiled("burn.folded");
  const std::string text = read_file(path);
  expect_folded_round_trip(text);
  static const std::regex joined_line(
      ";handle\\([^;]*\\)_\\[async\\];render\\([^;]*\\)_\\[async\\];compute\\([^;]*\\)_\\["
      "coro\\];\\(anonymous namespace\\)::burn_cpu\\(long\\) [0-9]+$");
  int64_t total = 0, joined = 0;
  for (const std::string& line : lines_of(text)) {
    const int64_t n = std::stoll(line.substr(line.rfind(' ') + 1));
    total += n;
    if (std::regex_search(line, joined_line)) joined += n;
  }
  // 99 Hz for 2 s of a busy thread; fewer when the machine is loaded, never none.
  EXPECT_GE(total, 20);
  EXPECT_GE(joined * 10, total * 9) << text;
}

}  // namespace
}  // namespace asyncprobe::testing
