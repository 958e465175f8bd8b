/* Opening, loading and destroying the profile skeleton (bpf/profile.bpf.c embedded by bpftool gen
 * skeleton), in a C file of its own like trace_skel.h: the generated inline functions stay out of
 * the C++ translation units. The struct profile_bpf itself comes from profile.skel.h. */
#ifndef ASYNCPROBE_BPF_PROFILE_SKEL_H
#define ASYNCPROBE_BPF_PROFILE_SKEL_H

#ifdef __cplusplus
extern "C" {
#endif

struct profile_bpf;

/* btf_path: kernel BTF for CO-RE relocations, NULL for the running kernel's. NULL on error
 * (errno set). */
struct profile_bpf* asyncprobe_profile_bpf_open(const char* btf_path);
/* 0 or a negative errno. */
int asyncprobe_profile_bpf_load(struct profile_bpf* skel);
void asyncprobe_profile_bpf_destroy(struct profile_bpf* skel);

#ifdef __cplusplus
}
#endif

#endif
