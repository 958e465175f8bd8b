// Symbolizer benchmark (issue 4): symbolizes N addresses inside the functions of one ELF object
// with DWARF, with our symbolizer (symbolizer/module.h: load, index, look up) and with
// llvm-symbolizer (one process, all addresses on stdin) on the same input in the same run;
// prints both times, the ratio and how often the two agree on the function names.
//
// Usage: symbolize_bench OBJECT [--addresses N] [--seed S] [--rounds R]
//                        [--llvm-symbolizer PATH] [--work DIR] [--dump FILE] [--ours-only]
// The times are the median of R rounds; each of our rounds loads the module from scratch.
// --dump writes every frame of our answers (name, inlined or not, file:line:column), one address
// after the other, so that two versions of the symbolizer can be diffed on the same input;
// --ours-only skips llvm-symbolizer (for profiling and dumps).
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "symbolizer/module.h"

namespace {

using asyncprobe::symbolizer::FrameRef;
using asyncprobe::symbolizer::InlineFrame;
using asyncprobe::symbolizer::Module;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string object;
  size_t addresses = 100000;
  uint64_t seed = 1;
  int rounds = 3;
  std::string llvm = "llvm-symbolizer";
  std::string work = "/tmp";
  std::string dump;
  bool ours_only = false;
};

// One address's answer from either symbolizer: function names innermost first, and the line of
// the innermost frame.
struct Answer {
  std::vector<std::string> functions;
  int line = 0;
};

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "symbolize_bench: %s\n", why.c_str());
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--addresses") {
      o.addresses = std::stoul(value());
    } else if (a == "--seed") {
      o.seed = std::stoull(value());
    } else if (a == "--rounds") {
      o.rounds = std::max(1, std::stoi(value()));
    } else if (a == "--llvm-symbolizer") {
      o.llvm = value();
    } else if (a == "--work") {
      o.work = value();
    } else if (a == "--dump") {
      o.dump = value();
    } else if (a == "--ours-only") {
      o.ours_only = true;
    } else if (o.object.empty() && a[0] != '-') {
      o.object = a;
    } else {
      die("unknown argument " + a);
    }
  }
  if (o.object.empty()) die("usage: symbolize_bench OBJECT [--addresses N] [--seed S] ...");
  return o;
}

// Addresses spread over the object's code: a function symbol chosen uniformly, then an offset
// inside it, so every function is as likely as every other (not just the big ones).
std::vector<uint64_t> pick_addresses(const Module& m, const Options& o) {
  std::vector<const asyncprobe::symbolizer::ElfSymbol*> functions;
  for (const auto& s : m.object().symbols()) {
    if (s.is_function && s.size > 0 && s.value > 0) functions.push_back(&s);
  }
  if (functions.empty()) die(o.object + ": no function symbols with sizes");
  std::mt19937_64 rng(o.seed);
  std::vector<uint64_t> out;
  out.reserve(o.addresses);
  for (size_t i = 0; i < o.addresses; ++i) {
    const auto* f = functions[rng() % functions.size()];
    out.push_back(f->value + rng() % f->size);
  }
  return out;
}

// CPU time (user + system) of this thread: what a busy shared machine disturbs least.
double thread_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Ours: load the module (ELF, DWARF, index built on the first lookup) and symbolize every
// address through symbolize_refs, the call for a profiler that interns names: frames whose
// strings stay in the module. (symbolize, a std::string per frame, is timed once after the
// rounds.)
double run_ours(const Options& o, const std::vector<uint64_t>& addrs, double* load_s,
                size_t* checksum, double* cpu_s, double* lookup_cpu_s) {
  const Clock::time_point t0 = Clock::now();
  const double c0 = thread_cpu_s();
  std::string error;
  std::unique_ptr<Module> m = Module::load(o.object, o.object, {}, &error);
  if (m == nullptr) die(error);
  std::vector<FrameRef> frames;
  m->symbolize_refs(addrs[0], &frames);  // builds the DWARF index
  *load_s = seconds_since(t0);
  const double c1 = thread_cpu_s();
  size_t sum = 0;
  for (const uint64_t a : addrs) {
    m->symbolize_refs(a, &frames);
    sum += frames.size() + (frames.empty() ? 0 : frames.front().function.size());
  }
  *checksum = sum;
  *cpu_s = thread_cpu_s() - c0;
  *lookup_cpu_s = thread_cpu_s() - c1;
  return seconds_since(t0);
}

// llvm-symbolizer: one process reads every address from a file on stdin. Started with
// posix_spawn (vfork semantics), not fork: a fork would mark this process's pages (our index
// of up to 100 MB) copy-on-write, and our next round would pay a page fault per page written.
double run_llvm(const Options& o, const std::string& input, const std::string& output,
                double* cpu_s) {
  const Clock::time_point t0 = Clock::now();
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, input.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, output.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  const std::string obj = "--obj=" + o.object;
  const char* args[] = {o.llvm.c_str(), obj.c_str(),           "--inlines",
                        "--demangle",   "--functions=linkage", nullptr};
  pid_t pid = 0;
  const int err = posix_spawnp(&pid, o.llvm.c_str(), &actions, nullptr,
                               const_cast<char* const*>(args), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) die("cannot start " + o.llvm);
  int status = 0;
  rusage ru{};
  wait4(pid, &status, 0, &ru);
  const double s = seconds_since(t0);
  *cpu_s = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("llvm-symbolizer failed: " + o.llvm);
  return s;
}

// llvm-symbolizer's default output: per address, "function\nfile:line:column\n" per frame
// (innermost first), then a blank line. Unknown: "??". Reads the next address's answer.
bool next_llvm_answer(std::istream& in, Answer* out) {
  *out = Answer{};
  std::string fn, loc;
  while (std::getline(in, fn)) {
    if (fn.empty()) {
      if (!out->functions.empty()) return true;
      continue;
    }
    if (!std::getline(in, loc)) return false;
    if (out->functions.empty()) {
      // file:line:column; the file may itself contain ':'.
      const size_t c2 = loc.rfind(':');
      const size_t c1 =
          c2 == std::string::npos || c2 == 0 ? std::string::npos : loc.rfind(':', c2 - 1);
      if (c1 != std::string::npos) out->line = std::atoi(loc.c_str() + c1 + 1);
    }
    out->functions.push_back(fn == "??" ? "" : fn);
  }
  return !out->functions.empty();
}

// How two names of one frame relate, from "same" to "different function".
enum class NameMatch {
  kSame,
  kCloneSuffix,
  kWeQualify,
  kQualification,
  kSpelling,
  kLlvmMangled,
  kDifferent
};

const char* match_name(NameMatch m) {
  switch (m) {
    case NameMatch::kSame:
      return "same";
    case NameMatch::kCloneSuffix:
      return "clone suffix (llvm names the symbol, e.g. ' (.cold)', ' (.isra.0)')";
    case NameMatch::kWeQualify:
      return "we qualify (llvm: DWARF's bare name of an inlined function without linkage name)";
    case NameMatch::kQualification:
      return "qualification (same base name; scopes, parameters or return type differ)";
    case NameMatch::kSpelling:
      return "demangler spelling (libstdc++ vs LLVM demangler)";
    case NameMatch::kLlvmMangled:
      return "llvm-symbolizer left the name mangled (its demangler gave up)";
    case NameMatch::kDifferent:
      break;
  }
  return "different function";
}

// Drops llvm-symbolizer's " (.cold)", " (.isra.0)", " (.actor)" ... symbol clone suffixes.
std::string strip_clone(std::string s) {
  while (!s.empty() && s.back() == ')') {
    const size_t open = s.rfind(" (.");
    if (open == std::string::npos || s.find(')', open) != s.size() - 1) break;
    s.erase(open);
  }
  return s;
}

// The two demanglers spell a few things differently.
std::string respell(std::string s) {
  const std::pair<const char*, const char*> pairs[] = {{"decltype(nullptr)", "std::nullptr_t"}};
  for (const auto& [from, to] : pairs) {
    for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at)) {
      s.replace(at, std::string(from).size(), to);
    }
  }
  return s;
}

// The bare function name: no return type, scope, template arguments or parameters.
std::string base_name(const std::string& full) {
  const std::string s = strip_clone(full);
  int angle = 0, paren = 0;
  size_t start = 0, end = s.size();
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (s.compare(i, 21, "(anonymous namespace)") == 0) {
      i += 20;
      continue;
    }
    // decltype(...) return types and lambda names hold parentheses of their own: skip them.
    if (s.compare(i, 8, "decltype") == 0 || s.compare(i, 7, "'lambda") == 0 ||
        s.compare(i, 8, "'unnamed") == 0 || s.compare(i, 7, "{lambda") == 0 ||
        s.compare(i, 8, "{unnamed") == 0) {
      const char close = c == '{' ? '}' : ')';
      const char open = c == '{' ? '{' : '(';
      size_t j = s.find(open, i + (c == '{' ? 0 : 1));
      for (int depth = 0; j != std::string::npos && j < s.size(); ++j) {
        if (s[j] == open) ++depth;
        if (s[j] == close && --depth == 0) break;
      }
      if (j == std::string::npos || j >= s.size()) break;
      i = j;
      continue;
    }
    if (c == '(' && angle == 0 && paren == 0) {
      if (s.compare(0 > static_cast<long>(i) - 8 ? 0 : i - 8, 8, "operator") == 0 &&
          s.compare(i, 2, "()") == 0) {
        ++i;  // operator()
        continue;
      }
      // "f(args)::local" names an entity inside f: keep scanning after the parameters.
      size_t j = i;
      for (int depth = 0; j < s.size(); ++j) {
        if (s[j] == '(') ++depth;
        if (s[j] == ')' && --depth == 0) break;
      }
      if (j + 2 < s.size() && s.compare(j + 1, 2, "::") == 0) {
        start = j + 3;
        i = j + 2;
        continue;
      }
      end = i;
      break;
    }
    if (c == '<') ++angle;
    if (c == '>' && angle > 0) --angle;
    if (c == '(') ++paren;
    if (c == ')' && paren > 0) --paren;
    if (angle == 0 && paren == 0 &&
        (c == ' ' || (c == ':' && i + 1 < s.size() && s[i + 1] == ':'))) {
      start = c == ' ' ? i + 1 : i + 2;
    }
  }
  std::string name = s.substr(start, end - start);
  if (!name.empty() && name.back() == '>' && name.rfind("operator", 0) != 0) {
    int depth = 0;
    for (size_t i = name.size(); i-- > 0;) {
      if (name[i] == '>') ++depth;
      if (name[i] == '<' && --depth == 0) {
        name.erase(i);
        break;
      }
    }
  }
  return name;
}

NameMatch compare_names(const std::string& ours, const std::string& llvm) {
  if (ours == llvm) return NameMatch::kSame;
  if (ours == strip_clone(llvm)) return NameMatch::kCloneSuffix;
  if (!ours.empty() && llvm.rfind(ours + ".", 0) == 0) return NameMatch::kCloneSuffix;  // C names
  if (respell(ours) == respell(strip_clone(llvm))) return NameMatch::kSpelling;
  if (llvm.rfind("_Z", 0) == 0 && !ours.empty() && ours.rfind("_Z", 0) != 0) {
    return NameMatch::kLlvmMangled;
  }
  if (!llvm.empty() && ours.size() > llvm.size() + 2 &&
      ours.compare(ours.size() - llvm.size() - 2, std::string::npos, "::" + llvm) == 0) {
    return NameMatch::kWeQualify;
  }
  if (!ours.empty() && respell(base_name(ours)) == respell(base_name(llvm))) {
    return NameMatch::kQualification;
  }
  return NameMatch::kDifferent;
}

// The timed rounds: ours each round from a fresh module, llvm-symbolizer on the same input.
struct Rounds {
  std::vector<double> ours, ours_load, llvm, ours_cpu, llvm_cpu, ours_lookup_cpu;
  size_t checksum = 0;
};

Rounds run_rounds(const Options& o, const std::vector<uint64_t>& addrs, const std::string& input,
                  const std::string& output) {
  Rounds r;
  for (int i = 0; i < o.rounds; ++i) {
    double load = 0, cpu = 0, lookup_cpu = 0;
    r.ours.push_back(run_ours(o, addrs, &load, &r.checksum, &cpu, &lookup_cpu));
    r.ours_lookup_cpu.push_back(lookup_cpu);
    r.ours_load.push_back(load);
    r.ours_cpu.push_back(cpu);
    if (o.ours_only) continue;
    r.llvm.push_back(run_llvm(o, input, output, &cpu));
    r.llvm_cpu.push_back(cpu);
  }
  return r;
}

// The same lookups through symbolize() (a std::string per frame), once, from a fresh module as in
// the rounds (the index is built first and not counted): its CPU seconds; dies when its answers
// differ from symbolize_refs()'s (`checksum`).
double string_api_seconds(const Module& m, const std::vector<uint64_t>& addrs, size_t checksum) {
  m.symbolize(addrs[0]);
  const double c0 = thread_cpu_s();
  size_t sum = 0;
  for (const uint64_t a : addrs) {
    const std::vector<InlineFrame> frames = m.symbolize(a);
    sum += frames.size() + (frames.empty() ? 0 : frames.front().function.size());
  }
  const double s = thread_cpu_s() - c0;
  if (sum != checksum) die("symbolize() and symbolize_refs() answer differently");
  return s;
}

// How our answers and llvm-symbolizer's compare, address by address.
struct Agreement {
  size_t same_leaf = 0, same_chain = 0, same_line = 0, explained_chain = 0, frames_seen = 0;
  std::map<NameMatch, size_t> frame_matches;  // over all frames of chains of equal length
  size_t depth_differs = 0;
  std::vector<std::string> examples;  // of unexplained differences
  std::vector<std::string> qualification_examples;
};

// One address's frames into `dump` (name, inlined or not, file:line:column).
void dump_frames(std::FILE* dump, uint64_t addr, const std::vector<InlineFrame>& frames) {
  std::fprintf(dump, "0x%" PRIx64 "\n", addr);
  for (const InlineFrame& f : frames) {
    std::fprintf(dump, "  %s%s @ %s:%d:%d\n", f.inlined ? "inlined " : "", f.function.c_str(),
                 f.location.file.c_str(), f.location.line, f.location.column);
  }
}

// The first frame of the chain (innermost = #0) whose names differ, as an example line.
std::string difference_example(uint64_t addr, const Answer& a, const Answer& b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%" PRIx64, addr);
  size_t k = 0;
  while (k < a.functions.size() && k < b.functions.size() &&
         compare_names(a.functions[k], b.functions[k]) != NameMatch::kDifferent) {
    ++k;
  }
  return std::string("  ") + buf + " frame #" + std::to_string(k) + " of " +
         std::to_string(a.functions.size()) + "\n    ours: [" +
         (k < a.functions.size() ? a.functions[k] : "") + "]\n    llvm: [" +
         (k < b.functions.size() ? b.functions[k] : "") + "]";
}

void count_agreement(uint64_t addr, const Answer& a, const Answer& b, Agreement* g) {
  const std::string la = a.functions.empty() ? "" : a.functions.front();
  const std::string lb = b.functions.empty() ? "" : b.functions.front();
  if (la == lb) ++g->same_leaf;
  if (a.functions == b.functions) ++g->same_chain;
  if (a.line == b.line) ++g->same_line;
  bool explained = a.functions.size() == b.functions.size();
  if (!explained) ++g->depth_differs;
  for (size_t k = 0; explained && k < a.functions.size(); ++k) {
    const NameMatch nm = compare_names(a.functions[k], b.functions[k]);
    ++g->frame_matches[nm];
    if (nm == NameMatch::kQualification && g->qualification_examples.size() < 3) {
      g->qualification_examples.push_back("    ours: [" + a.functions[k] + "]\n    llvm: [" +
                                          b.functions[k] + "]");
    }
    ++g->frames_seen;
    if (nm == NameMatch::kDifferent) explained = false;
  }
  if (explained) {
    ++g->explained_chain;
  } else if (g->examples.size() < 4) {
    g->examples.push_back(difference_example(addr, a, b));
  }
}

// Agreement, untimed: our answers again, next to llvm-symbolizer's (`theirs`, nothing under
// --ours-only), address by address; every frame into `dump` when given.
Agreement compare_answers(const Module& m, const Options& o, const std::vector<uint64_t>& addrs,
                          std::istream& theirs, std::FILE* dump) {
  Agreement g;
  for (size_t i = 0; i < addrs.size(); ++i) {
    Answer b;
    if (!o.ours_only && !next_llvm_answer(theirs, &b)) {
      die("llvm-symbolizer answered " + std::to_string(i) + " of " + std::to_string(addrs.size()) +
          " addresses");
    }
    Answer a;
    const std::vector<InlineFrame> frames = m.symbolize(addrs[i]);
    for (const InlineFrame& f : frames) a.functions.push_back(f.function);
    if (dump != nullptr) dump_frames(dump, addrs[i], frames);
    if (!frames.empty()) a.line = frames.front().location.line;
    count_agreement(addrs[i], a, b, &g);
  }
  return g;
}

void print_comparison(const Options& o, size_t addresses, const Rounds& r, double string_api_s,
                      const Agreement& g) {
  const double n = static_cast<double>(addresses);
  const double t_ours = median(r.ours), t_llvm = median(r.llvm);
  std::printf("symbolize: %zu addresses in %s (seed %" PRIu64
              ", median of %d rounds, checksum %zu)\n",
              addresses, o.object.c_str(), o.seed, o.rounds, r.checksum);
  std::printf(
      "  asyncprobe symbolizer: %.3f s total (%.3f s load + DWARF index, %.3f s lookups, "
      "%.2f us/address)\n",
      t_ours, median(r.ours_load), t_ours - median(r.ours_load), 1e6 * t_ours / n);
  std::printf("  llvm-symbolizer:       %.3f s total (%.2f us/address)\n", t_llvm,
              1e6 * t_llvm / n);
  std::printf("  CPU time (user+system): asyncprobe %.3f s, llvm-symbolizer %.3f s\n",
              median(r.ours_cpu), median(r.llvm_cpu));
  std::printf(
      "  lookups alone: %.3f s CPU; through symbolize() (a std::string per frame): %.3f s\n",
      median(r.ours_lookup_cpu), string_api_s);
  std::printf("  ratio: %.2fx faster in wall time, %.2fx in CPU time (goal >= 5x)\n",
              t_llvm / t_ours, median(r.llvm_cpu) / median(r.ours_cpu));
  std::printf(
      "  agreement, exact: innermost function %.2f%%, whole inline chain %.2f%%, "
      "innermost line %.2f%%\n",
      100.0 * g.same_leaf / n, 100.0 * g.same_chain / n, 100.0 * g.same_line / n);
  std::printf(
      "  agreement, same functions (names differing only as below): whole inline chain "
      "%.2f%%\n",
      100.0 * g.explained_chain / n);
  std::printf("  frames compared: %zu\n", g.frames_seen);
  for (const auto& [nm, count] : g.frame_matches) {
    std::printf("    %-9zu %s\n", count, match_name(nm));
  }
  std::printf("  inline depth differs: %zu addresses\n", g.depth_differs);
  if (!g.qualification_examples.empty()) std::printf("  first qualification differences:\n");
  for (const auto& ex : g.qualification_examples) std::printf("%s\n", ex.c_str());
  if (!g.examples.empty()) std::printf("  first unexplained differences:\n");
  for (const auto& ex : g.examples) std::printf("%s\n", ex.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  std::string error;
  std::unique_ptr<Module> probe = Module::load(o.object, o.object, {}, &error);
  if (probe == nullptr) die(error);
  if (probe->dwarf() == nullptr) die(o.object + ": no DWARF");
  const std::vector<uint64_t> addrs = pick_addresses(*probe, o);
  probe.reset();

  const std::string input = o.work + "/symbolize-bench-" + std::to_string(getpid()) + ".in";
  const std::string output = o.work + "/symbolize-bench-" + std::to_string(getpid()) + ".out";
  {
    std::ofstream in(input);
    char buf[32];
    for (const uint64_t a : addrs) {
      std::snprintf(buf, sizeof buf, "0x%" PRIx64 "\n", a);
      in << buf;
    }
  }
  const Rounds rounds = run_rounds(o, addrs, input, output);
  if (o.ours_only) {
    std::remove(input.c_str());
    std::printf("symbolize: %zu addresses in %s (seed %" PRIu64
                ", median of %d rounds, checksum %zu), ours only\n",
                addrs.size(), o.object.c_str(), o.seed, o.rounds, rounds.checksum);
    std::printf("  asyncprobe symbolizer: %.3f s total (%.3f s load + DWARF index), %.3f s CPU\n",
                median(rounds.ours), median(rounds.ours_load), median(rounds.ours_cpu));
  }

  std::unique_ptr<Module> m = Module::load(o.object, o.object, {}, &error);
  if (m == nullptr) die(error);
  std::ifstream theirs(o.ours_only ? "/dev/null" : output);
  const double string_api_s = string_api_seconds(*m, addrs, rounds.checksum);
  std::FILE* dump = o.dump.empty() ? nullptr : std::fopen(o.dump.c_str(), "w");
  if (!o.dump.empty() && dump == nullptr) die("cannot write " + o.dump);
  const Agreement agreement = compare_answers(*m, o, addrs, theirs, dump);
  if (dump != nullptr) std::fclose(dump);
  if (o.ours_only) {
    std::printf(
        "  lookups alone: %.3f s CPU; through symbolize() (a std::string per frame): %.3f s\n",
        median(rounds.ours_lookup_cpu), string_api_s);
    return 0;
  }
  std::remove(input.c_str());
  std::remove(output.c_str());
  print_comparison(o, addrs.size(), rounds, string_api_s, agreement);
  return 0;
}
