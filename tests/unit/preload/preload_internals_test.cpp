// Pieces of libasyncprobe-preload.so tested in this process: the DWARF CFI unwinder walking this
// very stack, the tables the helper produces (format checks and lookups), the resume-function
// scan of real fixtures (it must agree with the symbolizer's catalog), the option parser and the
// signal-safe formatter. Links the library's code (asyncprobe_preload_core) as the .so does.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "symbolizer/coro_catalog.h"
#include "userspace/preload/config.h"
#include "userspace/preload/elf_scan.h"
#include "userspace/preload/modules.h"
#include "userspace/preload/signal_safe.h"
#include "userspace/preload/unwinder.h"

namespace asyncprobe::preload {
namespace {

namespace pt = preload_table;

// ---- unwinder ----------------------------------------------------------------------------------

StackFrame g_frames[32];
size_t g_count = 0;

extern "C" __attribute__((noinline)) void unwind_leaf(int depth) {
  RegState regs;
  asyncprobe_capture_caller_regs(&regs);
  g_count = unwind_stack(regs, false, g_frames, 32);
  asm volatile("" ::"r"(depth) : "memory");
}

extern "C" __attribute__((noinline)) void unwind_middle(int depth) {
  unwind_leaf(depth + 1);
  asm volatile("" ::: "memory");  // not a tail call
}

extern "C" __attribute__((noinline)) void unwind_outer(int depth) {
  char pad[300];  // a frame of its own size, to be stepped over by its CFI
  std::memset(pad, depth, sizeof pad);
  asm volatile("" ::"r"(pad) : "memory");
  unwind_middle(depth + 1);
  asm volatile("" ::: "memory");
}

// Which of our three functions a return address is in: the nearest start below it (they are
// small, and the executable exports no symbols for dladdr).
void* function_of(uint64_t pc) {
  void* best = nullptr;
  for (void* f : {reinterpret_cast<void*>(&unwind_leaf), reinterpret_cast<void*>(&unwind_middle),
                  reinterpret_cast<void*>(&unwind_outer)}) {
    uint64_t start = reinterpret_cast<uint64_t>(f);
    if (start < pc && pc - start < 1024 &&
        (best == nullptr || start > reinterpret_cast<uint64_t>(best)))
      best = f;
  }
  return best;
}

TEST(PreloadUnwinder, WalksThisStackThroughEveryCaller) {
  Modules::refresh();
  unwind_outer(0);
  ASSERT_GE(g_count, 4u);
  // Frame 0 is unwind_leaf itself (pc after the capture call), then its callers in order.
  EXPECT_EQ(function_of(g_frames[0].pc), reinterpret_cast<void*>(&unwind_leaf));
  EXPECT_EQ(function_of(g_frames[1].pc), reinterpret_cast<void*>(&unwind_middle));
  EXPECT_EQ(function_of(g_frames[2].pc), reinterpret_cast<void*>(&unwind_outer));
  for (size_t i = 1; i < g_count; ++i) EXPECT_GT(g_frames[i].sp, g_frames[i - 1].sp) << i;
  // unwind_outer's frame holds its 300-byte buffer: the CFA step covered it.
  EXPECT_GE(g_frames[3].sp - g_frames[2].sp, 300u);
  // It reaches main and libc's start code.
  bool libc = false;
  for (size_t i = 0; i < g_count; ++i) {
    const ModuleRecord* m = Modules::by_code(g_frames[i].pc - 1);
    libc |= m != nullptr && std::string(m->path).find("libc.so") != std::string::npos;
  }
  EXPECT_TRUE(libc);
}

TEST(PreloadUnwinder, AGarbageStartStopsQuietly) {
  Modules::refresh();
  RegState regs;
  regs.set(kRip, 0x10);  // no module
  regs.set(kRsp, 0x20);  // unreadable
  StackFrame frames[8];
  EXPECT_EQ(unwind_stack(regs, true, frames, 8), 1u);
  RegState none;
  EXPECT_EQ(unwind_stack(none, true, frames, 8), 0u);
}

// ---- tables ------------------------------------------------------------------------------------

struct BlobBuilder {
  std::vector<pt::CoroRecord> coros;
  std::vector<pt::PointRecord> points;
  std::vector<pt::DestroyKey> keys;
  std::vector<pt::SymbolRecord> syms;
  std::vector<pt::LineRecord> lines;
  std::string strings = std::string(1, '\0');
  uint32_t str(const std::string& s) {
    uint32_t at = static_cast<uint32_t>(strings.size());
    strings += s;
    strings.push_back('\0');
    return at;
  }
  std::vector<char> build() {
    pt::TableHeader h{};
    h.magic = pt::kMagic;
    h.version = pt::kVersion;
    h.coroutines = static_cast<uint32_t>(coros.size());
    h.points = static_cast<uint32_t>(points.size());
    h.destroy_keys = static_cast<uint32_t>(keys.size());
    h.symbols = static_cast<uint32_t>(syms.size());
    h.lines = static_cast<uint32_t>(lines.size());
    h.string_bytes = static_cast<uint32_t>(strings.size());
    pt::TableLayout l{};
    pt::table_layout(h, &l);
    h.total_bytes = l.end;
    std::vector<char> out(reinterpret_cast<char*>(&h), reinterpret_cast<char*>(&h) + sizeof h);
    auto add = [&](const auto& v) {
      const char* p = reinterpret_cast<const char*>(v.data());
      out.insert(out.end(), p, p + v.size() * sizeof(v[0]));
    };
    add(coros);
    add(points);
    add(keys);
    add(syms);
    add(lines);
    out.insert(out.end(), strings.begin(), strings.end());
    return out;
  }
};

BlobBuilder sample() {
  BlobBuilder b;
  pt::CoroRecord c{};
  c.resume = 0x1000;
  c.resume_size = 0x100;
  c.cold = 0x3000;
  c.cold_size = 0x20;
  c.destroy = 0x1100;
  c.cleanup = 0x1200;
  c.name = b.str("leaf(int)");
  c.index_offset = 40;
  c.index_width = 2;
  c.promise_offset = 16;
  c.points_begin = 0;
  c.points_count = 2;
  b.coros.push_back(c);
  b.points.push_back({2, b.str("/s.cpp"), 10, pt::kInitial, {}});
  b.points.push_back({4, b.str("/s.cpp"), 12, pt::kAwait, {}});
  b.keys.push_back({0x1100, 0, 0});
  b.keys.push_back({0x1200, 0, 1});
  b.syms.push_back({0x1000, 0x100, b.str("leaf(int) [clone .actor]"), 0});
  b.syms.push_back({0x2000, 0x40, b.str("helper()"), 0});
  b.lines.push_back({0x1000, b.str("/s.cpp"), 9});
  b.lines.push_back({0x1010, b.str("/s.cpp"), 12});
  b.lines.push_back({0x1100, 0, 0});
  return b;
}

TEST(PreloadTables, LookupsOnAValidBlob) {
  std::vector<char> blob = sample().build();
  TableView v = make_table_view(blob.data(), blob.size());
  ASSERT_TRUE(v.valid());
  EXPECT_STREQ(v.str(v.coroutine_at(0x1080)->name), "leaf(int)");
  EXPECT_NE(v.coroutine_at(0x3010), nullptr);  // the cold part belongs to it too
  EXPECT_EQ(v.coroutine_at(0x1100), nullptr);
  bool cleanup = false;
  EXPECT_NE(v.coroutine_by_destroy(0x1200, &cleanup), nullptr);
  EXPECT_TRUE(cleanup);
  EXPECT_EQ(v.coroutine_by_destroy(0x1201, &cleanup), nullptr);
  EXPECT_STREQ(v.str(v.symbol_at(0x2010)->name), "helper()");
  EXPECT_EQ(v.symbol_at(0x2040), nullptr);
  EXPECT_EQ(v.line_at(0x1014)->line, 12u);
  EXPECT_EQ(v.line_at(0x1100), nullptr);  // end of sequence
  EXPECT_EQ(v.point(v.coroutines[0], 4)->line, 12u);
  EXPECT_EQ(v.point(v.coroutines[0], 6), nullptr);
}

TEST(PreloadTables, CorruptBlobsAreRejected) {
  std::vector<char> good = sample().build();
  auto rejected = [](std::vector<char> b) { return !make_table_view(b.data(), b.size()).valid(); };
  EXPECT_TRUE(rejected(std::vector<char>(good.begin(), good.end() - 1)));  // truncated
  ASSERT_GT(good.size(), sizeof(pt::TableHeader));
  std::vector<char> b = good;
  b.at(good.size() - 1) = 'x';  // strings not terminated
  EXPECT_TRUE(rejected(b));
  BlobBuilder bad = sample();
  bad.coros[0].name = 100000;  // string out of range
  EXPECT_TRUE(rejected(bad.build()));
  bad = sample();
  bad.coros[0].points_count = 3;  // points past the array
  EXPECT_TRUE(rejected(bad.build()));
  bad = sample();
  bad.keys[0].coroutine = 1;  // no such coroutine
  EXPECT_TRUE(rejected(bad.build()));
  bad = sample();
  std::swap(bad.syms[0], bad.syms[1]);  // unsorted
  EXPECT_TRUE(rejected(bad.build()));
  b = good;
  b[0] ^= 1;  // magic
  EXPECT_TRUE(rejected(b));
}

// ---- resume-function scan ----------------------------------------------------------------------

TEST(PreloadElfScan, FindsExactlyTheCatalogsResumeFunctionsInEveryFixture) {
  for (const char* variant : {"gcc12-O0", "gcc12-O2", "clang14-O2", "clang19-O0", "clang19-O2"}) {
    SCOPED_TRACE(variant);
    std::string path = std::string(ASYNCPROBE_FIXTURE_DIR) + "/" + variant + "/chain";
    std::set<std::pair<uint64_t, bool>> scanned;
    for (const auto& r : scan_resume_functions(path, "")) scanned.insert({r.vaddr, r.gcc});
    symbolizer::ModuleCache cache(symbolizer::DebugSearchPaths{});
    std::string err;
    auto module = cache.get(path, path, &err);
    ASSERT_NE(module, nullptr) << err;
    symbolizer::CoroCatalog catalog(module);
    std::set<std::pair<uint64_t, bool>> catalogued;
    for (const auto& fn : catalog.functions())
      catalogued.insert({fn.resume, fn.compiler == symbolizer::CoroCompiler::kGcc});
    EXPECT_EQ(scanned, catalogued);
    EXPECT_EQ(scanned.size(), 5u);
  }
}

TEST(PreloadElfScan, AStrippedObjectIsScannedThroughItsDebugFile) {
  std::string dir = std::string(ASYNCPROBE_FIXTURE_DIR) + "/gcc12-O2/";
  auto full = scan_resume_functions(dir + "chain", "");
  auto stripped = scan_resume_functions(dir + "stripped/chain", "");
  ASSERT_EQ(full.size(), 5u);
  ASSERT_EQ(stripped.size(), full.size());
  for (size_t i = 0; i < full.size(); ++i) EXPECT_EQ(stripped[i].vaddr, full[i].vaddr);
  auto by_id =
      scan_resume_functions(dir + "stripped-buildid/chain", dir + "stripped-buildid/debug");
  ASSERT_EQ(by_id.size(), full.size());
  EXPECT_TRUE(scan_resume_functions(dir + "stripped-buildid/chain", "").empty());
  EXPECT_TRUE(scan_resume_functions(dir + "stripped-nodebug/chain", "").empty());
  EXPECT_TRUE(scan_resume_functions("/nonexistent", "").empty());
}

// ---- options, formatting -----------------------------------------------------------------------

TEST(PreloadConfig, ParsesTheOptionsRunPasses) {
  Config c;
  EXPECT_TRUE(parse_options(
      "no-crash,socket,trace-from-start,blocking=2500000,follow-children,json,crash-wait=5000",
      &c));
  EXPECT_FALSE(c.crash);
  EXPECT_TRUE(c.socket);
  EXPECT_TRUE(c.trace);
  EXPECT_TRUE(c.trace_from_start);
  EXPECT_TRUE(c.blocking);
  EXPECT_EQ(c.blocking_threshold_ns, 2'500'000u);
  EXPECT_TRUE(c.follow_children);
  EXPECT_TRUE(c.json);
  EXPECT_EQ(c.crash_wait_ms, 5000);
  Config d;
  EXPECT_FALSE(parse_options("blocking=soon", &d));
  EXPECT_FALSE(parse_options("crash-wait=99999999", &d));
  EXPECT_TRUE(parse_options("unknown-word,,", &d));
  EXPECT_TRUE(d.crash);
  EXPECT_FALSE(d.trace);
}

TEST(PreloadText, FormatsWithoutAllocating) {
  char buf[64];
  Text t(buf, sizeof buf);
  t.str("pc ").hex(0xabc, 6).ch(' ').dec(-42).ch(' ').udec(18446744073709551615ull);
  EXPECT_EQ(std::string(t.data(), t.size()), "pc 0x000abc -42 18446744073709551615");
  t.clear();
  t.str("ab").pad_to(5).str("c");
  EXPECT_EQ(std::string(t.data(), t.size()), "ab   c");
  char small[12];
  Text s(small, sizeof small);
  s.str("0123456789abcdef");
  EXPECT_EQ(std::string(s.data(), s.size()), "01234567...\n");
  EXPECT_STREQ(signal_code_text(SIGSEGV, SEGV_MAPERR), "address not mapped");
  EXPECT_STREQ(signal_code_text(SIGABRT, SI_TKILL), "sent by tkill/raise");
}

TEST(PreloadSafeRead, NeverFaults) {
  uint64_t v = 0x1122334455667788ull, out = 0;
  EXPECT_TRUE(safe_read(reinterpret_cast<uint64_t>(&v), &out, sizeof out));
  EXPECT_EQ(out, v);
  EXPECT_FALSE(safe_read(0, &out, 8));
  EXPECT_FALSE(safe_read(8, &out, 8));
  EXPECT_FALSE(safe_read(~uint64_t{0} - 4, &out, 8));
}

// The overlay serves an earlier copy of a range (a stack at a throw); reads that straddle it take
// the rest from memory, and reads it does not cover are untouched.
TEST(PreloadSafeRead, OverlayServesTheCopyAndOnlyTheCopy) {
  unsigned char live[64], copy[16], out[64];
  for (int i = 0; i < 64; ++i) live[i] = static_cast<unsigned char>(i);
  for (int i = 0; i < 16; ++i) copy[i] = static_cast<unsigned char>(0xa0 + i);
  const uint64_t base = reinterpret_cast<uint64_t>(live);
  set_read_overlay(base + 16, copy, sizeof copy);  // covers live[16..32)
  ASSERT_TRUE(safe_read(base + 20, out, 4));
  EXPECT_EQ(out[0], 0xa4);
  EXPECT_EQ(out[3], 0xa7);
  ASSERT_TRUE(safe_read(base + 8, out, 32));  // 8 live, 16 copied, 8 live
  for (int i = 0; i < 32; ++i) {
    int at = 8 + i;
    EXPECT_EQ(out[i], at >= 16 && at < 32 ? 0xa0 + (at - 16) : at) << at;
  }
  ASSERT_TRUE(safe_read(base + 40, out, 8));
  EXPECT_EQ(out[0], 40);
  EXPECT_FALSE(safe_read(0, out, 8));
  clear_read_overlay();
  ASSERT_TRUE(safe_read(base + 16, out, 4));
  EXPECT_EQ(out[0], 16);
}

}  // namespace
}  // namespace asyncprobe::preload
