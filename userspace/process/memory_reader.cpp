#include "userspace/process/memory_reader.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "userspace/process/process_maps.h"

namespace asyncprobe::process {
namespace {

constexpr size_t kMaxSingleRead = 1u << 30;      // below the kernel's MAX_RW_COUNT (~2 GiB)
constexpr uint64_t kMaxBatchBytes = 256u << 20;  // bytes per process_vm_readv call
constexpr size_t kMaxChunk = 256u << 20;
constexpr size_t kKernelIovMax = 1024;  // UIO_MAXIOV

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

uint64_t page_size() {
  static const uint64_t ps = [] {
    long v = ::sysconf(_SC_PAGESIZE);
    return v > 0 && (v & (v - 1)) == 0 ? static_cast<uint64_t>(v) : uint64_t{4096};
  }();
  return ps;
}

bool overflows(uint64_t addr, size_t len) { return len > UINT64_MAX - addr; }

}  // namespace

MemoryReader::MemoryReader(int pid, Backend backend) : pid_(pid) {
  std::string path = "/proc/" + std::to_string(pid);
  proc_dir_ = UniqueFd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (pid <= 0 || !proc_dir_.valid()) throw_exited();
  init(backend, false);
}

MemoryReader::MemoryReader(const TargetProcess& target, Backend backend) : pid_(target.pid()) {
  proc_dir_ = UniqueFd(::fcntl(target.proc_dir_fd(), F_DUPFD_CLOEXEC, 0));
  if (!proc_dir_.valid()) {
    throw TargetError(util::kExitInternal,
                      std::string("cannot duplicate /proc directory fd: ") + std::strerror(errno));
  }
  init(backend, !target.vm_readv_works());
  // The pidfd names whatever now has this PID; it is ours only if the target is still alive.
  if (!target.alive()) throw_exited();
}

void MemoryReader::init(Backend requested, bool vm_readv_known_bad) {
  long iov = ::sysconf(_SC_IOV_MAX);
  iov_max_ = iov > 0 ? std::min(static_cast<size_t>(iov), kKernelIovMax) : kKernelIovMax;
  long fd = ::syscall(SYS_pidfd_open, pid_, 0);
  if (fd >= 0) {
    pidfd_ = UniqueFd(static_cast<int>(fd));
  } else if (errno == ESRCH) {
    throw_exited();
  }  // ENOSYS (kernel < 5.3): liveness falls back to ESRCH and mm-gone reads.

  switch (requested) {
    case Backend::kProcMem:
      use_proc_mem(0);
      break;
    case Backend::kProcessVmReadv:
      backend_ = Backend::kProcessVmReadv;
      break;
    case Backend::kAuto:
      auto_fallback_ = true;
      if (vm_readv_known_bad) {
        use_proc_mem(EPERM);
      } else {
        backend_ = Backend::kProcessVmReadv;
      }
      break;
  }
}

void MemoryReader::throw_exited() const {
  throw TargetError(util::kExitTargetExited,
                    "process " + std::to_string(pid_) + " exited while asyncprobe was reading it");
}

void MemoryReader::use_proc_mem(int err_from_vm_readv) {
  mem_ = UniqueFd(::openat(proc_dir_.get(), "mem", O_RDONLY | O_CLOEXEC));
  if (!mem_.valid()) {
    int err = errno;
    if (err == ENOENT || err == ESRCH) throw_exited();
    std::string msg = "cannot read process " + std::to_string(pid_) + ": ";
    if (err_from_vm_readv != 0) {
      msg += std::string("process_vm_readv: ") + std::strerror(err_from_vm_readv) + ", and ";
    }
    msg += "/proc/" + std::to_string(pid_) + "/mem: " + std::strerror(err) +
           "; need root or CAP_SYS_PTRACE";
    throw TargetError(err == EACCES || err == EPERM ? util::kExitPermission : util::kExitInternal,
                      msg);
  }
  backend_ = Backend::kProcMem;
  auto_fallback_ = false;
}

bool MemoryReader::target_alive() const {
  if (!pidfd_.valid()) return true;
  struct pollfd p = {pidfd_.get(), POLLIN, 0};
  int r = ::poll(&p, 1, 0);
  return !(r > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR)) != 0);
}

void MemoryReader::check_exited_after_failure() {
  if (!target_alive()) throw_exited();
}

size_t MemoryReader::mem_prefix(uint64_t addr, void* out, size_t len) {
  size_t done = 0;
  auto* dst = static_cast<unsigned char*>(out);
  while (done < len) {
    size_t want = std::min(len - done, kMaxSingleRead);
    ++stats_.syscalls;
    ssize_t r = ::pread(mem_.get(), dst + done, want, static_cast<off_t>(addr + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == ESRCH) throw_exited();
      break;  // EIO: the first page of the rest is unreadable
    }
    // /proc/PID/mem reads 0 bytes only once the address space is gone.
    if (r == 0) throw_exited();
    done += static_cast<size_t>(r);
    if (static_cast<size_t>(r) < want) break;  // stopped at an unreadable page
  }
  return done;
}

size_t MemoryReader::read_prefix(uint64_t addr, void* out, size_t len) {
  if (len == 0) return 0;
  size_t done = 0;
  if (!overflows(addr, len) && out != nullptr) {
    auto* dst = static_cast<unsigned char*>(out);
    while (done < len) {
      if (backend_ == Backend::kProcMem) {
        done += mem_prefix(addr + done, dst + done, len - done);
        break;
      }
      size_t want = std::min(len - done, kMaxSingleRead);
      struct iovec local = {dst + done, want};
      struct iovec remote = {reinterpret_cast<void*>(addr + done), want};
      ++stats_.syscalls;
      ssize_t r = ::process_vm_readv(pid_, &local, 1, &remote, 1, 0);
      if (r < 0) {
        int err = errno;
        if (err == ESRCH) throw_exited();
        if ((err == EPERM || err == ENOSYS) && auto_fallback_) {
          use_proc_mem(err);
          continue;
        }
        break;  // EFAULT: the first byte is unreadable
      }
      done += static_cast<size_t>(r);
      if (static_cast<size_t>(r) < want) break;  // stopped at an unreadable page
    }
  }
  stats_.bytes_read += done;
  if (done < len) {
    ++stats_.failed_reads;
    check_exited_after_failure();
  }
  return done;
}

bool MemoryReader::read(uint64_t addr, void* out, size_t len) {
  return read_prefix(addr, out, len) == len;
}

size_t MemoryReader::vm_batch(std::span<ReadRequest> requests, size_t first, size_t last) {
  std::vector<struct iovec> local, remote;
  local.reserve(std::min(last - first, iov_max_));
  remote.reserve(local.capacity());
  uint64_t bytes = 0;
  size_t end = first;
  while (end < last && local.size() < iov_max_ &&
         (local.empty() || bytes + requests[end].len <= kMaxBatchBytes)) {
    local.push_back({requests[end].out, requests[end].len});
    remote.push_back({reinterpret_cast<void*>(requests[end].addr), requests[end].len});
    bytes += requests[end].len;
    ++end;
  }
  ++stats_.syscalls;
  ssize_t r = ::process_vm_readv(pid_, local.data(), local.size(), remote.data(), remote.size(), 0);
  if (r < 0) {
    int err = errno;
    if (err == ESRCH) throw_exited();
    if ((err == EPERM || err == ENOSYS) && auto_fallback_) {
      use_proc_mem(err);
      return first;  // nothing consumed: the caller redoes these through /proc/PID/mem
    }
    // The kernel stops at the first fault; nothing read means the first request faulted.
    requests[first].ok = false;
    return first + 1;
  }
  // Requests wholly inside the returned count were read; the first one not wholly inside is
  // where the kernel met a fault, even when the count ends exactly at its start.
  uint64_t left = static_cast<uint64_t>(r);
  for (size_t i = first; i < end; ++i) {
    if (left >= requests[i].len) {
      requests[i].ok = true;
      left -= requests[i].len;
      stats_.bytes_read += requests[i].len;
    } else {
      requests[i].ok = false;
      return i + 1;
    }
  }
  return end;
}

size_t MemoryReader::read_batch(std::span<ReadRequest> requests) {
  // Requests the kernel can take in one iovec; the rest are handled alone or rejected.
  std::vector<size_t> batchable;
  for (size_t i = 0; i < requests.size(); ++i) {
    ReadRequest& q = requests[i];
    q.ok = false;
    if (q.len == 0) {
      q.ok = true;
    } else if (q.out == nullptr || overflows(q.addr, q.len)) {
      q.ok = false;
    } else if (q.len > kMaxSingleRead) {
      q.ok = read(q.addr, q.out, q.len);  // read() keeps the counters for this one
    } else {
      batchable.push_back(i);
    }
  }
  // Work on a compact copy so batches are contiguous, then write the verdicts back.
  std::vector<ReadRequest> work;
  work.reserve(batchable.size());
  for (size_t i : batchable) work.push_back(requests[i]);
  size_t pos = 0;
  while (pos < work.size()) {
    if (backend_ == Backend::kProcMem) {
      for (; pos < work.size(); ++pos) {
        size_t got = mem_prefix(work[pos].addr, work[pos].out, work[pos].len);
        work[pos].ok = got == work[pos].len;
        if (work[pos].ok) stats_.bytes_read += got;
      }
      break;
    }
    pos = vm_batch(work, pos, work.size());
  }
  size_t ok = 0;
  bool failed = false;
  for (size_t k = 0; k < batchable.size(); ++k) {
    requests[batchable[k]].ok = work[k].ok;
    if (!work[k].ok) {
      failed = true;
      ++stats_.failed_reads;
    }
  }
  for (const auto& q : requests) ok += q.ok ? 1 : 0;
  if (failed) check_exited_after_failure();
  return ok;
}

ChunkScanStats MemoryReader::for_each_chunk(uint64_t start, uint64_t end, size_t chunk_size,
                                            const ChunkCallback& callback) {
  ChunkScanStats st;
  if (start >= end) return st;
  const uint64_t page = page_size();
  size_t chunk = std::clamp(chunk_size, static_cast<size_t>(page), kMaxChunk);
  chunk -= chunk % page;
  if (chunk_buf_.size() < chunk) chunk_buf_.resize(chunk);
  uint64_t addr = start;
  while (addr < end) {
    // Pieces end on page multiples from the page holding addr, so a skip lands on a page start.
    uint64_t base = addr & ~(page - 1);
    uint64_t piece_end = base <= end - chunk ? std::min(end, base + chunk) : end;
    size_t n = static_cast<size_t>(piece_end - addr);
    size_t got = read_prefix(addr, chunk_buf_.data(), n);
    if (got > 0) {
      ++st.callbacks;
      st.bytes_delivered += got;
      if (!callback(addr, std::span<const unsigned char>(chunk_buf_.data(), got))) {
        st.stopped = true;
        break;
      }
    }
    if (got < n) {
      uint64_t bad = addr + got;
      uint64_t bad_page_end = (bad & ~(page - 1)) + page;
      uint64_t next = bad_page_end < bad || bad_page_end > end ? end : bad_page_end;
      st.bytes_unreadable += next - bad;
      stats_.unreadable_bytes += next - bad;
      addr = next;
    } else {
      addr = piece_end;
    }
    // One cheap pidfd poll per piece: bytes read after the target died would be another
    // process's if its PID were reused.
    if (!target_alive()) throw_exited();
  }
  return st;
}

ChunkScanStats MemoryReader::for_each_chunk(const Mapping& region, size_t chunk_size,
                                            const ChunkCallback& callback) {
  return for_each_chunk(region.start, region.end, chunk_size, callback);
}

}  // namespace asyncprobe::process
