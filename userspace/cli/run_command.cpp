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

#include "userspace/cli/cli_options.h"
#include "userspace/preload/protocol.h"
#include "userspace/util/exit_codes.h"

namespace asyncprobe::cli {

namespace {

constexpr const char* kLibrary = "libasyncprobe-preload.so";
constexpr const char* kBlockingLibrary = "libasyncprobe-preload-blocking.so";
constexpr const char* kHelper = "asyncprobe-preload-helper";

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

const char* run_usage_text() {
  return R"(usage: asyncprobe run [options] -- CMD [ARGS...]

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
}

bool plan_run(const std::vector<std::string>& args, RunPlan* plan, std::string* error, bool* help) {
  std::vector<std::string> options;
  std::string crash_report, trace_out, blocking_out, socket_dir, debug_dirs;
  bool trace = false, trace_from_start = false, blocking = false, follow = false, json = false;
  bool crash = true, socket = true;
  uint64_t blocking_ns = 10'000'000, crash_wait_ms = 30'000;
  *help = false;
  size_t i = 0;
  auto value = [&](const std::string& a, const std::string& name, std::string* out) -> bool {
    if (a.rfind(name + "=", 0) == 0) {
      *out = a.substr(name.size() + 1);
      return true;
    }
    if (a == name) {
      if (i + 1 >= args.size()) {
        *error = "option " + name + " needs a value";
        return false;
      }
      *out = args[++i];
      return true;
    }
    return false;
  };
  for (; i < args.size(); ++i) {
    const std::string& a = args[i];
    std::string v;
    if (a == "--") {
      ++i;
      break;
    }
    if (a == "-h" || a == "--help") {
      *help = true;
      return true;
    } else if (a == "--no-crash-handler") {
      crash = false;
    } else if (a == "--no-socket") {
      socket = false;
    } else if (a == "--trace") {
      trace = true;
    } else if (a == "--json") {
      json = true;
    } else if (a == "--follow-children") {
      follow = true;
    } else if (a == "--blocking") {
      blocking = true;
    } else if (a.rfind("--blocking=", 0) == 0) {
      blocking = true;
      auto d = parse_duration(a.substr(11));
      if (!d || *d <= 0) {
        *error = "invalid duration '" + a.substr(11) + "': use e.g. 500us, 10ms or 1s";
        return false;
      }
      blocking_ns = static_cast<uint64_t>(std::llround(*d * 1e9));
    } else if (value(a, "--crash-wait", &v)) {
      auto d = parse_duration(v);
      if (!d || *d > 3600) {
        *error = "invalid duration '" + v + "': use e.g. 5s (at most 1h)";
        return false;
      }
      crash_wait_ms = static_cast<uint64_t>(std::llround(*d * 1e3));
    } else if (value(a, "--crash-report", &v)) {
      crash_report = absolute(v);
    } else if (value(a, "--trace-out", &v)) {
      trace_out = absolute(v);
      trace = trace_from_start = true;
    } else if (value(a, "--blocking-out", &v)) {
      blocking_out = absolute(v);
      blocking = true;
    } else if (value(a, "--debug-dir", &v)) {
      debug_dirs += (debug_dirs.empty() ? "" : ":") + absolute(v);
    } else if (value(a, "--socket-dir", &v)) {
      socket_dir = absolute(v);
    } else if (error->empty() && a.rfind('-', 0) != 0) {
      break;  // the command itself, without "--"
    } else {
      if (error->empty()) *error = "unknown option '" + a + "' (see asyncprobe run --help)";
      return false;
    }
    if (!error->empty()) return false;
  }
  if (i >= args.size()) {
    *error = "no command: asyncprobe run [options] -- CMD [ARGS...]";
    return false;
  }
  plan->argv.assign(args.begin() + static_cast<long>(i), args.end());

  std::string lib = find_preload_file(kLibrary);
  if (lib.empty()) {
    *error = std::string("cannot find ") + kLibrary +
             " (set ASYNCPROBE_PRELOAD_DIR or reinstall asyncprobe)";
    return false;
  }
  std::string preload = lib;
  if (blocking) {
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

  options.push_back(crash ? "crash" : "no-crash");
  options.push_back(socket ? "socket" : "no-socket");
  if (trace) options.push_back(trace_from_start ? "trace-from-start" : "trace");
  if (blocking) options.push_back("blocking=" + std::to_string(blocking_ns));
  if (follow) options.push_back("follow-children");
  if (json) options.push_back("json");
  options.push_back("crash-wait=" + std::to_string(crash_wait_ms));
  std::string joined;
  for (const auto& o : options) joined += (joined.empty() ? "" : ",") + o;

  plan->env.emplace_back("LD_PRELOAD", preload);
  plan->env.emplace_back(preload_proto::kEnvOptions, joined);
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
  set_or_unset(preload_proto::kEnvCrashReport, crash_report);
  set_or_unset(preload_proto::kEnvTraceOut, trace_out);
  set_or_unset(preload_proto::kEnvBlockingOut, blocking_out);
  set_or_unset(preload_proto::kEnvDebugDirs, debug_dirs);
  set_or_unset(preload_proto::kEnvSocketDir, socket_dir);
  return true;
}

int run_main(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  RunPlan plan;
  std::string error;
  bool help = false;
  if (!plan_run(args, &plan, &error, &help)) {
    std::cerr << "asyncprobe: " << error << "\n";
    return error.rfind("cannot find", 0) == 0 ? util::kExitInternal : util::kExitUsage;
  }
  if (help) {
    std::cout << run_usage_text();
    return util::kExitOk;
  }
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
