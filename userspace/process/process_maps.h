// /proc/PID/maps: parsing (hostile lines skipped and counted), the objects the target maps and
// their load bias, the regions worth scanning, and which mapping is a thread's stack.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace asyncprobe::process {

struct MapPerms {
  bool read = false;
  bool write = false;
  bool exec = false;
  bool shared = false;  // 's' rather than 'p'
};

struct Mapping {
  uint64_t start = 0;
  uint64_t end = 0;  // exclusive
  uint64_t offset = 0;
  MapPerms perms;
  uint32_t dev_major = 0;
  uint32_t dev_minor = 0;
  uint64_t inode = 0;
  std::string path;      // as printed by the kernel, without the " (deleted)" suffix
  bool deleted = false;  // the line ended in " (deleted)"

  uint64_t size() const { return end - start; }
  bool contains(uint64_t addr) const { return addr >= start && addr < end; }
  // Backed by a file we might open (has an inode and an absolute path).
  bool file_backed() const { return inode != 0 && !path.empty() && path[0] == '/'; }
};

struct MapsParseResult {
  std::vector<Mapping> mappings;  // sorted by start, non-overlapping
  size_t skipped_lines = 0;       // malformed lines, plus overlaps from a torn read
  bool truncated = false;         // the file was longer than we agreed to read
};

// One line (without the newline). nullopt for anything malformed.
std::optional<Mapping> parse_maps_line(std::string_view line);
// A whole maps file. Never throws on content; skipped lines are counted.
MapsParseResult parse_maps(std::string_view text);
// Reads /proc/PID/maps (absolute path) with a size cap; returns 0 or an errno. Prefer
// TargetProcess::read_maps(), which is safe against PID reuse.
int read_maps_file(const std::string& path, MapsParseResult* out);
constexpr size_t kMaxMapsBytes = 64u << 20;  // ~65k mappings of long paths fit easily

// The mapping containing addr, or nullptr. `maps` must be sorted (parse_maps sorts).
const Mapping* find_mapping(const std::vector<Mapping>& maps, uint64_t addr);

enum class RegionKind {
  kHeap,          // [heap]
  kMainStack,     // [stack]
  kAnonymous,     // no file: malloc arenas, thread stacks, [anon:name]
  kFileCode,      // file-backed, executable
  kFileData,      // file-backed, private, writable (.data, relocated GOT)
  kFileReadOnly,  // file-backed, other
  kShared,        // shared mapping (shm, memfd, shared anonymous)
  kDevice,        // /dev/... mappings: reading them may have side effects
  kSpecial,       // [vdso], [vvar], [vsyscall], [uprobes] and unknown [bracketed] names
  kNoAccess,      // not readable (guard pages, reservations)
};
RegionKind classify(const Mapping& m);
const char* to_string(RegionKind k);

struct ScanRegionOptions {
  bool include_file_data = false;  // writable private file mappings (.data arenas)
  bool include_shared = false;     // shared writable mappings (shm, memfd)
};
// Readable, writable regions where coroutine frames can live: [heap], anonymous mappings
// (malloc arenas, .bss tails, thread stacks) and [stack]; never devices or [vvar]-like pages.
std::vector<Mapping> scan_regions(const std::vector<Mapping>& maps,
                                  const ScanRegionOptions& options = {});

// The main thread's [stack] mapping, or nullptr.
const Mapping* main_stack(const std::vector<Mapping>& maps);
// The stack mapping of a thread whose stack pointer is sp: the readable, writable mapping that
// contains it. nullptr when sp is 0 or in no such mapping.
const Mapping* stack_mapping_for(const std::vector<Mapping>& maps, uint64_t sp);

// One loaded instance of a file: its file-backed mappings in address order. A file mapped twice
// (two dlmopen namespaces, or a tool mmapping its own executable) gives two objects: a new
// instance starts where the file offsets of accessible mappings go back, or at a second offset-0
// mapping that does not directly follow the instance. A stray mmap placed exactly against the
// image cannot be told apart here; compute_load_bias then refuses the merged group.
struct MappedObject {
  std::string path;
  uint32_t dev_major = 0;
  uint32_t dev_minor = 0;
  uint64_t inode = 0;
  bool deleted = false;
  std::vector<Mapping> mappings;

  uint64_t low() const { return mappings.empty() ? 0 : mappings.front().start; }
  uint64_t high() const { return mappings.empty() ? 0 : mappings.back().end; }
  bool has_exec() const;
};
std::vector<MappedObject> group_objects(const std::vector<Mapping>& maps);

// A PT_LOAD program header, as the ELF reader hands it over.
struct LoadSegment {
  uint64_t vaddr = 0;
  uint64_t offset = 0;
  uint64_t filesz = 0;
  uint64_t memsz = 0;
  uint32_t flags = 0;  // PF_X 1, PF_W 2, PF_R 4
};

struct LoadBiasResult {
  bool ok = false;
  uint64_t bias = 0;       // runtime address = link-time vaddr + bias
  size_t matched = 0;      // mappings explained by this bias
  size_t unexplained = 0;  // mappings no segment explains with this bias
  std::string error;       // why !ok
};
// The load bias of `object` given its ELF's PT_LOAD headers. A mapping at `start` with file
// offset `off` inside segment S implies bias = start - (S.vaddr - S.offset + off) (for the
// segment's first page: start - (S.vaddr & ~(page-1))), provided the mapping fits in S's memory
// image. Inaccessible (---p) mappings are ignored: the loader leaves file-backed holes. The bias
// that explains the most mappings wins; ok only if it is page-aligned, explains every accessible
// mapping, and explains an executable mapping when the ELF has an executable segment, so a stray
// mmap of the same file cannot pass as the loaded image.
LoadBiasResult compute_load_bias(const MappedObject& object, const std::vector<LoadSegment>& loads,
                                 uint64_t page_size = 4096);

}  // namespace asyncprobe::process
