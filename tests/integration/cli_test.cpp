// The asyncprobe binary's command line: `--help` lists exactly the subcommands of the dispatch
// table, each of them answers its own --help, and every usage error (conflicting, repeated or
// unknown options, a missing value, an unknown subcommand) is one line and exit 2.
#include <gtest/gtest.h>
#include <signal.h>

#include <cerrno>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/fixture_process.h"
#include "userspace/cli/subcommands.h"
#include "userspace/util/exit_codes.h"

namespace asyncprobe::testing {
namespace {

RunResult probe(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {asyncprobe_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, std::chrono::seconds(60));
}

std::vector<std::string> table_names() {
  std::vector<std::string> names;
  for (const cli::Subcommand& s : cli::subcommands()) names.emplace_back(s.name);
  return names;
}

// The first word of each line of the "subcommands:" section of `asyncprobe --help`.
std::vector<std::string> listed_in_help(const std::string& help) {
  std::istringstream in(help);
  std::string line;
  std::vector<std::string> names;
  bool in_section = false;
  while (std::getline(in, line)) {
    if (line == "subcommands:") {
      in_section = true;
    } else if (in_section && line.empty()) {
      break;
    } else if (in_section) {
      std::istringstream words(line);
      std::string name;
      words >> name;
      names.push_back(name);
    }
  }
  return names;
}

void expect_usage_error(const std::vector<std::string>& args, const std::string& message) {
  RunResult r = probe(args);
  EXPECT_EQ(r.exit.exit_code, util::kExitUsage) << ::testing::PrintToString(args) << r.err;
  EXPECT_EQ(r.exit.term_signal, 0);
  EXPECT_EQ(r.err, "asyncprobe: " + message + "\n") << ::testing::PrintToString(args);
  EXPECT_TRUE(r.out.empty()) << r.out;
}

int free_pid() {
  for (int pid = 4'000'000; pid > 100'000; pid -= 7919) {
    if (::kill(pid, 0) != 0 && errno == ESRCH) return pid;
  }
  return 0;
}

TEST(Cli, HelpListsExactlyTheSubcommandsOfTheTable) {
  RunResult r = probe({"--help"});
  EXPECT_EQ(r.exit.exit_code, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;
  EXPECT_EQ(r.out.rfind("usage: asyncprobe SUBCOMMAND [options]\n", 0), 0u) << r.out;
  EXPECT_EQ(listed_in_help(r.out), table_names()) << r.out;
  // The ones that exist today, snapshot first (the default).
  EXPECT_EQ(table_names(),
            (std::vector<std::string>{"snapshot", "trace", "profile", "run", "watch", "top"}));
  EXPECT_EQ(probe({"-h"}).out, r.out);
}

TEST(Cli, EachSubcommandAnswersItsOwnHelp) {
  for (const std::string& name : table_names()) {
    for (const char* flag : {"--help", "-h"}) {
      RunResult r = probe({name, flag});
      EXPECT_EQ(r.exit.exit_code, 0) << name << " " << flag << ": " << r.err;
      EXPECT_TRUE(r.err.empty()) << r.err;
      const std::string usage = name == "snapshot" ? "usage: asyncprobe [snapshot] -p PID"
                                                   : "usage: asyncprobe " + name + " ";
      EXPECT_EQ(r.out.rfind(usage, 0), 0u) << name << ":\n" << r.out;
      EXPECT_NE(r.out.find("-h, --help"), std::string::npos) << name << ":\n" << r.out;
    }
  }
  // The default subcommand's help, asked for without naming it.
  EXPECT_EQ(probe({"-p", "1", "--help"}).out, probe({"snapshot", "--help"}).out);
}

// The per-resume cost of tracing is stated as measured (docs/TRACE.md: 4.2 us on the first VM,
// 18-28 us on later ones), and the report measures it again: never "a few us".
TEST(Cli, TraceHelpStatesTheMeasuredResumeCost) {
  for (const char* name : {"trace", "profile"}) {
    const std::string help = probe({name, "--help"}).out;
    EXPECT_EQ(help.find("a few us"), std::string::npos) << help;
    EXPECT_EQ(help.find("about 9 us"), std::string::npos) << help;
    EXPECT_NE(help.find("4.2 us to 28 us"), std::string::npos) << help;
  }
  EXPECT_NE(probe({"trace", "--help"}).out.find("measures\n  it on this machine before attaching"),
            std::string::npos);
}

TEST(Cli, Version) {
  for (const char* flag : {"--version", "-V"}) {
    RunResult r = probe({flag});
    EXPECT_EQ(r.exit.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, std::string(cli::kVersion) + "\n");
  }
}

// Every subcommand parses with the shared rules: an unknown option points at its own --help.
TEST(Cli, EachSubcommandRejectsAnUnknownOptionPointingAtItsHelp) {
  for (const std::string& name : table_names()) {
    expect_usage_error({name, "--frobnicate"},
                       "unknown option '--frobnicate' (see asyncprobe " + name + " --help)");
  }
  expect_usage_error({"-p", "1", "--frobnicate"},
                     "unknown option '--frobnicate' (see asyncprobe snapshot --help)");
}

TEST(Cli, ConflictingOptionsAreUsageErrors) {
  expect_usage_error({"-p", "1", "--json", "--csv"},
                     "--json and --csv conflict (see asyncprobe snapshot --help)");
  expect_usage_error({"snapshot", "-p", "1", "--format", "json", "--csv"},
                     "--csv and --format conflict (see asyncprobe snapshot --help)");
  expect_usage_error({"profile", "-p", "1", "--await", "--kernel"},
                     "--kernel applies to CPU profiles, not --await (see asyncprobe profile "
                     "--help)");
}

TEST(Cli, RepeatedOptionsAreUsageErrorsNotLastOneWins) {
  expect_usage_error({"-p", "1", "-p", "2"},
                     "option --pid given more than once (see asyncprobe snapshot --help)");
  expect_usage_error({"trace", "-p", "1", "--json", "--json"},
                     "option --json given more than once (see asyncprobe trace --help)");
  expect_usage_error({"profile", "-p", "1", "-d", "1", "--duration=2"},
                     "option --duration given more than once (see asyncprobe profile --help)");
  expect_usage_error({"run", "--crash-report", "a", "--crash-report", "b", "--", "/bin/true"},
                     "option --crash-report given more than once (see asyncprobe run --help)");
}

TEST(Cli, AMissingValueNamesTheOption) {
  expect_usage_error({"-p"}, "option -p needs a value (see asyncprobe snapshot --help)");
  expect_usage_error({"trace", "-p", "1", "-o"},
                     "option -o needs a value (see asyncprobe trace --help)");
  expect_usage_error({"profile", "-p", "1", "--format", "--await"},
                     "option --format needs a value (see asyncprobe profile --help)");
  expect_usage_error({"run", "--socket-dir"},
                     "option --socket-dir needs a value (see asyncprobe run --help)");
}

TEST(Cli, AnUnknownSubcommandIsAUsageError) {
  expect_usage_error({"frobnicate", "-p", "1"},
                     "unknown subcommand 'frobnicate' (see asyncprobe --help)");
}

TEST(Cli, WithoutASubcommandItIsSnapshot) {
  const int pid = free_pid();
  ASSERT_NE(pid, 0);
  RunResult implied = probe({"-p", std::to_string(pid), "--window", "0"});
  RunResult named = probe({"snapshot", "-p", std::to_string(pid), "--window", "0"});
  EXPECT_EQ(implied.exit.exit_code, util::kExitNoProcess) << implied.err;
  EXPECT_EQ(named.exit.exit_code, implied.exit.exit_code);
  EXPECT_EQ(named.err, implied.err);
}

}  // namespace
}  // namespace asyncprobe::testing
