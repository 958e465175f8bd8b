// The kernel side of the stuck check's confirming probe (userspace/snapshot/stuck_check.h): loads
// bpf/resume_count.bpf.c, attaches its uprobe to the resume, destroy and cleanup entries of the
// requested coroutine functions only, one link per function so that a hot function can be
// detached alone, and counts entries per candidate frame address in a BPF hash map. Nothing is
// sent to user space during the window; the counts are read once at its end and every link is
// closed at once. Attaching reuses the trace session's uprobe code (uprobe_links.h).
#pragma once

#include <memory>
#include <string>

#include "userspace/snapshot/stuck_check.h"

namespace asyncprobe::kernel {

// The BPF implementation of snapshot::ResumeProber. start() says why not (one line) when this
// process may not load BPF (not root and no CAP_BPF + CAP_PERFMON), the kernel has no BTF, or no
// probe could be attached.
class BpfResumeProber : public snapshot::ResumeProber {
 public:
  // btf_path: kernel BTF for CO-RE, "" for the running kernel's (kernel_btf_path() by default).
  BpfResumeProber();
  explicit BpfResumeProber(std::string btf_path) : btf_path_(std::move(btf_path)) {}
  std::unique_ptr<snapshot::ResumeProbeSession> start(const snapshot::ResumeProbeRequest& request,
                                                      std::string* why_not) override;

 private:
  std::string btf_path_;
};

}  // namespace asyncprobe::kernel
