// Read-only access to the target's memory: process_vm_readv with batching, /proc/PID/mem as the
// fallback. A byte we could not read is reported as unreadable, never as zero. The target going
// away is a TargetError(kExitTargetExited), thrown from any read.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <type_traits>
#include <vector>

#include "userspace/process/target_process.h"

namespace asyncprobe::process {

struct Mapping;

// One piece of a batch: read len bytes at addr into out. ok is set by read_batch.
struct ReadRequest {
  uint64_t addr = 0;
  void* out = nullptr;
  size_t len = 0;
  bool ok = false;
};

// Reads `len` bytes at `addr`; false when any of it is unreadable (never zero-filled).
using ReadMemory = std::function<bool(uint64_t addr, void* out, size_t len)>;

// Many reads in one go (process_vm_readv takes up to 1024 pieces per call); sets each `ok`.
// Optional: without it every piece is read with ReadMemory.
using ReadMemoryBatch = std::function<void(std::vector<ReadRequest>& requests)>;

struct MemoryReaderStats {
  uint64_t bytes_read = 0;        // bytes delivered to callers
  uint64_t syscalls = 0;          // process_vm_readv / pread calls made
  uint64_t failed_reads = 0;      // requests (or chunk pieces) that could not be read in full
  uint64_t unreadable_bytes = 0;  // bytes for_each_chunk skipped because they were unreadable
};

struct ChunkScanStats {
  uint64_t bytes_delivered = 0;
  uint64_t bytes_unreadable = 0;
  uint64_t callbacks = 0;
  bool stopped = false;  // the callback asked to stop
};

class MemoryReader {
 public:
  enum class Backend {
    kAuto,            // process_vm_readv; switch to /proc/PID/mem on EPERM or ENOSYS
    kProcessVmReadv,  // process_vm_readv only
    kProcMem,         // pread on /proc/PID/mem only
  };

  // Reads `pid`. Throws TargetError (kExitTargetExited, kExitPermission) when the chosen backend
  // cannot be set up. Does not validate the target: use TargetProcess for that.
  explicit MemoryReader(int pid, Backend backend = Backend::kAuto);
  // Reads an opened target, starting with the backend its probe read found working, and
  // opening /proc/PID/mem through its pinned directory (safe against PID reuse).
  explicit MemoryReader(const TargetProcess& target, Backend backend = Backend::kAuto);

  MemoryReader(MemoryReader&&) noexcept = default;
  MemoryReader& operator=(MemoryReader&&) noexcept = default;

  // All-or-nothing: true only when all len bytes were read into out.
  bool read(uint64_t addr, void* out, size_t len);
  // The readable prefix: how many bytes from addr on were read (0..len).
  size_t read_prefix(uint64_t addr, void* out, size_t len);
  std::optional<uint64_t> read_u64(uint64_t addr) { return read_value<uint64_t>(addr); }
  template <typename T>
  std::optional<T> read_value(uint64_t addr) {
    static_assert(std::is_trivially_copyable_v<T>);
    T v;
    if (!read(addr, &v, sizeof v)) return std::nullopt;
    return v;
  }
  // Many reads in as few syscalls as the kernel allows (IOV_MAX iovecs per call). Sets each
  // request's ok; a request that faulted part-way is not ok. Returns how many are ok.
  size_t read_batch(std::span<ReadRequest> requests);

  // Walks [start, end) in pieces of at most chunk_size bytes (rounded to pages, 4 KiB..256 MiB)
  // through one reused buffer, so a 1 GiB heap costs chunk_size of memory. The callback gets
  // each readable run (address, bytes) and returns false to stop. Unreadable pages are skipped
  // and counted, never delivered as zeros. Pieces start at start or on page boundaries.
  using ChunkCallback = std::function<bool(uint64_t addr, std::span<const unsigned char> bytes)>;
  ChunkScanStats for_each_chunk(uint64_t start, uint64_t end, size_t chunk_size,
                                const ChunkCallback& callback);
  ChunkScanStats for_each_chunk(const Mapping& region, size_t chunk_size,
                                const ChunkCallback& callback);

  // False once the target has exited (pidfd; immune to PID reuse). True if unknown.
  bool target_alive() const;

  int pid() const { return pid_; }
  Backend backend() const { return backend_; }  // kProcessVmReadv or kProcMem after setup
  const MemoryReaderStats& stats() const { return stats_; }

 private:
  void init(Backend requested, bool vm_readv_known_bad);
  void use_proc_mem(int err_from_vm_readv);
  [[noreturn]] void throw_exited() const;
  // Fills `requests` [first, last) with process_vm_readv; returns the index it stopped at.
  size_t vm_batch(std::span<ReadRequest> requests, size_t first, size_t last);
  size_t mem_prefix(uint64_t addr, void* out, size_t len);
  void check_exited_after_failure();

  int pid_ = 0;
  Backend backend_ = Backend::kProcessVmReadv;
  bool auto_fallback_ = false;
  UniqueFd proc_dir_;  // dup of the target's pinned /proc/PID, or opened by path
  UniqueFd mem_;       // /proc/PID/mem, opened when needed
  UniqueFd pidfd_;
  size_t iov_max_ = 1024;
  MemoryReaderStats stats_;
  std::vector<unsigned char> chunk_buf_;
};

}  // namespace asyncprobe::process
