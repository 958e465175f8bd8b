// The target process: opened from a PID, validated, and pinned so that a reused PID cannot be
// mistaken for it. Every reason we cannot inspect a process becomes a TargetError carrying the
// CLI exit code and a one-line message for the user.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "userspace/util/exit_codes.h"

namespace asyncprobe::process {

struct Mapping;
struct MapsParseResult;

// A failure that ends the run. what() is one line, fit to print after "asyncprobe: ".
class TargetError : public std::runtime_error {
 public:
  TargetError(util::ExitCode code, const std::string& message);
  util::ExitCode code() const noexcept { return code_; }

 private:
  util::ExitCode code_;
};

// Owns one file descriptor; closes it on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd();

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_ = -1;
};

// Reads at most max_bytes of the file `rel` (relative to dirfd; AT_FDCWD for an absolute path).
// Returns 0, or the errno of the first failure. *truncated (optional) says the file was longer.
int read_file_at(int dirfd, const char* rel, size_t max_bytes, std::string* out,
                 bool* truncated = nullptr);

// The /proc/PID/stat fields we use. Parsed from untrusted text: comm may hold any bytes.
struct ProcStat {
  int pid = 0;
  std::string comm;
  char state = '?';
  int ppid = 0;
  uint64_t flags = 0;       // field 9: PF_* flags
  int64_t num_threads = 0;  // field 20
  uint64_t start_time = 0;  // field 22: clock ticks after boot; identifies the process
};
std::optional<ProcStat> parse_proc_stat(std::string_view text);

constexpr uint64_t kPfKthread = 0x00200000;  // PF_KTHREAD from include/linux/sched.h

// Verdict on the first bytes of an executable. `problem` is empty when it is a 64-bit
// little-endian x86-64 ELF, otherwise a phrase such as "a 32-bit ELF (i386)".
struct ElfHeaderCheck {
  bool supported = false;
  bool is_elf = false;
  std::string problem;
};
ElfHeaderCheck check_elf_header(const unsigned char* data, size_t size);

// A file the target maps, opened by us; fd is invalid when no route worked.
struct MappedFile {
  UniqueFd fd;
  std::string path;                // the route that opened it (or the last one tried)
  bool identity_verified = false;  // device and inode match the mapping
};

class TargetProcess {
 public:
  // Opens and validates `pid`. Throws TargetError:
  //   kExitUsage pid <= 0; kExitNoProcess no such process; kExitPermission we may not read it;
  //   kExitNotInspectable kernel thread, zombie or no user address space;
  //   kExitUnsupported executable not a 64-bit x86-64 ELF; kExitTargetExited it vanished while
  //   being opened; kExitInternal /proc unusable.
  // A thread id is accepted and resolves to its process (requested_pid() keeps the id given).
  static TargetProcess open(int pid);

  TargetProcess(TargetProcess&&) noexcept = default;
  TargetProcess& operator=(TargetProcess&&) noexcept = default;

  int pid() const { return pid_; }
  int requested_pid() const { return requested_pid_; }
  const std::string& comm() const { return comm_; }
  // The executable as the target names it (readlink of /proc/PID/exe, " (deleted)" removed).
  const std::string& exe_path() const { return exe_path_; }
  bool exe_deleted() const { return exe_deleted_; }
  char state() const { return state_; }  // at open time
  uint64_t start_time() const { return start_time_; }
  // Whether process_vm_readv worked on the probe read (false: use /proc/PID/mem).
  bool vm_readv_works() const { return vm_readv_works_; }

  // fd of the /proc/PID directory. Lookups through it fail once this process is gone, even if
  // the PID is reused, so prefer it (and the helpers below) to building "/proc/PID/..." paths.
  int proc_dir_fd() const { return proc_dir_.get(); }
  std::string proc_path(std::string_view leaf = {}) const;  // "/proc/PID" or "/proc/PID/leaf"
  std::string exe_open_path() const { return proc_path("exe"); }
  // Reads /proc/PID/<leaf> through the pinned directory; returns 0 or an errno.
  int read_proc_file(const char* leaf, size_t max_bytes, std::string* out,
                     bool* truncated = nullptr) const;

  // Still the same running process: /proc entry reachable, same start time, not a zombie.
  bool alive() const;

  // Current mappings. Throws TargetError kExitTargetExited if the process is gone,
  // kExitPermission if the kernel refuses.
  MapsParseResult read_maps() const;

  // Routes to open the file behind a mapping, best first:
  // /proc/PID/map_files/<start>-<end> (works for deleted and containerised files), then
  // /proc/PID/root/<path> (resolved in the target's mount namespace and root).
  std::vector<std::string> mapped_file_candidates(const Mapping& m) const;
  // Opens (read-only) the first route whose file has the mapping's device and inode; if none
  // matches, the first regular file that opened, with identity_verified = false. Never opens
  // anything but a regular file. fd is invalid when no route worked.
  MappedFile open_mapped_file(const Mapping& m) const;
  // Opens the executable through /proc/PID/exe (works when deleted or in a container).
  MappedFile open_exe() const;

 private:
  TargetProcess() = default;

  // Parts of open(), in order: the executable's path, a test read of memory, the ELF header.
  void read_exe_link();
  void check_memory_readable(const MapsParseResult& maps);
  void check_exe_supported() const;

  UniqueFd proc_dir_;
  int pid_ = 0;
  int requested_pid_ = 0;
  std::string comm_;
  std::string exe_path_;
  bool exe_deleted_ = false;
  char state_ = '?';
  uint64_t start_time_ = 0;
  bool vm_readv_works_ = false;
};

}  // namespace asyncprobe::process
