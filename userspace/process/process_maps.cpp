#include "userspace/process/process_maps.h"

#include <fcntl.h>

#include <algorithm>
#include <map>
#include <tuple>

#include "userspace/process/target_process.h"

namespace asyncprobe::process {
namespace {

constexpr uint64_t kMinPage = 4096;      // x86-64 base page: every kernel-printed bound is aligned
constexpr size_t kMaxLineBytes = 16384;  // PATH_MAX plus fields; longer lines are not the kernel's
constexpr size_t kMaxPathBytes = 8192;
constexpr size_t kMaxLoadSegments = 4096;  // a hostile ELF cannot make the bias search quadratic

std::optional<uint64_t> parse_hex(std::string_view s, size_t max_digits) {
  if (s.empty() || s.size() > max_digits) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else {
      return std::nullopt;
    }
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  return v;
}

std::optional<uint64_t> parse_dec(std::string_view s) {
  if (s.empty() || s.size() > 20) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

// Splits off the next space-delimited token; false when none is left.
bool next_token(std::string_view& rest, std::string_view* token) {
  size_t b = rest.find_first_not_of(' ');
  if (b == std::string_view::npos) return false;
  rest.remove_prefix(b);
  size_t e = rest.find(' ');
  *token = rest.substr(0, e);
  rest.remove_prefix(e == std::string_view::npos ? rest.size() : e);
  return true;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

bool is_special_name(std::string_view p) { return !p.empty() && p.front() == '['; }

}  // namespace

std::optional<Mapping> parse_maps_line(std::string_view line) {
  if (line.empty() || line.size() > kMaxLineBytes) return std::nullopt;
  std::string_view rest = line;
  std::string_view range, perms, offset, dev, inode;
  if (!next_token(rest, &range) || !next_token(rest, &perms) || !next_token(rest, &offset) ||
      !next_token(rest, &dev) || !next_token(rest, &inode)) {
    return std::nullopt;
  }
  Mapping m;
  size_t dash = range.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  auto start = parse_hex(range.substr(0, dash), 16);
  auto end = parse_hex(range.substr(dash + 1), 16);
  if (!start || !end || *start >= *end || *start % kMinPage != 0 || *end % kMinPage != 0) {
    return std::nullopt;
  }
  m.start = *start;
  m.end = *end;

  if (perms.size() != 4) return std::nullopt;
  auto flag = [](char c, char yes, bool* out) {
    if (c == yes) {
      *out = true;
      return true;
    }
    return c == '-';
  };
  if (!flag(perms[0], 'r', &m.perms.read) || !flag(perms[1], 'w', &m.perms.write) ||
      !flag(perms[2], 'x', &m.perms.exec)) {
    return std::nullopt;
  }
  if (perms[3] == 's') {
    m.perms.shared = true;
  } else if (perms[3] != 'p') {
    return std::nullopt;
  }

  auto off = parse_hex(offset, 16);
  if (!off || *off % kMinPage != 0) return std::nullopt;
  m.offset = *off;

  size_t colon = dev.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  auto major = parse_hex(dev.substr(0, colon), 8);
  auto minor = parse_hex(dev.substr(colon + 1), 8);
  if (!major || !minor) return std::nullopt;
  m.dev_major = static_cast<uint32_t>(*major);
  m.dev_minor = static_cast<uint32_t>(*minor);

  auto ino = parse_dec(inode);
  if (!ino) return std::nullopt;
  m.inode = *ino;

  // The path is everything after the column padding; it may itself contain spaces.
  size_t p = rest.find_first_not_of(' ');
  std::string_view path = p == std::string_view::npos ? std::string_view{} : rest.substr(p);
  if (path.size() > kMaxPathBytes) return std::nullopt;
  constexpr std::string_view kDeleted = " (deleted)";
  if (path.size() > kDeleted.size() && path.substr(path.size() - kDeleted.size()) == kDeleted) {
    m.deleted = true;
    path.remove_suffix(kDeleted.size());
  }
  m.path.assign(path);
  return m;
}

MapsParseResult parse_maps(std::string_view text) {
  MapsParseResult r;
  std::vector<Mapping> parsed;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    if (nl == std::string_view::npos) {
      // The kernel ends every line with '\n': an unterminated tail is a torn or capped read.
      ++r.skipped_lines;
      break;
    }
    auto m = parse_maps_line(text.substr(0, nl));
    text.remove_prefix(nl + 1);
    if (m) {
      parsed.push_back(std::move(*m));
    } else {
      ++r.skipped_lines;
    }
  }
  std::stable_sort(parsed.begin(), parsed.end(),
                   [](const Mapping& a, const Mapping& b) { return a.start < b.start; });
  // Concurrent mmap/munmap between the kernel's read chunks can repeat or overlap a range; keep
  // the first so lookups stay unambiguous.
  for (auto& m : parsed) {
    if (!r.mappings.empty() && m.start < r.mappings.back().end) {
      ++r.skipped_lines;
      continue;
    }
    r.mappings.push_back(std::move(m));
  }
  return r;
}

int read_maps_file(const std::string& path, MapsParseResult* out) {
  std::string text;
  bool truncated = false;
  int err = read_file_at(AT_FDCWD, path.c_str(), kMaxMapsBytes, &text, &truncated);
  if (err != 0) return err;
  *out = parse_maps(text);
  out->truncated = truncated;
  return 0;
}

const Mapping* find_mapping(const std::vector<Mapping>& maps, uint64_t addr) {
  auto it = std::upper_bound(maps.begin(), maps.end(), addr,
                             [](uint64_t a, const Mapping& m) { return a < m.start; });
  if (it == maps.begin()) return nullptr;
  --it;
  return it->contains(addr) ? &*it : nullptr;
}

RegionKind classify(const Mapping& m) {
  const std::string& p = m.path;
  if (p == "[heap]") return RegionKind::kHeap;
  if (p == "[stack]") return RegionKind::kMainStack;
  if (starts_with(p, "[anon:"))
    return m.perms.shared ? RegionKind::kShared : RegionKind::kAnonymous;
  if (starts_with(p, "[anon_shmem:")) return RegionKind::kShared;
  if (is_special_name(p)) return RegionKind::kSpecial;
  // Device mappings and anon_inode: rings (perf, io_uring, dma-buf) are not ordinary memory.
  if (!p.empty() && p.front() != '/') return RegionKind::kDevice;
  if (starts_with(p, "/dev/") && !starts_with(p, "/dev/zero") && !starts_with(p, "/dev/shm/")) {
    return RegionKind::kDevice;
  }
  if (!m.perms.read) return RegionKind::kNoAccess;
  if (m.perms.shared) return RegionKind::kShared;
  if (p.empty()) return RegionKind::kAnonymous;
  if (m.perms.exec) return RegionKind::kFileCode;
  if (m.perms.write) return RegionKind::kFileData;
  return RegionKind::kFileReadOnly;
}

const char* to_string(RegionKind k) {
  switch (k) {
    case RegionKind::kHeap:
      return "heap";
    case RegionKind::kMainStack:
      return "stack";
    case RegionKind::kAnonymous:
      return "anonymous";
    case RegionKind::kFileCode:
      return "file-code";
    case RegionKind::kFileData:
      return "file-data";
    case RegionKind::kFileReadOnly:
      return "file-readonly";
    case RegionKind::kShared:
      return "shared";
    case RegionKind::kDevice:
      return "device";
    case RegionKind::kSpecial:
      return "special";
    case RegionKind::kNoAccess:
      return "no-access";
  }
  return "?";
}

std::vector<Mapping> scan_regions(const std::vector<Mapping>& maps,
                                  const ScanRegionOptions& options) {
  std::vector<Mapping> out;
  for (const auto& m : maps) {
    if (!m.perms.read || !m.perms.write) continue;
    switch (classify(m)) {
      case RegionKind::kHeap:
      case RegionKind::kMainStack:
      case RegionKind::kAnonymous:
        out.push_back(m);
        break;
      case RegionKind::kFileData:
        if (options.include_file_data) out.push_back(m);
        break;
      case RegionKind::kShared:
        if (options.include_shared) out.push_back(m);
        break;
      default:
        break;
    }
  }
  return out;
}

const Mapping* main_stack(const std::vector<Mapping>& maps) {
  for (const auto& m : maps) {
    if (m.path == "[stack]") return &m;
  }
  return nullptr;
}

const Mapping* stack_mapping_for(const std::vector<Mapping>& maps, uint64_t sp) {
  if (sp == 0) return nullptr;
  const Mapping* m = find_mapping(maps, sp);
  if (m == nullptr || !m->perms.read || !m->perms.write) return nullptr;
  return m;
}

bool MappedObject::has_exec() const {
  return std::any_of(mappings.begin(), mappings.end(),
                     [](const Mapping& m) { return m.perms.exec; });
}

std::vector<MappedObject> group_objects(const std::vector<Mapping>& maps) {
  using Key = std::tuple<uint32_t, uint32_t, uint64_t, std::string>;
  struct Open {
    size_t index;             // into objects
    uint64_t max_offset = 0;  // highest file offset of an accessible mapping so far
    bool has_zero = false;    // an accessible mapping of offset 0 was seen
  };
  std::vector<MappedObject> objects;
  std::map<Key, Open> open;  // key -> the instance being filled
  for (const auto& m : maps) {
    if (!m.file_backed()) continue;
    const bool accessible = m.perms.read || m.perms.write || m.perms.exec;
    Key key{m.dev_major, m.dev_minor, m.inode, m.path};
    auto it = open.find(key);
    bool new_instance = it == open.end();
    if (!new_instance && accessible) {
      const MappedObject& cur = objects[it->second.index];
      // Within one loaded image, file offsets of accessible mappings never go down as
      // addresses go up (lld's shared pages repeat an offset, directly adjacent). Going back,
      // or a detached second offset 0, is another instance (dlmopen, or an mmap of the file).
      // Loader holes (---p) keep linear offsets and are ignored here.
      new_instance = m.offset < it->second.max_offset ||
                     (m.offset == 0 && it->second.has_zero && m.start != cur.high());
    }
    if (new_instance) {
      MappedObject o;
      o.path = m.path;
      o.dev_major = m.dev_major;
      o.dev_minor = m.dev_minor;
      o.inode = m.inode;
      o.deleted = m.deleted;
      objects.push_back(std::move(o));
      it = open.insert_or_assign(key, Open{objects.size() - 1}).first;
    }
    if (accessible) {
      it->second.max_offset = std::max(it->second.max_offset, m.offset);
      it->second.has_zero = it->second.has_zero || m.offset == 0;
    }
    objects[it->second.index].mappings.push_back(m);
  }
  return objects;
}

namespace {

// One mapping's claim: placed inside one PT_LOAD segment, it implies this load bias.
struct Vote {
  size_t mapping;
  uint64_t bias;
  bool perm_match;  // the mapping's x bit agrees with the segment's PF_X
  bool exec_match;  // executable mapping explained by an executable segment
};

// How well one bias explains the object's mappings.
struct Score {
  size_t explained = 0;
  size_t perm_matches = 0;
  bool exec = false;
};

// The link-time address of m.start if m lies inside segment s's file and memory image; false when
// it does not, or when the header breaks the ELF rules (a hostile file).
bool link_address_in_segment(const Mapping& m, const LoadSegment& s, uint64_t pm, uint64_t* link) {
  auto align_up = [pm](uint64_t v, uint64_t* out) {
    if (v > UINT64_MAX - pm) return false;
    *out = (v + pm) & ~pm;
    return true;
  };
  // Hostile headers: the ELF rule vaddr == offset (mod page), filesz <= memsz, no overflow.
  if (s.memsz == 0 || s.filesz > s.memsz || (s.vaddr & pm) != (s.offset & pm)) return false;
  uint64_t file_hi, mem_hi;
  if (s.offset > UINT64_MAX - s.filesz || !align_up(s.offset + s.filesz, &file_hi)) return false;
  if (s.vaddr > UINT64_MAX - s.memsz || !align_up(s.vaddr + s.memsz, &mem_hi)) return false;
  if (m.offset < (s.offset & ~pm) || m.offset >= file_hi) return false;
  *link = s.vaddr - s.offset + m.offset;
  return *link <= mem_hi && m.size() <= mem_hi - *link;
}

// Every (accessible mapping, segment) pair that fits votes for the bias it implies.
std::vector<Vote> collect_votes(const MappedObject& object, const std::vector<LoadSegment>& loads,
                                uint64_t pm, size_t* accessible) {
  std::vector<Vote> votes;
  *accessible = 0;
  for (size_t i = 0; i < object.mappings.size(); ++i) {
    const Mapping& m = object.mappings[i];
    // The loader leaves inaccessible file-backed holes between segments; they carry no layout.
    if (!m.perms.read && !m.perms.write && !m.perms.exec) continue;
    ++*accessible;
    for (const auto& s : loads) {
      const bool seg_exec = (s.flags & 1u) != 0;
      uint64_t link = 0;  // link-time address of m.start
      if (!link_address_in_segment(m, s, pm, &link)) continue;
      votes.push_back({i, m.start - link, m.perms.exec == seg_exec, m.perms.exec && seg_exec});
    }
  }
  return votes;
}

// Per bias: how many distinct mappings it explains, with the x bit agreeing, and whether it
// explains an executable mapping by an executable segment.
std::map<uint64_t, Score> score_biases(const std::vector<Vote>& votes, size_t mappings) {
  std::map<uint64_t, Score> scores;
  for (const auto& v : votes) scores.try_emplace(v.bias);
  for (auto& [bias, score] : scores) {
    std::vector<char> seen(mappings, 0), perm(mappings, 0);
    for (const auto& v : votes) {
      if (v.bias != bias) continue;
      seen[v.mapping] = 1;
      if (v.perm_match) perm[v.mapping] = 1;
      score.exec = score.exec || v.exec_match;
    }
    score.explained = static_cast<size_t>(std::count(seen.begin(), seen.end(), 1));
    score.perm_matches = static_cast<size_t>(std::count(perm.begin(), perm.end(), 1));
  }
  return scores;
}

// The best-scoring bias (most mappings explained, then most permission matches); *tie when
// another bias scores the same. `scores` must not be empty.
std::map<uint64_t, Score>::const_iterator best_bias(const std::map<uint64_t, Score>& scores,
                                                    bool* tie) {
  auto better = [](const Score& a, const Score& b) {
    return std::tie(a.explained, a.perm_matches) > std::tie(b.explained, b.perm_matches);
  };
  auto best = scores.begin();
  *tie = false;
  for (auto it = std::next(scores.begin()); it != scores.end(); ++it) {
    if (better(it->second, best->second)) {
      best = it;
      *tie = false;
    } else if (!better(best->second, it->second)) {
      *tie = true;
    }
  }
  return best;
}

}  // namespace

LoadBiasResult compute_load_bias(const MappedObject& object, const std::vector<LoadSegment>& loads,
                                 uint64_t page_size) {
  LoadBiasResult r;
  if (page_size == 0 || (page_size & (page_size - 1)) != 0) {
    r.error = "page size is not a power of two";
    return r;
  }
  if (loads.empty() || loads.size() > kMaxLoadSegments) {
    r.error = loads.empty() ? "no PT_LOAD segments" : "too many PT_LOAD segments";
    return r;
  }
  const uint64_t pm = page_size - 1;
  const bool elf_has_exec = std::any_of(loads.begin(), loads.end(),
                                        [](const LoadSegment& s) { return (s.flags & 1u) != 0; });
  size_t accessible = 0;
  const std::vector<Vote> votes = collect_votes(object, loads, pm, &accessible);
  if (accessible == 0) {
    r.error = "no accessible mappings";
    return r;
  }
  if (votes.empty()) {
    r.error = "no mapping lies inside a PT_LOAD segment";
    return r;
  }

  const std::map<uint64_t, Score> scores = score_biases(votes, object.mappings.size());
  bool tie = false;
  const auto best = best_bias(scores, &tie);
  r.bias = best->first;
  r.matched = best->second.explained;
  r.unexplained = accessible - r.matched;
  if (tie) {
    r.error = "ambiguous: several load biases explain the mappings equally well";
  } else if ((r.bias & pm) != 0) {
    r.error = "implied load bias is not page-aligned";
  } else if (r.unexplained != 0) {
    r.error = std::to_string(r.unexplained) + " mapping(s) disagree with the PT_LOAD layout";
  } else if (elf_has_exec && !best->second.exec) {
    r.error = "no executable mapping: not a loaded image of this ELF";
  } else {
    r.ok = true;
  }
  return r;
}

}  // namespace asyncprobe::process
