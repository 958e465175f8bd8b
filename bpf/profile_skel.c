#include "profile_skel.h"

#include "profile.h" /* the types of the skeleton's global data */
#include "profile.skel.h"

struct profile_bpf* asyncprobe_profile_bpf_open(const char* btf_path) {
  LIBBPF_OPTS(bpf_object_open_opts, opts);
  if (btf_path != NULL && btf_path[0] != '\0') opts.btf_custom_path = btf_path;
  return profile_bpf__open_opts(&opts);
}

int asyncprobe_profile_bpf_load(struct profile_bpf* skel) { return profile_bpf__load(skel); }

void asyncprobe_profile_bpf_destroy(struct profile_bpf* skel) { profile_bpf__destroy(skel); }
