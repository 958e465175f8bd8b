#include "trace_skel.h"

#include "trace.h" /* the types of the skeleton's global data */
#include "trace.skel.h"

struct trace_bpf* asyncprobe_trace_bpf_open(const char* btf_path) {
  LIBBPF_OPTS(bpf_object_open_opts, opts);
  if (btf_path != NULL && btf_path[0] != '\0') opts.btf_custom_path = btf_path;
  return trace_bpf__open_opts(&opts);
}

int asyncprobe_trace_bpf_load(struct trace_bpf* skel) { return trace_bpf__load(skel); }

void asyncprobe_trace_bpf_destroy(struct trace_bpf* skel) { trace_bpf__destroy(skel); }
