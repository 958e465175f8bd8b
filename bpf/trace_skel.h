/* Opening, loading and destroying the trace skeleton (bpf/trace.bpf.c embedded by bpftool gen
 * skeleton), in a C file of their own: the generated inline functions stay out of the C++
 * translation units (and their linters). The struct trace_bpf itself comes from trace.skel.h. */
#ifndef ASYNCPROBE_BPF_TRACE_SKEL_H
#define ASYNCPROBE_BPF_TRACE_SKEL_H

#ifdef __cplusplus
extern "C" {
#endif

struct trace_bpf;

/* btf_path: kernel BTF for CO-RE relocations, NULL for the running kernel's. NULL on error
 * (errno set). */
struct trace_bpf* asyncprobe_trace_bpf_open(const char* btf_path);
/* 0 or a negative errno. */
int asyncprobe_trace_bpf_load(struct trace_bpf* skel);
void asyncprobe_trace_bpf_destroy(struct trace_bpf* skel);

#ifdef __cplusplus
}
#endif

#endif
