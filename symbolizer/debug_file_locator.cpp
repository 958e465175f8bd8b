#include "symbolizer/debug_file_locator.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>

namespace asyncprobe::symbolizer {

namespace {

bool is_regular_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string dir_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash == 0 ? 1 : slash);
}

bool matches(const ElfObject& object, const std::string& candidate) {
  if (!is_regular_file(candidate)) return false;
  std::string err;
  auto dbg = ElfObject::open(candidate, &err);
  if (dbg == nullptr || !dbg->has_debug_info()) return false;
  if (!object.build_id().empty()) return dbg->build_id() == object.build_id();
  uint32_t crc = 0;
  return file_crc32(candidate, &crc) && crc == object.debuglink_crc();
}

}  // namespace

bool file_crc32(const std::string& path, uint32_t* out) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  uint32_t crc = 0xFFFFFFFFu;
  std::array<unsigned char, 65536> buf{};
  ssize_t n = 0;
  while ((n = ::read(fd, buf.data(), buf.size())) > 0) {
    for (ssize_t i = 0; i < n; ++i)
      crc = table[(crc ^ buf[static_cast<size_t>(i)]) & 0xFF] ^ (crc >> 8);
  }
  ::close(fd);
  if (n < 0) return false;
  *out = crc ^ 0xFFFFFFFFu;
  return true;
}

std::string find_debug_file(const ElfObject& object, const std::string& object_path_in_target,
                            const DebugSearchPaths& paths) {
  std::vector<std::string> roots;
  for (const auto& r : paths.debug_roots) {
    if (!paths.sysroot.empty()) roots.push_back(paths.sysroot + r);
    roots.push_back(r);
  }
  const std::string& id = object.build_id();
  if (id.size() > 2) {
    for (const auto& root : roots) {
      std::string candidate =
          root + "/.build-id/" + id.substr(0, 2) + "/" + id.substr(2) + ".debug";
      if (matches(object, candidate)) return candidate;
    }
  }
  const std::string& link = object.debuglink();
  if (link.empty() || link.find('/') != std::string::npos) return "";
  std::string dir = dir_of(object_path_in_target);
  std::vector<std::string> candidates = {paths.sysroot + dir + "/" + link,
                                         paths.sysroot + dir + "/.debug/" + link};
  for (const auto& root : roots) {
    std::string c = root;
    c += dir;
    c += "/";
    c += link;
    candidates.push_back(std::move(c));
  }
  // The object may have been opened through /proc/PID/map_files; its own directory is the
  // target-side one above, but a debug file beside the opened path counts too.
  candidates.push_back(dir_of(object.path()) + "/" + link);
  for (const auto& c : candidates) {
    if (matches(object, c)) return c;
  }
  return "";
}

}  // namespace asyncprobe::symbolizer
