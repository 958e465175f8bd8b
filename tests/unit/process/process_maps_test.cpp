// /proc/PID/maps parsing on hostile text, and the helpers on this process's real mappings.
#include "userspace/process/process_maps.h"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <link.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace asyncprobe {
namespace {

process::Mapping parse_ok(const std::string& line) {
  auto m = process::parse_maps_line(line);
  EXPECT_TRUE(m) << line;
  return m ? *m : process::Mapping{};
}

TEST(ParseMapsLine, ParsesEveryKernelShape) {
  process::Mapping m =
      parse_ok("55d0c8a00000-55d0c8a21000 rw-p 00000000 00:00 0                          [heap]");
  EXPECT_EQ(m.start, 0x55d0c8a00000u);
  EXPECT_EQ(m.end, 0x55d0c8a21000u);
  EXPECT_EQ(m.size(), 0x21000u);
  EXPECT_TRUE(m.perms.read);
  EXPECT_TRUE(m.perms.write);
  EXPECT_FALSE(m.perms.exec);
  EXPECT_FALSE(m.perms.shared);
  EXPECT_EQ(m.offset, 0u);
  EXPECT_EQ(m.dev_major, 0u);
  EXPECT_EQ(m.dev_minor, 0u);
  EXPECT_EQ(m.inode, 0u);
  EXPECT_EQ(m.path, "[heap]");
  EXPECT_FALSE(m.deleted);
  EXPECT_FALSE(m.file_backed());

  m = parse_ok(
      "7f1c2e428000-7f1c2e5bd000 r-xp 00028000 fd:01 1234567                    "
      "/usr/lib/x86_64-linux-gnu/libc.so.6");
  EXPECT_TRUE(m.perms.read);
  EXPECT_FALSE(m.perms.write);
  EXPECT_TRUE(m.perms.exec);
  EXPECT_EQ(m.offset, 0x28000u);
  EXPECT_EQ(m.dev_major, 0xfdu);
  EXPECT_EQ(m.dev_minor, 1u);
  EXPECT_EQ(m.inode, 1234567u);
  EXPECT_EQ(m.path, "/usr/lib/x86_64-linux-gnu/libc.so.6");
  EXPECT_TRUE(m.file_backed());

  // Spaces inside the path, a shared mapping, and the deleted marker.
  m = parse_ok(
      "7f1c2e600000-7f1c2e601000 r-xs 00001000 08:02 42    "
      "/tmp/dir with  spaces/lib name.so (deleted)");
  EXPECT_TRUE(m.perms.shared);
  EXPECT_EQ(m.path, "/tmp/dir with  spaces/lib name.so");
  EXPECT_TRUE(m.deleted);
  EXPECT_EQ(m.dev_major, 8u);
  EXPECT_EQ(m.dev_minor, 2u);

  m = parse_ok("7f0000000000-7f0000001000 ---p 00000000 00:00 0 ");
  EXPECT_EQ(m.path, "");
  EXPECT_FALSE(m.perms.read || m.perms.write || m.perms.exec);

  m = parse_ok("7f0000000000-7f0000001000 ---p 00000000 00:00 0");
  EXPECT_EQ(m.path, "");

  m = parse_ok("ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0  [vsyscall]");
  EXPECT_EQ(m.start, 0xffffffffff600000u);
  EXPECT_EQ(m.path, "[vsyscall]");

  m = parse_ok("7f0000000000-7f0000004000 rw-p 00000000 00:00 0   [anon:my arena]");
  EXPECT_EQ(m.path, "[anon:my arena]");

  m = parse_ok("7f0000000000-7f0000004000 rw-s 00000000 00:01 9  /memfd:ring (deleted)");
  EXPECT_EQ(m.path, "/memfd:ring");
  EXPECT_TRUE(m.deleted);

  // A file literally named " (deleted)" is all suffix: kept as the path, not stripped to "".
  m = parse_ok("7f0000000000-7f0000004000 r--p 00000000 00:01 9  (deleted)");
  EXPECT_EQ(m.path, "(deleted)");
  EXPECT_FALSE(m.deleted);

  // Uppercase hex and 12-bit majors are accepted.
  m = parse_ok("7F0000000000-7F0000004000 r--p 0000A000 103:0f 9 /x");
  EXPECT_EQ(m.start, 0x7f0000000000u);
  EXPECT_EQ(m.offset, 0xa000u);
  EXPECT_EQ(m.dev_major, 0x103u);
  EXPECT_EQ(m.dev_minor, 0xfu);
}

TEST(ParseMapsLine, RejectsHostileLines) {
  const std::vector<std::string> bad = {
      "",
      " ",
      "garbage",
      "1000-0 rw-p 00000000 00:00 0",                           // end before start
      "1000-1000 rw-p 00000000 00:00 0",                        // empty
      "1001-2000 rw-p 00000000 00:00 0",                        // start not page-aligned
      "1000-2001 rw-p 00000000 00:00 0",                        // end not page-aligned
      "1000-2000 rwxq 00000000 00:00 0",                        // bad sharing flag
      "1000-2000 wr-p 00000000 00:00 0",                        // flags out of order
      "1000-2000 rw-p- 00000000 00:00 0",                       // five-character perms
      "1000-2000 r-p 00000000 00:00 0",                         // three-character perms
      "1000-2000 rw-p 00000001 00:00 0",                        // offset not page-aligned
      "1000-2000 rw-p 0000000g 00:00 0",                        // bad hex
      "1000-2000 rw-p 00000000 0000 0",                         // device without colon
      "1000-2000 rw-p 00000000 :00 0",                          // empty major
      "1000-2000 rw-p 00000000 00: 0",                          // empty minor
      "1000-2000 rw-p 00000000 00:00",                          // inode missing
      "1000-2000 rw-p 00000000 00:00 abc",                      // inode not decimal
      "1000-2000 rw-p 00000000 00:00 -1",                       // negative inode
      "1000-2000 rw-p 00000000 00:00 99999999999999999999999",  // overflows u64
      "1000-2000 rw-p 00000000 00:00 18446744073709551616",     // 2^64
      "10000000000000000000-10000000000001000 rw-p 0 00:00 0",  // 17+ hex digits
      "-2000 rw-p 00000000 00:00 0",
      "1000- rw-p 00000000 00:00 0",
      "1000 rw-p 00000000 00:00 0",
      "0x1000-0x2000 rw-p 00000000 00:00 0",
      "1000-2000 rw-p 00000000 00:00 0 /" + std::string(9000, 'a'),  // path past PATH_MAX * 2
      std::string(20000, '1'),
  };
  for (const auto& b : bad) EXPECT_FALSE(process::parse_maps_line(b)) << b.substr(0, 80);
  std::string nul = "1000-2000 rw-p 00000000 00:00 0";
  nul[1] = '\0';  // NUL inside the address
  EXPECT_FALSE(process::parse_maps_line(nul));
}

TEST(ParseMaps, CountsSkippedLinesAndSorts) {
  const std::string text =
      "7f0000002000-7f0000003000 rw-p 00000000 00:00 0 [anon:b]\n"
      "not a mapping\n"
      "\n"
      "7f0000000000-7f0000001000 r--p 00000000 08:01 5 /lib/a.so\n"
      "7f0000000000-7f0000001000 r--p 00000000 08:01 5 /lib/a.so\n"  // torn read: repeated
      "7f0000000800-7f0000001800 r--p 00000000 08:01 5 /lib/x\n"     // unaligned: malformed
      "7f0000000000-7f0000002000 r--p 00000000 08:01 5 /lib/c\n"     // overlaps the first
      "7f0000005000-7f0000006000 rw-p 00000000 00:00 0\n"
      "7f0000007000-7f0000008000 rw-p 00000000 00:00 0";  // unterminated tail
  process::MapsParseResult r = process::parse_maps(text);
  ASSERT_EQ(r.mappings.size(), 3u);
  EXPECT_EQ(r.mappings[0].start, 0x7f0000000000u);
  EXPECT_EQ(r.mappings[0].path, "/lib/a.so");
  EXPECT_EQ(r.mappings[1].start, 0x7f0000002000u);
  EXPECT_EQ(r.mappings[2].start, 0x7f0000005000u);
  EXPECT_EQ(r.skipped_lines, 6u);  // garbage, empty, unaligned, repeat, overlap, tail
  EXPECT_FALSE(r.truncated);

  EXPECT_TRUE(process::parse_maps("").mappings.empty());
  EXPECT_EQ(process::parse_maps("").skipped_lines, 0u);
  std::string many;
  for (int i = 0; i < 10000; ++i) many += "\x01\x02 garbage\n";
  EXPECT_EQ(process::parse_maps(many).skipped_lines, 10000u);
}

std::vector<process::Mapping> synthetic_maps() {
  return process::parse_maps(
             "400000-401000 r--p 00000000 08:01 7 /usr/bin/app\n"
             "401000-402000 r-xp 00001000 08:01 7 /usr/bin/app\n"
             "402000-403000 rw-p 00002000 08:01 7 /usr/bin/app\n"
             "403000-405000 rw-p 00000000 00:00 0 [heap]\n"
             "7f0000000000-7f0000100000 rw-p 00000000 00:00 0\n"
             "7f0000100000-7f0000101000 ---p 00000000 00:00 0\n"
             "7f0000101000-7f0000901000 rw-p 00000000 00:00 0\n"
             "7f0000a00000-7f0000a01000 rw-s 00000000 00:01 3 /dev/shm/seg\n"
             "7f0000b00000-7f0000b01000 rw-s 00000000 00:05 88 /dev/dri/card0\n"
             "7f0000c00000-7f0000c01000 rw-p 00000000 00:0e 9 anon_inode:[perf_event]\n"
             "7f0000d00000-7f0000d01000 rw-p 00000000 00:00 0 [anon:arena]\n"
             "7f0000e00000-7f0000e01000 rw-s 00000000 00:01 4 [anon_shmem:ring]\n"
             "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]\n"
             "7ffd00100000-7ffd00102000 r--p 00000000 00:00 0 [vvar]\n"
             "7ffd00102000-7ffd00104000 r-xp 00000000 00:00 0 [vdso]\n"
             "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]\n")
      .mappings;
}

TEST(ProcessMaps, ClassifiesRegions) {
  auto maps = synthetic_maps();
  ASSERT_EQ(maps.size(), 16u);
  const std::vector<process::RegionKind> want = {
      process::RegionKind::kFileReadOnly, process::RegionKind::kFileCode,
      process::RegionKind::kFileData,     process::RegionKind::kHeap,
      process::RegionKind::kAnonymous,    process::RegionKind::kNoAccess,
      process::RegionKind::kAnonymous,    process::RegionKind::kShared,
      process::RegionKind::kDevice,       process::RegionKind::kDevice,
      process::RegionKind::kAnonymous,    process::RegionKind::kShared,
      process::RegionKind::kMainStack,    process::RegionKind::kSpecial,
      process::RegionKind::kSpecial,      process::RegionKind::kSpecial,
  };
  for (size_t i = 0; i < maps.size(); ++i) {
    EXPECT_EQ(process::classify(maps[i]), want[i])
        << i << " " << maps[i].path << " " << to_string(process::classify(maps[i]));
  }
}

std::vector<uint64_t> starts(const std::vector<process::Mapping>& v) {
  std::vector<uint64_t> s;
  for (const auto& m : v) s.push_back(m.start);
  return s;
}

TEST(ProcessMaps, ScanRegions) {
  auto maps = synthetic_maps();
  EXPECT_EQ(starts(process::scan_regions(maps)),
            (std::vector<uint64_t>{0x403000, 0x7f0000000000, 0x7f0000101000, 0x7f0000d00000,
                                   0x7ffd00000000}));
  process::ScanRegionOptions all;
  all.include_file_data = true;
  all.include_shared = true;
  EXPECT_EQ(
      starts(process::scan_regions(maps, all)),
      (std::vector<uint64_t>{0x402000, 0x403000, 0x7f0000000000, 0x7f0000101000, 0x7f0000a00000,
                             0x7f0000d00000, 0x7f0000e00000, 0x7ffd00000000}));
}

TEST(ProcessMaps, FindMappingAndStacks) {
  auto maps = synthetic_maps();
  EXPECT_EQ(process::find_mapping(maps, 0x3fffff), nullptr);
  ASSERT_NE(process::find_mapping(maps, 0x400000), nullptr);
  EXPECT_EQ(process::find_mapping(maps, 0x400000)->start, 0x400000u);
  EXPECT_EQ(process::find_mapping(maps, 0x400fff)->start, 0x400000u);
  EXPECT_EQ(process::find_mapping(maps, 0x401000)->start, 0x401000u);
  EXPECT_EQ(process::find_mapping(maps, 0x405000), nullptr);  // the gap after [heap]
  EXPECT_EQ(process::find_mapping(maps, UINT64_MAX), nullptr);
  EXPECT_EQ(process::find_mapping({}, 0x400000), nullptr);

  ASSERT_NE(process::main_stack(maps), nullptr);
  EXPECT_EQ(process::main_stack(maps)->start, 0x7ffd00000000u);
  EXPECT_EQ(process::stack_mapping_for(maps, 0), nullptr);
  EXPECT_EQ(process::stack_mapping_for(maps, 0x401800), nullptr);        // code is no stack
  EXPECT_EQ(process::stack_mapping_for(maps, 0x7f0000100800), nullptr);  // guard page
  ASSERT_NE(process::stack_mapping_for(maps, 0x7f0000900ff8), nullptr);
  EXPECT_EQ(process::stack_mapping_for(maps, 0x7f0000900ff8)->start, 0x7f0000101000u);
  EXPECT_EQ(process::stack_mapping_for(maps, 0x7ffd00020000)->start, 0x7ffd00000000u);
}

TEST(ProcessMaps, RealThreadStacks) {
  int main_local = 1;
  bool main_found = false;
  bool main_is_stack = false;
  // Read the maps while the thread runs, so its stack is certainly mapped.
  std::thread([&] {
    int x = 2;
    process::MapsParseResult r;
    ASSERT_EQ(process::read_maps_file("/proc/self/maps", &r), 0);
    EXPECT_EQ(r.skipped_lines, 0u);
    const process::Mapping* ms =
        process::stack_mapping_for(r.mappings, reinterpret_cast<uint64_t>(&main_local));
    ASSERT_NE(ms, nullptr);
    main_found = true;
    main_is_stack =
        ms == process::main_stack(r.mappings) && classify(*ms) == process::RegionKind::kMainStack;
    const process::Mapping* ts =
        process::stack_mapping_for(r.mappings, reinterpret_cast<uint64_t>(&x));
    ASSERT_NE(ts, nullptr);
    EXPECT_EQ(process::classify(*ts), process::RegionKind::kAnonymous);
    EXPECT_NE(ts, ms);
    EXPECT_TRUE(ts->contains(reinterpret_cast<uint64_t>(&x)));
  }).join();
  EXPECT_TRUE(main_found);
  EXPECT_TRUE(main_is_stack);
  process::MapsParseResult r;
  EXPECT_EQ(process::read_maps_file("/proc/999999999/maps", &r), ENOENT);
}

process::MappedObject object_of(const std::string& text) {
  auto groups = process::group_objects(process::parse_maps(text).mappings);
  EXPECT_EQ(groups.size(), 1u);
  return groups.empty() ? process::MappedObject{} : groups[0];
}

// Layout of a typical GNU ld PIE: R, RX, R, and a RW segment whose first page becomes RELRO.
const std::vector<process::LoadSegment> kPie = {
    {0x0, 0x0, 0x5e0, 0x5e0, PF_R},
    {0x1000, 0x1000, 0x1d5, 0x1d5, PF_R | PF_X},
    {0x2000, 0x2000, 0x154, 0x154, PF_R},
    {0x3df0, 0x2df0, 0x228, 0x1230, PF_R | PF_W},
};

TEST(LoadBias, PieWithRelroSplit) {
  process::MappedObject o = object_of(
      "55d0c8a00000-55d0c8a01000 r--p 00000000 08:01 7 /app\n"
      "55d0c8a01000-55d0c8a02000 r-xp 00001000 08:01 7 /app\n"
      "55d0c8a02000-55d0c8a03000 r--p 00002000 08:01 7 /app\n"
      "55d0c8a03000-55d0c8a04000 r--p 00002000 08:01 7 /app\n"
      "55d0c8a04000-55d0c8a05000 rw-p 00003000 08:01 7 /app\n"
      "55d0c8a05000-55d0c8a06000 rw-p 00000000 00:00 0\n");
  ASSERT_EQ(o.mappings.size(), 5u);
  EXPECT_TRUE(o.has_exec());
  process::LoadBiasResult r = process::compute_load_bias(o, kPie);
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.bias, 0x55d0c8a00000u);
  EXPECT_EQ(r.matched, 5u);
  EXPECT_EQ(r.unexplained, 0u);
  EXPECT_EQ(r.error, "");
}

TEST(LoadBias, NonPieAndLoaderHoles) {
  // A non-PIE executable (bias 0) and a library whose loader left an inaccessible hole.
  process::MappedObject exe = object_of(
      "400000-401000 r--p 00000000 08:01 7 /app\n"
      "401000-402000 r-xp 00001000 08:01 7 /app\n");
  std::vector<process::LoadSegment> segs = {{0x400000, 0, 0x1000, 0x1000, PF_R},
                                            {0x401000, 0x1000, 0x800, 0x800, PF_R | PF_X}};
  process::LoadBiasResult r = process::compute_load_bias(exe, segs);
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.bias, 0u);

  process::MappedObject lib = object_of(
      "7f0000000000-7f0000001000 r--p 00000000 08:01 9 /lib.so\n"
      "7f0000001000-7f0000002000 r-xp 00001000 08:01 9 /lib.so\n"
      "7f0000002000-7f0000010000 ---p 00002000 08:01 9 /lib.so\n"
      "7f0000010000-7f0000011000 rw-p 00010000 08:01 9 /lib.so\n");
  std::vector<process::LoadSegment> lsegs = {{0, 0, 0x1000, 0x1000, PF_R},
                                             {0x1000, 0x1000, 0x1000, 0x1000, PF_R | PF_X},
                                             {0x10000, 0x10000, 0x100, 0x200, PF_R | PF_W}};
  r = process::compute_load_bias(lib, lsegs);
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.bias, 0x7f0000000000u);
  EXPECT_EQ(r.matched, 3u);
}

TEST(LoadBias, LldSharedPageIsDisambiguatedByVotes) {
  // lld without separate-loadable-segments: R and RX share file page 0 at different vaddrs, so
  // each mapping fits two segments; only one bias explains both.
  std::vector<process::LoadSegment> segs = {{0x0, 0x0, 0x5e0, 0x5e0, PF_R},
                                            {0x15e0, 0x5e0, 0x200, 0x200, PF_R | PF_X}};
  process::MappedObject o = object_of(
      "7f0000000000-7f0000001000 r--p 00000000 08:01 9 /lld.so\n"
      "7f0000001000-7f0000002000 r-xp 00000000 08:01 9 /lld.so\n");
  ASSERT_EQ(o.mappings.size(), 2u);
  process::LoadBiasResult r = process::compute_load_bias(o, segs);
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.bias, 0x7f0000000000u);
  EXPECT_EQ(r.matched, 2u);

  // A lone mapping that two segments explain equally is refused, not guessed.
  process::MappedObject lone =
      object_of("7f0000001000-7f0000002000 r--p 00000000 08:01 9 /lld.so\n");
  std::vector<process::LoadSegment> two_r = {{0x0, 0x0, 0x5e0, 0x5e0, PF_R},
                                             {0x15e0, 0x5e0, 0x200, 0x200, PF_R}};
  r = process::compute_load_bias(lone, two_r);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "ambiguous: several load biases explain the mappings equally well");
}

TEST(LoadBias, RejectsWhatIsNotTheLoadedImage) {
  // Whole-file read-only mmap of the same ELF (what a symbolizer inside the target may do).
  process::MappedObject stray = object_of("7f0000000000-7f0000010000 r--p 00000000 08:01 7 /app\n");
  process::LoadBiasResult r = process::compute_load_bias(stray, kPie);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "no mapping lies inside a PT_LOAD segment");

  // A first-page-only mmap fits segment 0 but has no executable mapping.
  process::MappedObject header_only =
      object_of("7f0000000000-7f0000001000 r--p 00000000 08:01 7 /app\n");
  r = process::compute_load_bias(header_only, kPie);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "no executable mapping: not a loaded image of this ELF");

  // One mapping placed where the layout says it cannot be.
  process::MappedObject moved = object_of(
      "55d0c8a00000-55d0c8a01000 r--p 00000000 08:01 7 /app\n"
      "55d0c8a01000-55d0c8a02000 r-xp 00001000 08:01 7 /app\n"
      "55d0c8a09000-55d0c8a0a000 r--p 00002000 08:01 7 /app\n");
  r = process::compute_load_bias(moved, kPie);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.bias, 0x55d0c8a00000u);
  EXPECT_EQ(r.matched, 2u);
  EXPECT_EQ(r.unexplained, 1u);
  EXPECT_EQ(r.error, "1 mapping(s) disagree with the PT_LOAD layout");
}

TEST(LoadBias, HostileSegmentsAndArguments) {
  process::MappedObject o = object_of(
      "7f0000000000-7f0000001000 r--p 00000000 08:01 9 /x\n"
      "7f0000001000-7f0000002000 r-xp 00001000 08:01 9 /x\n");
  EXPECT_EQ(process::compute_load_bias(o, {}).error, "no PT_LOAD segments");
  EXPECT_EQ(process::compute_load_bias(o, kPie, 3).error, "page size is not a power of two");
  EXPECT_EQ(process::compute_load_bias(o, kPie, 0).error, "page size is not a power of two");
  std::vector<process::LoadSegment> many(5000, process::LoadSegment{0, 0, 0x1000, 0x1000, PF_R});
  EXPECT_EQ(process::compute_load_bias(o, many).error, "too many PT_LOAD segments");
  const std::vector<process::LoadSegment> hostile = {
      {0xfffffffffffff000, 0, 0x1000, 0x2000, PF_R | PF_X},  // vaddr + memsz overflows
      {0, 0xfffffffffffff000, 0x2000, 0x2000, PF_R | PF_X},  // offset + filesz overflows
      {0x1000, 0x1000, 0x2000, 0x1000, PF_R | PF_X},         // filesz > memsz
      {0x1234, 0x1000, 0x100, 0x100, PF_R | PF_X},           // vaddr, offset disagree mod page
      {0, 0, 0, 0, PF_R},                                    // empty
  };
  process::LoadBiasResult r = process::compute_load_bias(o, hostile);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error, "no mapping lies inside a PT_LOAD segment");
  process::MappedObject none = object_of("7f0000000000-7f0000001000 ---p 00000000 08:01 9 /x\n");
  EXPECT_EQ(process::compute_load_bias(none, kPie).error, "no accessible mappings");
}

TEST(GroupObjects, SplitsInstancesAndSkipsAnonymous) {
  auto groups = process::group_objects(
      process::parse_maps("400000-401000 r--p 00000000 08:01 7 /app\n"
                          "401000-402000 r-xp 00001000 08:01 7 /app\n"
                          "402000-403000 rw-p 00000000 00:00 0\n"
                          "7f0000000000-7f0000001000 r--p 00000000 08:01 9 /lib.so\n"
                          "7f0000001000-7f0000002000 r-xp 00001000 08:01 9 /lib.so\n"
                          "7f0000100000-7f0000101000 r--p 00000000 08:01 9 /lib.so\n"
                          "7f0000101000-7f0000102000 r-xp 00001000 08:01 9 /lib.so\n"
                          "7f0000200000-7f0000201000 r--p 00000000 08:01 10 /lib.so\n"
                          "7f0000300000-7f0000301000 r--p 00000000 08:01 11 /gone.so (deleted)\n")
          .mappings);
  ASSERT_EQ(groups.size(), 5u);
  EXPECT_EQ(groups[0].path, "/app");
  EXPECT_EQ(groups[0].mappings.size(), 2u);
  EXPECT_EQ(groups[0].low(), 0x400000u);
  EXPECT_EQ(groups[0].high(), 0x402000u);
  EXPECT_EQ(groups[1].path, "/lib.so");
  EXPECT_EQ(groups[1].low(), 0x7f0000000000u);
  EXPECT_EQ(groups[2].path, "/lib.so");  // second instance: offset 0 seen again
  EXPECT_EQ(groups[2].low(), 0x7f0000100000u);
  EXPECT_EQ(groups[2].mappings.size(), 2u);
  EXPECT_EQ(groups[3].inode, 10u);  // same path, another file
  EXPECT_FALSE(groups[3].has_exec());
  EXPECT_EQ(groups[4].path, "/gone.so");
  EXPECT_TRUE(groups[4].deleted);
}

TEST(GroupObjects, LldSharedPagesAndLoaderHolesStayOneInstance) {
  auto groups =
      process::group_objects(process::parse_maps(
                                 // lld: R and RX both at file offset 0, adjacent.
                                 "7f0000000000-7f0000001000 r--p 00000000 08:01 9 /lld.so\n"
                                 "7f0000001000-7f0000002000 r-xp 00000000 08:01 9 /lld.so\n"
                                 // loader hole with a linear offset beyond the next segment's
                                 "7f0000002000-7f0000005000 ---p 00002000 08:01 9 /lld.so\n"
                                 "7f0000005000-7f0000006000 rw-p 00001000 08:01 9 /lld.so\n"
                                 // a detached header-only mmap of the same file
                                 "7f0000100000-7f0000101000 r--p 00000000 08:01 9 /lld.so\n"
                                 // and one placed just below an image of another file
                                 "7f0000200000-7f0000201000 r--p 00000000 08:01 5 /b.so\n"
                                 "7f0000300000-7f0000301000 r--p 00000000 08:01 5 /b.so\n")
                                 .mappings);
  ASSERT_EQ(groups.size(), 4u);
  EXPECT_EQ(groups[0].mappings.size(), 4u);
  EXPECT_EQ(groups[1].low(), 0x7f0000100000u);
  EXPECT_EQ(groups[2].low(), 0x7f0000200000u);
  EXPECT_EQ(groups[3].low(), 0x7f0000300000u);
  std::vector<process::LoadSegment> segs = {{0x0, 0x0, 0x5e0, 0x5e0, PF_R},
                                            {0x15e0, 0x5e0, 0x200, 0x200, PF_R | PF_X},
                                            {0x5000, 0x1000, 0x100, 0x100, PF_R | PF_W}};
  process::LoadBiasResult r = process::compute_load_bias(groups[0], segs);
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.bias, 0x7f0000000000u);
  EXPECT_EQ(r.matched, 3u);
  EXPECT_FALSE(process::compute_load_bias(groups[1], segs).ok);
}

// Checks compute_load_bias against the dynamic loader's own answer for every loaded object.
struct LoadedObject {
  std::string path;
  uint64_t bias;
  std::vector<process::LoadSegment> loads;
};

int collect(struct dl_phdr_info* info, size_t, void* data) {
  auto* out = static_cast<std::vector<LoadedObject>*>(data);
  LoadedObject o;
  std::string name = info->dlpi_name != nullptr ? info->dlpi_name : "";
  if (name.empty()) {
    char buf[PATH_MAX];
    ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf);
    if (n <= 0) return 0;
    name.assign(buf, static_cast<size_t>(n));
  }
  char real[PATH_MAX];
  if (::realpath(name.c_str(), real) == nullptr) return 0;  // the vdso has no file
  o.path = real;
  o.bias = info->dlpi_addr;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const auto& p = info->dlpi_phdr[i];
    if (p.p_type == PT_LOAD) {
      o.loads.push_back({p.p_vaddr, p.p_offset, p.p_filesz, p.p_memsz, p.p_flags});
    }
  }
  out->push_back(o);
  return 0;
}

TEST(LoadBias, MatchesTheDynamicLoaderForEveryObject) {
  std::vector<LoadedObject> loaded;
  dl_iterate_phdr(collect, &loaded);
  ASSERT_GE(loaded.size(), 3u);  // the test, libstdc++, libc at least

  // Also map our own executable as a symbolizer would: a second, non-loaded instance.
  int fd = ::open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  struct stat sb;
  ASSERT_EQ(::fstat(fd, &sb), 0);
  void* stray = ::mmap(nullptr, static_cast<size_t>(sb.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  ASSERT_NE(stray, MAP_FAILED);

  process::MapsParseResult r;
  ASSERT_EQ(process::read_maps_file("/proc/self/maps", &r), 0);
  auto groups = process::group_objects(r.mappings);
  for (const auto& lo : loaded) {
    SCOPED_TRACE(lo.path);
    size_t ok = 0, instances = 0;
    for (const auto& g : groups) {
      char real[PATH_MAX];
      if (::realpath(g.path.c_str(), real) == nullptr || lo.path != real) continue;
      ++instances;
      process::LoadBiasResult b = process::compute_load_bias(g, lo.loads);
      if (b.ok) {
        ++ok;
        EXPECT_EQ(b.bias, lo.bias);
        EXPECT_EQ(b.unexplained, 0u);
      }
    }
    EXPECT_EQ(ok, 1u);  // exactly the loaded instance, never the stray mmap
    if (lo.path == loaded[0].path) {
      EXPECT_EQ(instances, 2u);  // loaded image plus our stray mmap
    }
  }
  ::munmap(stray, static_cast<size_t>(sb.st_size));
}

}  // namespace
}  // namespace asyncprobe
