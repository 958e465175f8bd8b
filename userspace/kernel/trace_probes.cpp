#include "userspace/kernel/trace_probes.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "userspace/util/exit_codes.h"

namespace asyncprobe::kernel {

void collect_trace_functions(const snapshot::CoroutineIndex& index, int pid,
                             std::vector<TraceFunctionSpec>* specs,
                             std::vector<trace::TraceFunction>* fns,
                             std::vector<std::string>* warnings) {
  const std::string root = "/proc/" + std::to_string(pid) + "/root";
  for (const auto& loaded : index.catalogs()) {
    if (loaded == nullptr || loaded->catalog == nullptr) continue;
    std::string path = root + loaded->target_path;
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) {
      warnings->push_back(loaded->target_path + ": cannot be opened for uprobes (" +
                          strerror(errno) + "); its coroutines are not traced");
      continue;
    }
    const symbolizer::ElfObject& obj = loaded->catalog->module().object();
    for (const symbolizer::CoroFunction& fn : loaded->catalog->functions()) {
      TraceFunctionSpec spec;
      spec.attach_path = path;
      auto off = [&](uint64_t vaddr) -> uint64_t {
        if (vaddr == 0) return 0;
        auto o = obj.vaddr_to_offset(vaddr);
        return o ? *o : 0;
      };
      spec.resume_offset = off(fn.resume);
      spec.destroy_offset = off(fn.destroy);
      spec.cleanup_offset = off(fn.cleanup);
      if (spec.resume_offset == 0) continue;
      spec.layout.index_offset = fn.index_offset;
      spec.layout.index_width = fn.index_width;
      spec.layout.flags = fn.compiler == symbolizer::CoroCompiler::kGcc ? TRACE_FN_GCC : 0;
      spec.layout.promise_offset = fn.promise_offset;
      specs->push_back(spec);
      trace::TraceFunction tf;
      tf.loaded = loaded.get();
      tf.fn = &fn;
      tf.name = fn.name.empty() ? fn.ramp_linkage : fn.name;
      fns->push_back(tf);
    }
  }
}

bool plan_trace_probes(const snapshot::CoroutineIndex& index, int pid, const std::string& comm,
                       TraceProbePlan* plan, std::vector<std::string>* warnings,
                       TraceError* error) {
  plan->pid = pid;
  collect_trace_functions(index, pid, &plan->specs, &plan->functions, warnings);
  if (plan->specs.empty()) {
    error->code = util::kExitNoCoroutines;
    error->message = "pid " + std::to_string(pid) + " (" + comm +
                     "): no coroutine resume function can be probed";
    return false;
  }
  return true;
}

std::unique_ptr<TraceSession> attach_trace_probes(const TraceProbePlan& plan,
                                                  const TraceProbeSettings& settings,
                                                  AttachStats* stats, TraceError* error) {
  TraceSessionOptions sopts;
  sopts.pid = plan.pid;
  sopts.block_threshold_ns = settings.block_threshold_ns;
  sopts.stall_threshold_ns = settings.stall_threshold_ns;
  sopts.ringbuf_bytes = settings.ringbuf_bytes;
  sopts.functions = plan.specs;
  sopts.btf_path = settings.btf_path;
  if (const char* mode = std::getenv("ASYNCPROBE_UPROBE_MODE")) {
    if (std::string(mode) == "perf") sopts.uprobe_mode = UprobeMode::kPerf;
    if (std::string(mode) == "multi") sopts.uprobe_mode = UprobeMode::kMulti;
  }
  std::unique_ptr<TraceSession> session = TraceSession::load(sopts, error);
  if (session == nullptr) return nullptr;
  if (!session->attach(stats, error)) return nullptr;
  return session;
}

TraceProbeEnd detach_trace_probes(TraceSession* session, const TraceSession::EventHandler& intake) {
  TraceProbeEnd end;
  session->drain(intake);
  end.threads = session->threads();
  session->detach();
  end.detach_s = session->detach_seconds();
  session->drain(intake);
  end.stats = session->stats();  // the counters outlive the links: read after the last record
  return end;
}

}  // namespace asyncprobe::kernel
