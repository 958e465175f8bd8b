#include "userspace/cli/run_command.h"

#include <elf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>

#include "userspace/preload/protocol.h"
#include "userspace/util/exit_codes.h"

namespace asyncprobe::cli {

namespace {

constexpr const char* kLibrary = "libasyncprobe-preload.so";
constexpr const char* kBlockingLibrary = "libasyncprobe-preload-blocking.so";
constexpr const char* kHelper = "asyncprobe-preload-helper";

const char kUsage[] = R"(usage: asyncprobe run [options] -- CMD [ARGS...]

Runs CMD with the asyncprobe preload library: no root, no recompilation. CMD keeps its pid,
output and exit status. While it runs:
  - a crash (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT) or std::terminate prints the thread's stack
    and the async stack of the coroutine it was running, then the process dies the same way;
  - `asyncprobe -p PID`, run by the same user, reads it through a private socket;
  - with --trace, `asyncprobe trace -p PID` counts coroutine resumes in-process.

options:
  --crash-report FILE     also append crash and std::terminate reports to FILE
  --crash-wait DURATION   how long a crash waits for symbol tables still being computed
                          (default 30s)
  --no-crash-handler      do not install the crash and terminate handlers
  --no-socket             do not serve snapshots over the socket
  --trace                 patch coroutine resume functions at load time, so that
                          `asyncprobe trace -p PID` can count resumes without root
  --trace-out FILE        count every resume from start to exit and write the report to FILE
                          when CMD exits (implies --trace)
  --blocking[=DURATION]   record blocking calls (locks, sleeps, poll/epoll, reads, writes)
                          that last DURATION or longer (default 10ms) while a coroutine runs
  --blocking-out FILE     write the blocking-call report to FILE at exit (default: stderr)
  --json                  write the reports at exit as JSON
  --follow-children       programs CMD starts run with the library too
  --debug-dir DIR         extra debug-file root (repeatable)
  --socket-dir DIR        directory for the socket (default /tmp/asyncprobe-UID)
  -h, --help              this text

exit status: CMD's own; 127 CMD not found, 126 CMD not executable, 2 usage, 1 the preload
library is not installed, 4 CMD is set-user-ID (the loader would ignore the library), 6 CMD is
not a dynamically linked 64-bit x86-64 program.
)";

std::string self_dir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string path(buf, static_cast<size_t>(n));
  return path.substr(0, path.rfind('/'));
}

std::string absolute(const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  char buf[4096];
  if (getcwd(buf, sizeof buf) == nullptr) return path;
  return std::string(buf) + "/" + path;
}

// The file execvp would run for `cmd`, or "" when it finds none.
std::string resolve_command(const std::string& cmd) {
  if (cmd.find('/') != std::string::npos) return cmd;
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  for (size_t at = 0; at <= dirs.size();) {
    size_t colon = dirs.find(':', at);
    if (colon == std::string::npos) colon = dirs.size();
    std::string dir = colon > at ? dirs.substr(at, colon - at) : ".";
    std::string candidate = dir;
    candidate += "/";
    candidate += cmd;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    at = colon + 1;
  }
  return "";
}

// Programs the dynamic loader will not preload us into: other architectures, static binaries,
// set-user-ID programs run by another user. "" when CMD is fine (or not an ELF: a script's
// interpreter is what gets preloaded).
std::string unsupported_command(const std::string& cmd, int* code) {
  std::string path = resolve_command(cmd);
  if (path.empty()) return "";
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return "";
  if ((st.st_mode & (S_ISUID | S_ISGID)) != 0 && geteuid() != 0) {
    *code = util::kExitPermission;
    return "'" + cmd +
           "' is set-user-ID or set-group-ID: the dynamic loader ignores LD_PRELOAD for it";
  }
  std::ifstream in(path, std::ios::binary);
  Elf64_Ehdr eh{};
  if (!in.read(reinterpret_cast<char*>(&eh), sizeof eh) ||
      std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0)
    return "";
  *code = util::kExitUnsupported;
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_X86_64) {
    return "'" + cmd + "' is not a 64-bit x86-64 program";
  }
  bool dynamic = false;
  for (int i = 0; i < eh.e_phnum && in; ++i) {
    Elf64_Phdr ph{};
    in.seekg(static_cast<std::streamoff>(eh.e_phoff + static_cast<uint64_t>(i) * eh.e_phentsize));
    if (!in.read(reinterpret_cast<char*>(&ph), sizeof ph)) break;
    dynamic |= ph.p_type == PT_INTERP;
  }
  if (!dynamic)
    return "'" + cmd + "' is statically linked: no dynamic loader to preload the library";
  return "";
}

}  // namespace

std::string find_preload_file(const std::string& name) {
  std::vector<std::string> dirs;
  if (const char* d = std::getenv("ASYNCPROBE_PRELOAD_DIR"); d != nullptr && d[0] != '\0')
    dirs.push_back(d);
  std::string exe = self_dir();
  dirs.push_back(exe);
  dirs.push_back(exe + "/..");
  dirs.push_back(exe + "/../lib/asyncprobe");
  dirs.push_back("/usr/local/lib/asyncprobe");
  dirs.push_back("/usr/lib/asyncprobe");
  for (const auto& d : dirs) {
    std::string p = d;
    p += "/";
    p += name;
    if (access(p.c_str(), R_OK) == 0) {
      char real[4096];
      if (realpath(p.c_str(), real) != nullptr) return real;
      return p;
    }
  }
  return "";
}

ParseResult parse_run_args(int argc, char** argv, RunOptions* o) {
  OptionParser p("run");
  p.text("--crash-report", &o->crash_report);
  p.duration("--crash-wait", &o->crash_wait_s, DurationRange::kZeroOrMore, 3600);
  bool no_crash = false, no_socket = false;
  p.flag("--no-crash-handler", &no_crash);
  p.flag("--no-socket", &no_socket);
  p.flag("--trace", &o->trace);
  p.text("--trace-out", &o->trace_out);
  std::string blocking;
  CLI::Option* blocking_opt = p.flag_with_value("--blocking", "10ms", &blocking);
  p.text("--blocking-out", &o->blocking_out);
  p.flag("--json", &o->json);
  p.flag("--follow-children", &o->follow);
  p.texts("--debug-dir", &o->debug_dirs);
  p.text("--socket-dir", &o->socket_dir);
  p.stop_at_first_argument();
  ParseResult r = p.parse(argc, argv, &o->argv);
  if (!r.ok || r.help) return r;
  auto fail = [&r](std::string message) {
    r.ok = false;
    r.error = std::move(message);
    return r;
  };
  if (blocking_opt->count() > 0) {
    const std::optional<double> d = parse_duration(blocking);
    if (!d || *d <= 0)
      return fail("invalid duration '" + blocking + "' for --blocking: use e.g. 500us, 10ms or 1s");
    o->blocking = true;
    o->blocking_s = *d;
  }
  if (o->argv.empty()) return fail("no command: asyncprobe run [options] -- CMD [ARGS...]");
  o->crash = !no_crash;
  o->socket = !no_socket;
  if (!o->trace_out.empty()) o->trace = o->trace_from_start = true;
  if (!o->blocking_out.empty()) o->blocking = true;
  for (std::string* path : {&o->crash_report, &o->trace_out, &o->blocking_out, &o->socket_dir}) {
    *path = absolute(*path);
  }
  for (std::string& d : o->debug_dirs) d = absolute(d);
  return r;
}

namespace {

// ASYNCPROBE_PRELOAD_OPTIONS: what the library reads at load time.
std::string library_options(const RunOptions& o) {
  std::vector<std::string> options;
  options.push_back(o.crash ? "crash" : "no-crash");
  options.push_back(o.socket ? "socket" : "no-socket");
  if (o.trace) options.push_back(o.trace_from_start ? "trace-from-start" : "trace");
  if (o.blocking) {
    options.push_back("blocking=" + std::to_string(std::llround(o.blocking_s * 1e9)));
  }
  if (o.follow) options.push_back("follow-children");
  if (o.json) options.push_back("json");
  options.push_back("crash-wait=" + std::to_string(std::llround(o.crash_wait_s * 1e3)));
  std::string joined;
  for (const auto& opt : options) joined += (joined.empty() ? "" : ",") + opt;
  return joined;
}

}  // namespace

bool plan_run(const RunOptions& o, RunPlan* plan, std::string* error) {
  plan->argv = o.argv;
  std::string lib = find_preload_file(kLibrary);
  if (lib.empty()) {
    *error = std::string("cannot find ") + kLibrary +
             " (set ASYNCPROBE_PRELOAD_DIR or reinstall asyncprobe)";
    return false;
  }
  std::string preload = lib;
  if (o.blocking) {
    std::string blib = find_preload_file(kBlockingLibrary);
    if (blib.empty()) {
      *error = std::string("cannot find ") + kBlockingLibrary;
      return false;
    }
    preload += ":" + blib;
  }
  const char* orig = std::getenv("LD_PRELOAD");
  std::string orig_value = orig != nullptr ? orig : "";
  if (!orig_value.empty()) preload += ":" + orig_value;

  plan->env.emplace_back("LD_PRELOAD", preload);
  plan->env.emplace_back(preload_proto::kEnvOptions, library_options(o));
  plan->env.emplace_back(preload_proto::kEnvOrigPreload, orig_value);
  std::string helper = find_preload_file(kHelper);
  if (!helper.empty()) plan->env.emplace_back(preload_proto::kEnvHelper, helper);
  auto set_or_unset = [&](const char* name, const std::string& v) {
    if (v.empty()) {
      plan->unset.emplace_back(name);
    } else {
      plan->env.emplace_back(name, v);
    }
  };
  std::string debug_dirs;
  for (const std::string& d : o.debug_dirs) debug_dirs += (debug_dirs.empty() ? "" : ":") + d;
  set_or_unset(preload_proto::kEnvCrashReport, o.crash_report);
  set_or_unset(preload_proto::kEnvTraceOut, o.trace_out);
  set_or_unset(preload_proto::kEnvBlockingOut, o.blocking_out);
  set_or_unset(preload_proto::kEnvDebugDirs, debug_dirs);
  set_or_unset(preload_proto::kEnvSocketDir, o.socket_dir);
  return true;
}

int run_main(int argc, char** argv) {
  RunOptions o;
  if (int rc = finish_parse(parse_run_args(argc, argv, &o), "run", kUsage); rc >= 0) return rc;
  RunPlan plan;
  std::string error;
  if (!plan_run(o, &plan, &error)) return fail_with_message(error, util::kExitInternal);
  int code = util::kExitOk;
  std::string unsupported = unsupported_command(plan.argv[0], &code);
  if (!unsupported.empty()) {
    std::cerr << "asyncprobe: " << unsupported << "\n";
    return code;
  }
  for (const auto& [k, v] : plan.env) setenv(k.c_str(), v.c_str(), 1);
  for (const auto& k : plan.unset) unsetenv(k.c_str());
  std::vector<char*> cargv;
  for (auto& a : plan.argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  std::cout.flush();
  execvp(cargv[0], cargv.data());
  int e = errno;
  std::cerr << "asyncprobe: cannot run '" << plan.argv[0] << "': " << std::strerror(e) << "\n";
  return e == ENOENT ? 127 : 126;
}

}  // namespace asyncprobe::cli
