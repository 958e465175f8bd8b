#include "userspace/kernel/uprobe_links.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <system_error>
#include <thread>

namespace asyncprobe::kernel {

namespace {

int libbpf_print(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char buf[512];
  int n = std::vsnprintf(buf, sizeof buf, fmt, args);
  if (n > 0) {
    std::string line(buf, std::min(static_cast<size_t>(n), sizeof buf - 1));
    while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) libbpf_last_message() = line;
  }
  return 0;
}

// Layout of union bpf_attr's link_create.uprobe_multi.
constexpr int kCmdLinkCreate = 28;
struct UprobeMultiAttr {
  uint32_t prog_fd;
  uint32_t target_fd;
  uint32_t attach_type;
  uint32_t flags;
  uint64_t path;
  uint64_t offsets;
  uint64_t ref_ctr_offsets;
  uint64_t cookies;
  uint32_t cnt;
  uint32_t multi_flags;
  uint32_t pid;
  uint32_t pad;
};
static_assert(sizeof(UprobeMultiAttr) == 64);

void close_link(const UprobeLink& l) {
  if (l.link != nullptr) bpf_link__destroy(static_cast<bpf_link*>(l.link));
  if (l.fd >= 0) close(l.fd);
}

}  // namespace

std::string& libbpf_last_message() {
  static std::string last;
  return last;
}

void install_libbpf_print() { libbpf_set_print(libbpf_print); }

int attach_uprobe_multi(int prog_fd, const std::string& path, const std::vector<uint64_t>& offsets,
                        const std::vector<uint64_t>& cookies, int pid) {
  UprobeMultiAttr attr{};
  attr.prog_fd = static_cast<uint32_t>(prog_fd);
  attr.attach_type = kBpfAttachUprobeMulti;
  attr.path = reinterpret_cast<uint64_t>(path.c_str());
  attr.offsets = reinterpret_cast<uint64_t>(offsets.data());
  attr.cookies = reinterpret_cast<uint64_t>(cookies.data());
  attr.cnt = static_cast<uint32_t>(offsets.size());
  attr.pid = static_cast<uint32_t>(pid);
  return static_cast<int>(syscall(__NR_bpf, kCmdLinkCreate, &attr, sizeof attr));
}

int attach_uprobes(bpf_program* prog, bool multi, const std::string& path,
                   const std::vector<uint64_t>& offsets, const std::vector<uint64_t>& cookies,
                   int pid, std::vector<UprobeLink>* links) {
  if (multi) {
    int fd = attach_uprobe_multi(bpf_program__fd(prog), path, offsets, cookies, pid);
    if (fd < 0) return errno;
    links->push_back(UprobeLink{nullptr, fd});
    return 0;
  }
  for (size_t i = 0; i < offsets.size(); ++i) {
    // What LIBBPF_OPTS does, without its designated initializer (clang 19's -Wextra flags the
    // fields it leaves out in C++).
    bpf_uprobe_opts uo{};
    uo.sz = sizeof uo;
    uo.bpf_cookie = i < cookies.size() ? cookies[i] : 0;
    uo.retprobe = false;
    bpf_link* link = bpf_program__attach_uprobe_opts(prog, pid, path.c_str(), offsets[i], &uo);
    if (link == nullptr) return errno;
    links->push_back(UprobeLink{link, -1});
  }
  return 0;
}

void close_uprobe_links(std::vector<UprobeLink>& links) {
  const size_t n = links.size();
  const size_t nthreads = std::min<size_t>(n, 64);
  std::vector<std::thread> pool;
  pool.reserve(nthreads);
  size_t started = 0;
  for (; started < nthreads && nthreads > 1; ++started) {
    try {
      pool.emplace_back([&links, started, nthreads, n] {
        for (size_t i = started; i < n; i += nthreads) close_link(links[i]);
      });
    } catch (const std::system_error&) {
      break;  // no more threads: the rest is closed here
    }
  }
  for (size_t t = started; t < std::max<size_t>(nthreads, 1); ++t) {
    for (size_t i = t; i < n; i += std::max<size_t>(nthreads, 1)) close_link(links[i]);
  }
  for (auto& th : pool) th.join();
  links.clear();
}

}  // namespace asyncprobe::kernel
