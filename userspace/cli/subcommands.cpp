#include "userspace/cli/subcommands.h"

#include <exception>
#include <iostream>

#include "userspace/cli/cli_options.h"
#include "userspace/cli/profile_command.h"
#include "userspace/cli/run_command.h"
#include "userspace/cli/snapshot_command.h"
#include "userspace/cli/top_command.h"
#include "userspace/cli/trace_command.h"
#include "userspace/cli/watch_command.h"
#include "userspace/util/exit_codes.h"

namespace asyncprobe::cli {

const char kVersion[] = "asyncprobe 0.1.0";

const std::vector<Subcommand>& subcommands() {
  static const std::vector<Subcommand> table = {
      {"snapshot", "every live coroutine as an async stack, and the stuck ones (the default)",
       snapshot_main},
      {"trace", "eBPF timeline: resumes, suspended times, blocking calls, event-loop stalls",
       trace_main},
      {"profile", "CPU profile joined with async stacks, or where coroutines wait (--await)",
       profile_main},
      {"run", "start a program with the preload library: crash reports, no root needed", run_main},
      {"watch", "resident daemon: stuck coroutines as JSON-line events and Prometheus metrics",
       watch_main},
      {"top", "live terminal view of a process's coroutines, like top(1)", top_main},
  };
  return table;
}

const Subcommand* find_subcommand(const std::string& name) {
  for (const Subcommand& s : subcommands()) {
    if (name == s.name) return &s;
  }
  return nullptr;
}

std::string help_text() {
  const std::vector<Subcommand>& table = subcommands();
  std::string text = "usage: asyncprobe SUBCOMMAND [options]\n";
  text += "       asyncprobe -p PID [options]     (= asyncprobe " + std::string(table[0].name) +
          " -p PID)\n\nC++20 coroutine profiler for running Linux processes.\n\nsubcommands:\n";
  for (const Subcommand& s : table) {
    std::string name = s.name;
    name.resize(10, ' ');
    text += "  " + name + s.summary + "\n";
  }
  text +=
      "\n`asyncprobe SUBCOMMAND --help` shows its options.\n"
      "  -h, --help     this text\n"
      "  -V, --version  the version\n";
  return text;
}

namespace {

int run_guarded(const Subcommand& s, int argc, char** argv) {
  try {
    return s.main(argc, argv);
  } catch (const std::exception& e) {
    return fail_with_message(std::string("internal error: ") + e.what(), util::kExitInternal);
  }
}

}  // namespace

int dispatch(int argc, char** argv) {
  const std::string first = argc > 1 ? argv[1] : "";
  if (first == "-h" || first == "--help") {
    std::cout << help_text();
    return util::kExitOk;
  }
  if (first == "-V" || first == "--version") {
    std::cout << kVersion << "\n";
    return util::kExitOk;
  }
  if (const Subcommand* s = find_subcommand(first)) return run_guarded(*s, argc - 1, argv + 1);
  if (!first.empty() && first[0] != '-') {
    return usage_error("", "unknown subcommand '" + first + "'");
  }
  // No subcommand: the default, with the program name as its argv[0].
  return run_guarded(subcommands().front(), argc, argv);
}

}  // namespace asyncprobe::cli
