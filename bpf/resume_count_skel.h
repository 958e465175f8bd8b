/* Opening, loading and destroying the resume-count skeleton (bpf/resume_count.bpf.c), in a C file
 * of their own like trace_skel.h: the generated inline functions stay out of C++. */
#ifndef ASYNCPROBE_BPF_RESUME_COUNT_SKEL_H
#define ASYNCPROBE_BPF_RESUME_COUNT_SKEL_H

#ifdef __cplusplus
extern "C" {
#endif

struct resume_count_bpf;

/* btf_path: kernel BTF for CO-RE relocations, NULL or "" for the running kernel's. NULL on
 * error (errno set). */
struct resume_count_bpf* asyncprobe_resume_count_bpf_open(const char* btf_path);
/* 0 or a negative errno. */
int asyncprobe_resume_count_bpf_load(struct resume_count_bpf* skel);
void asyncprobe_resume_count_bpf_destroy(struct resume_count_bpf* skel);

#ifdef __cplusplus
}
#endif

#endif
