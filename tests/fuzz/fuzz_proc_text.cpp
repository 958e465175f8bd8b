// The text files of /proc/PID a target controls parts of (paths in maps, comm in stat) or that
// may be torn: maps lines, stat, syscall; and an executable's ELF header.
#include <cstdint>
#include <string_view>

#include "userspace/process/process_maps.h"
#include "userspace/process/target_process.h"
#include "userspace/process/thread_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto maps = asyncprobe::process::parse_maps(text);
  for (const auto& obj : asyncprobe::process::group_objects(maps.mappings)) {
    std::vector<asyncprobe::process::LoadSegment> loads = {{0, 0, 0x1000, 0x1000, 5},
                                                           {0x2000, 0x1000, 0x800, 0x1000, 6}};
    asyncprobe::process::compute_load_bias(obj, loads);
  }
  asyncprobe::process::scan_regions(maps.mappings);
  asyncprobe::process::parse_proc_stat(text);
  asyncprobe::process::parse_syscall_file(text);
  asyncprobe::process::check_elf_header(data, size);
  return 0;
}
