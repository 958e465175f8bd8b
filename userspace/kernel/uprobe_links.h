// Attaching and closing uprobes, shared by the trace session and the stuck check's resume probe:
// a uprobe_multi link made with the raw bpf() system call (kernel 6.6+; libbpf 1.1 has no
// wrapper; attach and detach one system call per link) or one libbpf perf-event link per site
// (older kernels), and closing many links with their RCU waits overlapped.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

struct bpf_program;

namespace asyncprobe::kernel {

// A link owned by this process: a libbpf bpf_link*, or the fd of a uprobe_multi link.
struct UprobeLink {
  void* link = nullptr;  // struct bpf_link*, or nullptr
  int fd = -1;           // a uprobe_multi link made directly, or -1
};

// A uprobe_multi link (BPF_TRACE_UPROBE_MULTI) made with the bpf() system call, for a program
// loaded with that expected attach type: every offset of `path`, cookies alongside, in process
// `pid`. The link's fd, or -1 with errno.
inline constexpr uint32_t kBpfAttachUprobeMulti = 48;
int attach_uprobe_multi(int prog_fd, const std::string& path, const std::vector<uint64_t>& offsets,
                        const std::vector<uint64_t>& cookies, int pid);

// Attaches `prog` at `offsets` of `path` in process `pid`: one uprobe_multi link when `multi`
// (the program was loaded for it), else one perf-event link per offset. Appends what it made to
// `links`; returns 0, or the errno of the first failure (links made before it are kept).
int attach_uprobes(bpf_program* prog, bool multi, const std::string& path,
                   const std::vector<uint64_t>& offsets, const std::vector<uint64_t>& cookies,
                   int pid, std::vector<UprobeLink>* links);

// Closes every link and clears `links`. Closing a perf-event uprobe waits for an RCU grace
// period (about 50 ms here, one after another under a kernel mutex): many links are closed from
// several threads so that the waits overlap.
void close_uprobe_links(std::vector<UprobeLink>& links);

// libbpf's messages go to a buffer instead of stderr: a failure is reported in one line, with
// the last libbpf warning added when it explains more. install_libbpf_print() routes them.
void install_libbpf_print();
std::string& libbpf_last_message();

}  // namespace asyncprobe::kernel
