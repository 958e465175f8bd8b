// asyncprobe: the command-line entry point.
#include <fstream>
#include <iostream>
#include <string>

#include "userspace/cli/cli_options.h"
#include "userspace/output/report_csv.h"
#include "userspace/output/report_json.h"
#include "userspace/output/report_text.h"
#include "userspace/snapshot/async_stacks.h"
#include "userspace/snapshot/snapshot_taker.h"
#include "userspace/kernel/resume_probe.h"
#include "userspace/snapshot/stuck_check.h"
#include "userspace/util/exit_codes.h"

// The trace (eBPF) and run (LD_PRELOAD) engines are separate parts of the tree; the CLI offers
// each subcommand when its part is present.
#if __has_include("userspace/cli/trace_command.h")
#include "userspace/cli/trace_command.h"
#define ASYNCPROBE_HAS_TRACE 1
#endif
#if __has_include("userspace/cli/profile_command.h")
#include "userspace/cli/profile_command.h"
#define ASYNCPROBE_HAS_PROFILE 1
#endif
#if __has_include("userspace/cli/run_command.h")
#include "userspace/cli/run_command.h"
#include "userspace/cli/top_command.h"
#define ASYNCPROBE_HAS_RUN 1
#endif

namespace asyncprobe::cli {
namespace {

int fail(const snapshot::SnapshotError& e) {
  std::cerr << "asyncprobe: " << e.message << "\n";
  return e.code;
}

int run_snapshot(const CliOptions& opts) {
  snapshot::SnapshotTaker taker(snapshot::SnapshotSession{opts.pid, opts.debug_dirs});
  snapshot::SnapshotError err;
  if (!taker.attach(&err)) return fail(err);
  model::Snapshot snap;
  if (opts.window_s > 0) {
    kernel::BpfResumeProber prober;
    if (!snapshot::take_with_stuck_check(taker, opts.window_s, opts.no_probe ? nullptr : &prober,
                                         "--no-probe", &snap, &err)) {
      return fail(err);
    }
  } else if (!taker.take(&snap, &err)) {
    return fail(err);
  }
  std::ofstream file;
  std::ostream* out = &std::cout;
  if (!opts.output.empty()) {
    file.open(opts.output);
    if (!file) {
      std::cerr << "asyncprobe: cannot write " << opts.output << "\n";
      return asyncprobe::util::kExitUsage;
    }
    out = &file;
  }
  if (opts.format == "json") {
    output::write_json_report(*out, snap);
  } else if (opts.format == "csv") {
    output::write_csv_report(*out, snap);
  } else {
    output::TextReportOptions text;
    text.unicode = opts.unicode;
    if (opts.full_names) text.max_name_chars = 0;
    output::write_text_report(*out, snap, text);
  }
  return asyncprobe::util::kExitOk;
}

}  // namespace
}  // namespace asyncprobe::cli

int main(int argc, char** argv) {
  using namespace asyncprobe::cli;
  // Subcommands with options of their own parse their own arguments (argv[0] = the subcommand).
  if (argc > 1) {
    std::string sub = argv[1];
#ifdef ASYNCPROBE_HAS_TRACE
    if (sub == "trace") return trace_main(argc - 1, argv + 1);
#endif
#ifdef ASYNCPROBE_HAS_PROFILE
    if (sub == "profile") return profile_main(argc - 1, argv + 1);
#endif
#ifdef ASYNCPROBE_HAS_RUN
    if (sub == "run") return run_main(argc - 1, argv + 1);
    if (sub == "top") return top_main(argc - 1, argv + 1);
#endif
  }
  CliOptions opts;
  std::string error;
  if (!parse_cli(argc, argv, &opts, &error)) {
    std::cerr << "asyncprobe: " << error << "\n";
    return asyncprobe::util::kExitUsage;
  }
  if (opts.help) {
    std::cout << usage_text();
    return asyncprobe::util::kExitOk;
  }
  if (opts.version) {
    std::cout << "asyncprobe 0.1.0\n";
    return asyncprobe::util::kExitOk;
  }
  if (opts.command != "snapshot") {
    std::cerr << "asyncprobe: '" << opts.command << "' is not available in this build yet\n";
    return asyncprobe::util::kExitUsage;
  }
  try {
    return run_snapshot(opts);
  } catch (const std::exception& e) {
    std::cerr << "asyncprobe: internal error: " << e.what() << "\n";
    return asyncprobe::util::kExitInternal;
  }
}
