// Option parsing of the snapshot, trace and profile subcommands, and the value parsers they share:
// what each option sets, and the one-line message of every kind of usage error.
#include "userspace/cli/cli_options.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "userspace/cli/profile_command.h"
#include "userspace/cli/snapshot_command.h"
#include "userspace/cli/trace_command.h"

namespace asyncprobe {
namespace {

// Runs `parse` on {name, args...} as main() would hand them over.
template <typename Options, typename Parse>
cli::ParseResult parse_with(Parse parse, const char* name, std::vector<std::string> args,
                            Options* o) {
  args.insert(args.begin(), name);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return parse(static_cast<int>(argv.size()), argv.data(), o);
}

cli::ParseResult snapshot(const std::vector<std::string>& args, cli::SnapshotOptions* o) {
  return parse_with(cli::parse_snapshot_args, "snapshot", args, o);
}
cli::ParseResult trace(const std::vector<std::string>& args, cli::TraceOptions* o) {
  return parse_with(cli::parse_trace_args, "trace", args, o);
}
cli::ParseResult profile(const std::vector<std::string>& args, cli::ProfileOptions* o) {
  return parse_with(cli::parse_profile_args, "profile", args, o);
}

// The error of a snapshot command line that must fail.
std::string snapshot_error(const std::vector<std::string>& args) {
  cli::SnapshotOptions o;
  cli::ParseResult r = snapshot(args, &o);
  EXPECT_FALSE(r.ok) << testing::PrintToString(args);
  return r.error;
}

TEST(SnapshotArgs, EveryOptionReachesItsField) {
  cli::SnapshotOptions o;
  cli::ParseResult r =
      snapshot({"--pid=42", "--window", "500ms", "--csv", "-o", "out.csv", "--debug-dir", "/a",
                "--debug-dir=/b", "--unicode", "--full-names"},
               &o);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_FALSE(r.help);
  EXPECT_EQ(o.pid, 42);
  EXPECT_DOUBLE_EQ(o.window_s, 0.5);
  EXPECT_EQ(o.format, "csv");
  EXPECT_EQ(o.output, "out.csv");
  EXPECT_EQ(o.debug_dirs, (std::vector<std::string>{"/a", "/b"}));
  EXPECT_TRUE(o.unicode);
  EXPECT_TRUE(o.full_names);
}

TEST(SnapshotArgs, DefaultsAndFormatSpellings) {
  cli::SnapshotOptions o;
  ASSERT_TRUE(snapshot({"-p", "7"}, &o).ok);
  EXPECT_EQ(o.format, "text");
  EXPECT_DOUBLE_EQ(o.window_s, 1.0);
  EXPECT_TRUE(o.output.empty());
  cli::SnapshotOptions j;
  ASSERT_TRUE(snapshot({"-p", "7", "--format", "json", "--window", "0"}, &j).ok);
  EXPECT_EQ(j.format, "json");
  EXPECT_EQ(j.window_s, 0.0);
  cli::SnapshotOptions k;
  ASSERT_TRUE(snapshot({"-p", "7", "--json"}, &k).ok);
  EXPECT_EQ(k.format, "json");
}

TEST(SnapshotArgs, HelpNeedsNoPid) {
  cli::SnapshotOptions o;
  cli::ParseResult r = snapshot({"--help"}, &o);
  EXPECT_TRUE(r.ok);
  EXPECT_TRUE(r.help);
  EXPECT_TRUE(snapshot({"-h"}, &o).help);
}

TEST(SnapshotArgs, ConflictingOptionsAreErrors) {
  EXPECT_EQ(snapshot_error({"-p", "1", "--json", "--csv"}), "--json and --csv conflict");
  EXPECT_EQ(snapshot_error({"-p", "1", "--format", "json", "--csv"}),
            "--csv and --format conflict");
  EXPECT_EQ(snapshot_error({"-p", "1", "--json", "--format=text"}), "--json and --format conflict");
}

TEST(SnapshotArgs, RepeatedOptionsAreErrors) {
  EXPECT_EQ(snapshot_error({"-p", "1", "-p", "2"}), "option --pid given more than once");
  EXPECT_EQ(snapshot_error({"-p", "1", "--pid=1"}), "option --pid given more than once");
  EXPECT_EQ(snapshot_error({"-p", "1", "--json", "--json"}), "option --json given more than once");
  EXPECT_EQ(snapshot_error({"-p", "1", "-o", "a", "--output", "b"}),
            "option --output given more than once");
}

TEST(SnapshotArgs, AMissingValueNamesTheOption) {
  EXPECT_EQ(snapshot_error({"-p"}), "option -p needs a value");
  EXPECT_EQ(snapshot_error({"--window"}), "option --window needs a value");
  // The next option is not taken as the value: no file named "--json".
  EXPECT_EQ(snapshot_error({"-p", "1", "-o", "--json"}), "option -o needs a value");
  EXPECT_EQ(snapshot_error({"--pid", "--window", "0"}), "option --pid needs a value");
  // --name= with nothing after it, and a "--word" where the value should be (an option of
  // another subcommand, or a typo) are missing values too, never "unknown option" or a bad value.
  EXPECT_EQ(snapshot_error({"--pid="}), "option --pid needs a value");
  EXPECT_EQ(snapshot_error({"-p", "--csvv"}), "option -p needs a value");
  cli::ProfileOptions po;
  EXPECT_EQ(profile({"-p", "--json"}, &po).error, "option -p needs a value");
  cli::TraceOptions to;
  EXPECT_EQ(trace({"--timeline=", "-p", "1"}, &to).error, "option --timeline needs a value");
  // A value may still start with a dash when given with '='.
  cli::TraceOptions dash;
  ASSERT_TRUE(trace({"-p", "1", "--timeline=--odd.json"}, &dash).ok);
  EXPECT_EQ(dash.timeline, "--odd.json");
}

// Output files are checked before anything is attached (trace, profile).
TEST(OutputPath, WritableOrOneLineWhyNot) {
  EXPECT_EQ(cli::check_output_path("-o", ""), "");
  EXPECT_EQ(cli::check_output_path("-o", "-"), "");
  EXPECT_EQ(cli::check_output_path("-o", "/dev/null"), "");
  EXPECT_EQ(cli::check_output_path("--timeline", "/nonexistent/x.json"),
            "cannot write /nonexistent/x.json (--timeline): No such file or directory");
  EXPECT_EQ(cli::check_output_path("-o", "/"), "cannot write / (-o): it is a directory");
  EXPECT_EQ(cli::check_output_path("-o", "/dev/null/x"),
            "cannot write /dev/null/x (-o): Not a directory");
  const std::string fresh =
      testing::TempDir() + "asyncprobe-output-check-" + std::to_string(::getpid()) + ".txt";
  EXPECT_EQ(cli::check_output_path("-o", fresh), "");
  EXPECT_NE(access(fresh.c_str(), F_OK), 0) << "the check creates nothing";
  EXPECT_EQ(cli::check_output_path("-o", "relative-name.txt"), "");
}

TEST(SnapshotArgs, BadValuesUnknownOptionsAndStrayArguments) {
  EXPECT_EQ(snapshot_error({}), "no target: give -p PID");
  EXPECT_EQ(snapshot_error({"-p", "abc"}), "invalid PID 'abc': expected a positive number");
  EXPECT_EQ(snapshot_error({"-p", "1", "--window", "soon"}),
            "invalid duration 'soon' for --window: use e.g. 500ms, 10s, 2m");
  EXPECT_EQ(snapshot_error({"-p", "1", "--format", "xml"}),
            "unknown format 'xml': expected text, json or csv");
  EXPECT_EQ(snapshot_error({"-p", "1", "--frobnicate"}), "unknown option '--frobnicate'");
  EXPECT_EQ(snapshot_error({"-p", "1", "extra"}), "unexpected argument 'extra'");
  EXPECT_EQ(snapshot_error({"-p", "1", "--", "x"}), "unexpected argument '--'");
  // A flag takes no value (CLI11 words this one).
  EXPECT_NE(snapshot_error({"-p", "1", "--json=yes"}).find("json"), std::string::npos);
  // Options of other subcommands are unknown here.
  EXPECT_EQ(snapshot_error({"-p", "1", "-d", "1s"}), "unknown option '-d'");
  EXPECT_EQ(snapshot_error({"-p", "1", "--interval", "1s"}), "unknown option '--interval'");
}

// Snapshot does not pick a format from the file name: a name that says another format is refused.
TEST(SnapshotArgs, AnOutputNameOfAnotherFormatIsAnError) {
  EXPECT_EQ(snapshot_error({"-p", "1", "-o", "report.json"}),
            "-o report.json names a json file but the report is text: choose the format with "
            "--json or --csv");
  EXPECT_EQ(snapshot_error({"-p", "1", "--json", "-o", "report.csv"}),
            "-o report.csv names a csv file but the report is json: choose the format with "
            "--json or --csv");
  EXPECT_EQ(snapshot_error({"-p", "1", "-o", "stacks.svg"}),
            "-o stacks.svg names a svg file but the report is text: choose the format with "
            "--json or --csv");
  cli::SnapshotOptions o;
  EXPECT_TRUE(snapshot({"-p", "1", "--json", "-o", "REPORT.JSON"}, &o).ok);
  EXPECT_TRUE(snapshot({"-p", "1", "-o", "report.txt"}, &o).ok);
  EXPECT_TRUE(snapshot({"-p", "1", "-o", "report"}, &o).ok);
}

TEST(TraceArgs, EveryOptionReachesItsField) {
  cli::TraceOptions o;
  cli::ParseResult r =
      trace({"-p", "9", "-d", "2m", "--block-threshold=250us", "--timeline", "t.json", "--json",
             "--output", "r.json", "--debug-dir", "/d", "--no-calibrate", "--ringbuf-mb", "64"},
            &o);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(o.pid, 9);
  EXPECT_DOUBLE_EQ(o.duration_s, 120.0);
  EXPECT_DOUBLE_EQ(o.block_threshold_s, 250e-6);
  EXPECT_EQ(o.timeline, "t.json");
  EXPECT_TRUE(o.json);
  EXPECT_EQ(o.output, "r.json");
  EXPECT_EQ(o.debug_dirs, std::vector<std::string>{"/d"});
  EXPECT_FALSE(o.calibrate);
  EXPECT_EQ(o.ringbuf_mb, 64u);
  cli::TraceOptions d;
  ASSERT_TRUE(trace({"-p", "9"}, &d).ok);  // no -d: until stopped
  EXPECT_EQ(d.duration_s, 0.0);
  EXPECT_TRUE(d.calibrate);
  EXPECT_EQ(d.ringbuf_mb, 16u);
}

TEST(TraceArgs, UsageErrors) {
  auto error = [](const std::vector<std::string>& args) {
    cli::TraceOptions o;
    cli::ParseResult r = trace(args, &o);
    EXPECT_FALSE(r.ok) << testing::PrintToString(args);
    return r.error;
  };
  EXPECT_EQ(error({"-d", "1s"}), "trace needs -p PID");
  // One rule with profile: a duration above 0, or no -d for "until stopped".
  EXPECT_EQ(error({"-p", "1", "-d", "0"}), "invalid duration '0' for --duration: must be above 0");
  EXPECT_EQ(error({"-p", "1", "--block-threshold", "0"}),
            "invalid duration '0' for --block-threshold: must be above 0");
  EXPECT_EQ(error({"-p", "1", "-d", "1", "-d", "2"}), "option --duration given more than once");
  EXPECT_EQ(error({"-p", "1", "--timeline"}), "option --timeline needs a value");
  EXPECT_EQ(error({"-p", "1", "-o", "r.json"}),
            "-o r.json names a json file but the report is text: choose JSON with --json");
  EXPECT_EQ(error({"-p", "1", "--csv"}), "unknown option '--csv'");
}

TEST(TraceArgs, RingbufMbIsOneToOneThousandTwentyFour) {
  for (const char* good : {"1", "1024"}) {
    cli::TraceOptions o;
    ASSERT_TRUE(trace({"-p", "1", "--ringbuf-mb", good}, &o).ok) << good;
    EXPECT_EQ(o.ringbuf_mb, static_cast<uint32_t>(std::stoul(good)));
  }
  for (const char* bad : {"0", "1025", "-1", "8k", "99999999999"}) {
    cli::TraceOptions o;
    cli::ParseResult r = trace({"-p", "1", "--ringbuf-mb", bad}, &o);
    EXPECT_FALSE(r.ok) << bad;
    EXPECT_EQ(r.error, std::string("invalid --ringbuf-mb '") + bad + "': 1..1024");
  }
}

TEST(ProfileArgs, FrequencyDefaultsAndRangesDependOnTheMode) {
  cli::ProfileOptions cpu;
  ASSERT_TRUE(profile({"-p", "3", "-d", "1"}, &cpu).ok);
  EXPECT_EQ(cpu.hz, 99);
  EXPECT_FALSE(cpu.ringbuf_mb_given);
  cli::ProfileOptions await;
  ASSERT_TRUE(profile({"-p", "3", "--await"}, &await).ok);
  EXPECT_EQ(await.hz, 10);
  cli::ProfileOptions given;
  ASSERT_TRUE(profile({"-p", "3", "-F", "1000", "--ringbuf-mb", "8"}, &given).ok);
  EXPECT_EQ(given.hz, 1000);
  EXPECT_TRUE(given.ringbuf_mb_given);
  EXPECT_EQ(given.ringbuf_mb, 8u);

  auto error = [](const std::vector<std::string>& args) {
    cli::ProfileOptions o;
    cli::ParseResult r = profile(args, &o);
    EXPECT_FALSE(r.ok) << testing::PrintToString(args);
    return r.error;
  };
  EXPECT_EQ(error({"-p", "1", "-F", "1001"}), "-F 1001 is out of range: 1..1000 Hz");
  EXPECT_EQ(error({"-p", "1", "--await", "-F", "101"}),
            "-F 101 is out of range: 1..100 snapshots per second with --await");
  EXPECT_EQ(error({"-p", "1", "-F", "0"}), "invalid frequency '0': 1..1000000");
  EXPECT_EQ(error({"-p", "1", "--await", "--trace", "-F", "10"}),
            "-F does not apply to --await --trace: every wait is measured");
  EXPECT_EQ(error({"-p", "1", "--await", "--kernel"}),
            "--kernel applies to CPU profiles, not --await");
  EXPECT_EQ(error({"-p", "1", "-d", "0"}), "invalid duration '0' for --duration: must be above 0");
  EXPECT_EQ(error({"-p", "1", "--format", "png"}),
            "unknown format 'png': expected text, folded, svg, speedscope, pprof or json");
  EXPECT_EQ(error({"-p", "1", "--await", "--await"}), "option --await given more than once");
}

// Profile documents the format from -o's name (docs/PROFILE_FORMATS.md): no check there.
TEST(ProfileArgs, TheOutputNameMayChooseTheFormat) {
  cli::ProfileOptions o;
  ASSERT_TRUE(profile({"-p", "1", "-o", "cpu.svg"}, &o).ok);
  EXPECT_EQ(o.output, "cpu.svg");
  EXPECT_TRUE(o.format.empty());
  cli::ProfileOptions f;
  ASSERT_TRUE(profile({"-p", "1", "-o", "cpu.svg", "--format", "folded"}, &f).ok);
  EXPECT_EQ(f.format, "folded");
}

TEST(ParseDuration, UnitsZeroAndLimits) {
  EXPECT_EQ(cli::parse_duration("0"), 0.0);
  EXPECT_EQ(cli::parse_duration("2"), 2.0);
  EXPECT_EQ(cli::parse_duration("1.5s"), 1.5);
  EXPECT_EQ(cli::parse_duration("500ms"), 0.5);
  EXPECT_EQ(cli::parse_duration("250us"), 250e-6);
  EXPECT_EQ(cli::parse_duration("2m"), 120.0);
  EXPECT_EQ(cli::parse_duration("2min"), 120.0);
  EXPECT_EQ(cli::parse_duration("1h"), 3600.0);
  EXPECT_EQ(cli::parse_duration("168h"), 7 * 24 * 3600.0);
  for (const char* bad : {"", "soon", "-1s", "1d", "169h", "nan", "inf", "5 s", "1e400"}) {
    EXPECT_FALSE(cli::parse_duration(bad).has_value()) << bad;
  }
}

TEST(ParsePid, DigitsOnlyWithinTheKernelsRange) {
  int pid = 0;
  EXPECT_TRUE(cli::parse_pid("1", &pid));
  EXPECT_EQ(pid, 1);
  EXPECT_TRUE(cli::parse_pid("1073741823", &pid));
  EXPECT_EQ(pid, 0x3fffffff);
  for (const char* bad : {"0", "", "-5", "12a", "1073741824", "99999999999", " 7"}) {
    EXPECT_FALSE(cli::parse_pid(bad, &pid)) << bad;
  }
}

}  // namespace
}  // namespace asyncprobe
