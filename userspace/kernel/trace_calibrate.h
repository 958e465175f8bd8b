// Measures, on this machine and kernel, what the trace's programs cost the traced process per
// event, for the overhead estimate that ends every report: a uprobe with trace_resume on a
// function of asyncprobe itself, and a traced syscall with trace_sys_enter/exit, each timed
// against the same loop without the probes, in the same run. Takes about 0.2 s.
#pragma once

#include <string>

namespace asyncprobe::kernel {

struct TraceCosts {
  double uprobe_ns = 4200.0;  // defaults: docs/TRACE.md, measured on the project's machines
  double syscall_pair_ns = 500.0;
  double sched_ns = 250.0;
  bool measured = false;
};

// Fills `costs` with measured values; false (defaults kept, reason in `error`) when it cannot.
bool calibrate_trace_costs(TraceCosts* costs, std::string* error, size_t iterations = 20000);

}  // namespace asyncprobe::kernel
