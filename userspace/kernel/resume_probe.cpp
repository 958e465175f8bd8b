#include "userspace/kernel/resume_probe.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "resume_count.skel.h"
#include "resume_count_skel.h"
#include "userspace/kernel/trace_session.h"
#include "userspace/kernel/uprobe_links.h"

namespace asyncprobe::kernel {

namespace {

// One probed function: its links, so that it can be detached alone when it turns out hot.
struct ProbedFunction {
  std::vector<UprobeLink> links;
  snapshot::ResumeProbeFunctionResult r;
};

// The file offsets of a function's entries that take the frame as first argument.
std::vector<uint64_t> entry_offsets(const snapshot::ResumeProbeFunction& pf) {
  std::vector<uint64_t> out;
  const symbolizer::ElfObject& obj = pf.loaded->catalog->module().object();
  for (uint64_t vaddr : {pf.fn->resume, pf.fn->destroy, pf.fn->cleanup}) {
    if (vaddr == 0) continue;
    if (auto o = obj.vaddr_to_offset(vaddr); o && *o != 0) out.push_back(*o);
  }
  return out;
}

class BpfResumeProbeSession : public snapshot::ResumeProbeSession {
 public:
  ~BpfResumeProbeSession() override {
    close_all();
    if (skel_ != nullptr) asyncprobe_resume_count_bpf_destroy(skel_);
  }

  // Loads the program (for uprobe_multi links when `multi`) with room for the request.
  bool load(const snapshot::ResumeProbeRequest& req, const std::string& btf, bool multi,
            std::string* why_not) {
    request_ = req;
    multi_ = multi;
    skel_ = asyncprobe_resume_count_bpf_open(btf.c_str());
    if (skel_ == nullptr) {
      *why_not = "cannot open the resume-probe BPF object: " + std::string(strerror(errno));
      return false;
    }
    skel_->rodata->target_tgid = static_cast<uint32_t>(req.pid);
    size_t frames = 0;
    for (const auto& f : req.functions) frames += f.frames.size();
    bpf_map__set_max_entries(skel_->maps.frames,
                             static_cast<uint32_t>(std::max<size_t>(1, frames)));
    bpf_map__set_max_entries(skel_->maps.fn_hits,
                             static_cast<uint32_t>(std::max<size_t>(1, req.functions.size())));
    bpf_program__set_autoload(skel_->progs.resume_count, !multi);
    bpf_program__set_autoload(skel_->progs.resume_count_multi, multi);
    if (multi) {
      bpf_program__set_expected_attach_type(skel_->progs.resume_count_multi,
                                            static_cast<bpf_attach_type>(kBpfAttachUprobeMulti));
    }
    if (int err = asyncprobe_resume_count_bpf_load(skel_); err != 0) {
      *why_not = "cannot load the resume-probe BPF program: " + std::string(strerror(-err));
      if (!libbpf_last_message().empty()) *why_not += " (libbpf: " + libbpf_last_message() + ")";
      return false;
    }
    const uint64_t zero = 0;
    for (const auto& f : req.functions) {
      for (uint64_t a : f.frames) {
        bpf_map__update_elem(skel_->maps.frames, &a, sizeof a, &zero, sizeof zero, BPF_ANY);
      }
    }
    return true;
  }

  // Attaches every function. false (nothing attached) with the first failure.
  bool attach(std::string* why_not, double* attach_s) {
    const double t0 = snapshot::stuck_clock_now();
    const std::string root = "/proc/" + std::to_string(request_.pid) + "/root";
    bpf_program* prog = multi_ ? skel_->progs.resume_count_multi : skel_->progs.resume_count;
    fns_.resize(request_.functions.size());
    size_t attached = 0;
    std::string first_failure;
    for (size_t i = 0; i < request_.functions.size(); ++i) {
      const auto& pf = request_.functions[i];
      const std::vector<uint64_t> offsets = entry_offsets(pf);
      const std::vector<uint64_t> cookies(offsets.size(), i);
      const std::string path = root + pf.loaded->target_path;
      int e = offsets.empty() ? ENOENT
                              : attach_uprobes(prog, multi_, path, offsets, cookies, request_.pid,
                                               &fns_[i].links);
      if (e != 0) {
        close_uprobe_links(fns_[i].links);
        if (first_failure.empty()) {
          first_failure = "uprobe " + path + ": " + strerror(e);
          if (!libbpf_last_message().empty())
            first_failure += " (libbpf: " + libbpf_last_message() + ")";
        }
        ++failed_;
        continue;
      }
      fns_[i].r.attached = true;
      fns_[i].r.attached_at_s = snapshot::stuck_clock_now();
      ++attached;
    }
    *attach_s = snapshot::stuck_clock_now() - t0;
    started_at_ = snapshot::stuck_clock_now();
    if (attached == 0) {
      *why_not = "no resume probe could be attached: " + first_failure;
      return false;
    }
    if (failed_ > 0) {
      warnings_.push_back(std::to_string(failed_) + " of " + std::to_string(fns_.size()) +
                          " coroutine functions could not be probed (" + first_failure +
                          "): their unchanged frames stay [unchanged]");
    }
    return true;
  }

  void check_budget() override {
    const double now = snapshot::stuck_clock_now();
    for (size_t i = 0; i < fns_.size(); ++i) {
      ProbedFunction& f = fns_[i];
      if (!f.r.attached || f.r.hot) continue;
      if (read_hits(i) <= request_.hot_budget) continue;
      close_uprobe_links(f.links);
      f.r.hot = true;
      f.r.covered_until_s = now;
    }
  }

  snapshot::ResumeProbeResult read() override { return collect(snapshot::stuck_clock_now()); }

  snapshot::ResumeProbeResult finish() override {
    snapshot::ResumeProbeResult out = collect(snapshot::stuck_clock_now());
    const double t0 = snapshot::stuck_clock_now();
    close_all();
    out.detach_s = snapshot::stuck_clock_now() - t0;
    return out;
  }

  double attach_s = 0.0;

 private:
  uint64_t read_hits(size_t i) const {
    uint32_t key = static_cast<uint32_t>(i);
    uint64_t v = 0;
    bpf_map__lookup_elem(skel_->maps.fn_hits, &key, sizeof key, &v, sizeof v, 0);
    return v;
  }

  snapshot::ResumeProbeResult collect(double now) {
    snapshot::ResumeProbeResult out;
    out.started_at_s = started_at_;
    out.ended_at_s = now;
    out.attach_s = attach_s;
    out.warnings = warnings_;
    for (size_t i = 0; i < fns_.size(); ++i) {
      snapshot::ResumeProbeFunctionResult r = fns_[i].r;
      if (r.attached) {
        r.hits = read_hits(i);
        if (!r.hot) r.covered_until_s = now;
      }
      out.hits += r.hits;
      out.functions.push_back(r);
    }
    for (const auto& f : request_.functions) {
      for (uint64_t a : f.frames) {
        uint64_t n = 0;
        if (bpf_map__lookup_elem(skel_->maps.frames, &a, sizeof a, &n, sizeof n, 0) == 0) {
          out.entries[a] = n;
        }
      }
    }
    return out;
  }

  void close_all() {
    std::vector<UprobeLink> all;
    for (ProbedFunction& f : fns_) {
      all.insert(all.end(), f.links.begin(), f.links.end());
      f.links.clear();
    }
    close_uprobe_links(all);
  }

  snapshot::ResumeProbeRequest request_;
  resume_count_bpf* skel_ = nullptr;
  bool multi_ = false;
  std::vector<ProbedFunction> fns_;
  size_t failed_ = 0;
  double started_at_ = 0.0;
  std::vector<std::string> warnings_;
};

}  // namespace

BpfResumeProber::BpfResumeProber() : btf_path_(kernel_btf_path()) {}

std::unique_ptr<snapshot::ResumeProbeSession> BpfResumeProber::start(
    const snapshot::ResumeProbeRequest& request, std::string* why_not) {
  TraceError support;
  if (!check_bpf_support(btf_path_, "the resume probe", &support)) {
    *why_not = support.message;
    return nullptr;
  }
  install_libbpf_print();
  libbpf_last_message().clear();
  const double t0 = snapshot::stuck_clock_now();
  // Benchmarks measure the cost per hit with the probe kept on a hot function.
  snapshot::ResumeProbeRequest req = request;
  if (const char* budget = std::getenv("ASYNCPROBE_RESUME_PROBE_BUDGET")) {
    req.hot_budget = std::strtoull(budget, nullptr, 10);
  }
  // uprobe_multi first (one system call per function to attach and to detach), then one
  // perf-event link per site; ASYNCPROBE_UPROBE_MODE=perf|multi forces one, as for trace.
  const char* mode = std::getenv("ASYNCPROBE_UPROBE_MODE");
  const std::string forced = mode != nullptr ? mode : "";
  std::vector<bool> tries;
  if (forced != "perf") tries.push_back(true);
  if (forced != "multi") tries.push_back(false);
  for (bool multi : tries) {
    auto session = std::make_unique<BpfResumeProbeSession>();
    double attach_s = 0.0;
    if (!session->load(req, btf_path_, multi, why_not)) continue;
    if (!session->attach(why_not, &attach_s)) continue;
    session->attach_s = snapshot::stuck_clock_now() - t0;
    return session;
  }
  return nullptr;
}

}  // namespace asyncprobe::kernel
