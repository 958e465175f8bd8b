// Finds the separate debug file of a stripped object the way gdb does: by build-id under each
// debug root (<root>/.build-id/xx/rest.debug), then by .gnu_debuglink next to the object, in its
// .debug/ subdirectory and under <root>/<object dir>/. A candidate is accepted only if its
// build-id matches (or, without build-ids, its CRC32 matches the debug link's).
#pragma once

#include <string>
#include <vector>

#include "symbolizer/elf_object.h"

namespace asyncprobe::symbolizer {

struct DebugSearchPaths {
  // Where the target's files live from our point of view ("" or "/proc/PID/root").
  std::string sysroot;
  // Global debug roots, searched inside sysroot first and then on the host. Default:
  // /usr/lib/debug.
  std::vector<std::string> debug_roots = {"/usr/lib/debug"};
};

// `object_path_in_target` is the object's path as the target sees it (for debuglink directories);
// `opened_path` is the path we opened it by. Returns "" when nothing matched.
std::string find_debug_file(const ElfObject& object, const std::string& object_path_in_target,
                            const DebugSearchPaths& paths);

// CRC32 (the .gnu_debuglink polynomial) of a whole file; false when unreadable.
bool file_crc32(const std::string& path, uint32_t* crc);

}  // namespace asyncprobe::symbolizer
