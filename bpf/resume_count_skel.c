#include "resume_count_skel.h"

#include "resume_count.skel.h"

struct resume_count_bpf* asyncprobe_resume_count_bpf_open(const char* btf_path) {
  LIBBPF_OPTS(bpf_object_open_opts, opts);
  if (btf_path != NULL && btf_path[0] != '\0') opts.btf_custom_path = btf_path;
  return resume_count_bpf__open_opts(&opts);
}

int asyncprobe_resume_count_bpf_load(struct resume_count_bpf* skel) {
  return resume_count_bpf__load(skel);
}

void asyncprobe_resume_count_bpf_destroy(struct resume_count_bpf* skel) {
  resume_count_bpf__destroy(skel);
}
