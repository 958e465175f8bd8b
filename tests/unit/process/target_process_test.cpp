// TargetProcess against real processes: live, gone, kernel thread, zombie, unprivileged reader,
// 32-bit, non-ELF and foreign-architecture executables.
#include "userspace/process/target_process.h"

#include <elf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/prctl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/unit/forked_child.h"
#include "userspace/process/process_maps.h"

namespace asyncprobe {
namespace {

using testing::Child;
using testing::read_all;
using testing::write_all;

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

char proc_state(int pid) {
  auto st = process::parse_proc_stat(slurp("/proc/" + std::to_string(pid) + "/stat"));
  return st ? st->state : '?';
}

// Polls until pred() holds, for up to 10 s.
template <typename Pred>
bool eventually(Pred pred) {
  for (int i = 0; i < 1000; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

std::string self_exe() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

// Opens pid expecting failure; returns the error.
process::TargetError open_error(int pid) {
  try {
    process::TargetProcess::open(pid);
  } catch (const process::TargetError& e) {
    return e;
  }
  ADD_FAILURE() << "open(" << pid << ") succeeded";
  return process::TargetError(util::kExitOk, "");
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/asyncprobe-tp-XXXXXX";
    const char* d = ::mkdtemp(tmpl);
    if (d != nullptr) path_ = d;
  }
  ~TempDir() {
    if (!path_.empty()) (void)std::system(("rm -rf '" + path_ + "'").c_str());
  }
  const std::string& path() const { return path_; }
  std::string write(const std::string& name, const std::vector<unsigned char>& bytes,
                    mode_t mode) const {
    std::string p = path_ + "/" + name;
    int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    EXPECT_GE(fd, 0);
    EXPECT_TRUE(write_all(fd, bytes.data(), bytes.size()));
    ::close(fd);
    return p;
  }

 private:
  std::string path_;
};

void idle_child(int cmd, int reply, const char* name) {
  ::prctl(PR_SET_NAME, name);
  int64_t ready = 1;
  write_all(reply, &ready, sizeof ready);
  char c;
  (void)::read(cmd, &c, 1);  // until the parent closes or kills us
}

TEST(TargetProcess, OpensALiveProcess) {
  Child child([](int c, int r) { idle_child(c, r, "ap-target"); });
  ASSERT_EQ(child.receive<int64_t>(), 1);
  ASSERT_TRUE(eventually([&] { return proc_state(child.pid()) == 'S'; }));
  process::TargetProcess t = process::TargetProcess::open(child.pid());
  EXPECT_EQ(t.pid(), child.pid());
  EXPECT_EQ(t.requested_pid(), child.pid());
  EXPECT_EQ(t.comm(), "ap-target");
  EXPECT_EQ(t.exe_path(), self_exe());
  EXPECT_FALSE(t.exe_deleted());
  EXPECT_EQ(t.state(), 'S');
  EXPECT_TRUE(t.vm_readv_works());
  const std::string proc = "/proc/" + std::to_string(child.pid());
  EXPECT_EQ(t.proc_path(), proc);
  EXPECT_EQ(t.proc_path("maps"), proc + "/maps");
  EXPECT_EQ(t.exe_open_path(), proc + "/exe");
  auto st = process::parse_proc_stat(slurp(proc + "/stat"));
  ASSERT_TRUE(st);
  EXPECT_EQ(t.start_time(), st->start_time);
  EXPECT_TRUE(t.alive());

  std::string comm;
  EXPECT_EQ(t.read_proc_file("comm", 64, &comm), 0);
  EXPECT_EQ(comm, "ap-target\n");

  process::MapsParseResult maps = t.read_maps();
  EXPECT_FALSE(maps.mappings.empty());
  EXPECT_EQ(maps.skipped_lines, 0u);

  process::MappedFile exe = t.open_exe();
  ASSERT_TRUE(exe.fd.valid());
  EXPECT_EQ(exe.path, proc + "/exe");
  char magic[4] = {};
  ASSERT_EQ(::pread(exe.fd.get(), magic, 4, 0), 4);
  EXPECT_EQ(std::memcmp(magic, ELFMAG, 4), 0);

  // libc's first mapping through map_files, verified by device and inode.
  const process::Mapping* libc = nullptr;
  for (const auto& m : maps.mappings) {
    if (m.offset == 0 && m.path.find("/libc.so") != std::string::npos) {
      libc = &m;
      break;
    }
  }
  ASSERT_NE(libc, nullptr);
  std::vector<std::string> routes = t.mapped_file_candidates(*libc);
  char range[64];
  std::snprintf(range, sizeof range, "%llx-%llx", static_cast<unsigned long long>(libc->start),
                static_cast<unsigned long long>(libc->end));
  EXPECT_EQ(routes,
            (std::vector<std::string>{proc + "/map_files/" + range, proc + "/root" + libc->path}));
  process::MappedFile lib = t.open_mapped_file(*libc);
  ASSERT_TRUE(lib.fd.valid());
  EXPECT_TRUE(lib.identity_verified);
  EXPECT_EQ(lib.path, routes[0]);
  ASSERT_EQ(::pread(lib.fd.get(), magic, 4, 0), 4);
  EXPECT_EQ(std::memcmp(magic, ELFMAG, 4), 0);

  // A mapping whose inode does not match is never reported as verified.
  process::Mapping wrong = *libc;
  wrong.inode += 1;
  wrong.start = wrong.end = 0;  // no such map_files entry: only the root route can open
  process::MappedFile w = t.open_mapped_file(wrong);
  EXPECT_TRUE(w.fd.valid());
  EXPECT_FALSE(w.identity_verified);
  EXPECT_EQ(w.path, proc + "/root" + libc->path);

  // A hostile path naming a FIFO is never opened (opening it for reading would block).
  TempDir dir;
  ASSERT_EQ(::mkfifo((dir.path() + "/fifo").c_str(), 0600), 0);
  process::Mapping fifo = *libc;
  fifo.start = fifo.end = 0;
  fifo.path = dir.path() + "/fifo";
  process::MappedFile none = t.open_mapped_file(fifo);
  EXPECT_FALSE(none.fd.valid());
  EXPECT_EQ(none.path, proc + "/root" + fifo.path);  // the last route tried

  child.kill_and_reap();
  EXPECT_FALSE(t.alive());
  try {
    t.read_maps();
    ADD_FAILURE() << "read_maps on a reaped process";
  } catch (const process::TargetError& e) {
    EXPECT_EQ(e.code(), util::kExitTargetExited);
  }
}

TEST(TargetProcess, DeadButUnreapedIsNotAlive) {
  Child child([](int c, int r) { idle_child(c, r, "ap-dying"); });
  ASSERT_EQ(child.receive<int64_t>(), 1);
  process::TargetProcess t = process::TargetProcess::open(child.pid());
  EXPECT_TRUE(t.alive());
  ::kill(child.pid(), SIGKILL);
  ASSERT_TRUE(eventually([&] { return proc_state(child.pid()) == 'Z'; }));
  EXPECT_FALSE(t.alive());
}

TEST(TargetProcess, ThreadIdResolvesToItsProcess) {
  Child child([](int c, int r) {
    std::thread th([r] {
      int64_t tid = ::gettid();
      write_all(r, &tid, sizeof tid);
      ::pause();
    });
    char ch;
    (void)::read(c, &ch, 1);
    ::_exit(0);
  });
  const int64_t tid = child.receive<int64_t>();
  ASSERT_GT(tid, 0);
  ASSERT_NE(tid, child.pid());
  process::TargetProcess t = process::TargetProcess::open(static_cast<int>(tid));
  EXPECT_EQ(t.pid(), child.pid());
  EXPECT_EQ(t.requested_pid(), tid);
  EXPECT_EQ(t.proc_path(), "/proc/" + std::to_string(child.pid()));
}

TEST(TargetProcess, DeletedExecutableStillOpens) {
  TempDir dir;
  std::string bin = dir.path() + "/ap-deleted";
  ASSERT_EQ(std::system(("cp /bin/sleep '" + bin + "'").c_str()), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execl(bin.c_str(), "ap-deleted", "1000", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  std::string exe_link = "/proc/" + std::to_string(pid) + "/exe";
  ASSERT_TRUE(eventually([&] {
    char buf[4096];
    ssize_t n = ::readlink(exe_link.c_str(), buf, sizeof buf);
    return n > 0 && std::string(buf, static_cast<size_t>(n)) == bin && proc_state(pid) == 'S';
  }));
  ASSERT_EQ(::unlink(bin.c_str()), 0);
  process::TargetProcess t = process::TargetProcess::open(pid);
  EXPECT_EQ(t.comm(), "ap-deleted");
  EXPECT_EQ(t.exe_path(), bin);
  EXPECT_TRUE(t.exe_deleted());
  process::MappedFile exe = t.open_exe();
  ASSERT_TRUE(exe.fd.valid());
  char magic[4] = {};
  ASSERT_EQ(::pread(exe.fd.get(), magic, 4, 0), 4);
  EXPECT_EQ(std::memcmp(magic, ELFMAG, 4), 0);

  process::MapsParseResult maps = t.read_maps();
  const process::Mapping* text = nullptr;
  for (const auto& m : maps.mappings) {
    if (m.path == bin && m.perms.exec) text = &m;
  }
  ASSERT_NE(text, nullptr);
  EXPECT_TRUE(text->deleted);
  process::MappedFile f = t.open_mapped_file(*text);  // only map_files can reach a deleted file
  ASSERT_TRUE(f.fd.valid());
  EXPECT_TRUE(f.identity_verified);
  EXPECT_NE(f.path.find("/map_files/"), std::string::npos);
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

TEST(TargetProcess, NonexistentPid) {
  std::string max_text = slurp("/proc/sys/kernel/pid_max");
  int pid_max = std::atoi(max_text.c_str());
  ASSERT_GT(pid_max, 300);
  int free_pid = 0;
  for (int p = pid_max - 1; p > 300; --p) {
    if (::kill(p, 0) != 0 && errno == ESRCH) {
      free_pid = p;
      break;
    }
  }
  ASSERT_NE(free_pid, 0);
  process::TargetError e = open_error(free_pid);
  EXPECT_EQ(e.code(), util::kExitNoProcess);
  EXPECT_EQ(std::string(e.what()), "no such process: PID " + std::to_string(free_pid));
}

TEST(TargetProcess, InvalidPid) {
  for (int pid : {0, -5}) {
    process::TargetError e = open_error(pid);
    EXPECT_EQ(e.code(), util::kExitUsage);
    EXPECT_EQ(std::string(e.what()),
              "invalid PID " + std::to_string(pid) + ": expected a positive process id");
  }
}

TEST(TargetProcess, KernelThread) {
  if (slurp("/proc/2/comm") != "kthreadd\n") GTEST_SKIP() << "PID 2 is not kthreadd here";
  process::TargetError e = open_error(2);
  EXPECT_EQ(e.code(), util::kExitNotInspectable);
  EXPECT_EQ(std::string(e.what()),
            "process 2 (kthreadd) is a kernel thread: it has no user memory to read");
}

TEST(TargetProcess, Zombie) {
  Child child([](int, int) {
    ::prctl(PR_SET_NAME, "ap-zombie");
    ::_exit(0);
  });
  ASSERT_TRUE(eventually([&] { return proc_state(child.pid()) == 'Z'; }));
  process::TargetError e = open_error(child.pid());
  EXPECT_EQ(e.code(), util::kExitNotInspectable);
  EXPECT_EQ(std::string(e.what()),
            "process " + std::to_string(child.pid()) +
                " (ap-zombie) is a zombie (exited, not yet reaped by its parent): no memory to "
                "read");
}

TEST(TargetProcess, ExitedMainThreadWithLiveThreads) {
  Child child([](int, int r) {
    ::prctl(PR_SET_NAME, "ap-leaderless");
    std::thread([r] {
      int64_t ready = 1;
      write_all(r, &ready, sizeof ready);
      for (;;) ::pause();
    }).detach();
    ::syscall(SYS_exit, 0);  // ends only this thread, without unwinding through gtest
  });
  ASSERT_EQ(child.receive<int64_t>(), 1);
  ASSERT_TRUE(eventually([&] { return proc_state(child.pid()) == 'Z'; }));
  process::TargetError e = open_error(child.pid());
  EXPECT_EQ(e.code(), util::kExitNotInspectable);
  EXPECT_EQ(std::string(e.what()),
            "process " + std::to_string(child.pid()) +
                " (ap-leaderless): its main thread has exited while 1 other thread(s) still run; "
                "its memory cannot be read through PID " +
                std::to_string(child.pid()));
}

TEST(TargetProcess, UnprivilegedReaderIsDeniedWithTheCapabilityNamed) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to drop to uid 65534";
  const int parent = ::getpid();
  Child child([parent](int, int r) {
    int64_t code = -1;
    std::string msg;
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) {
      msg = "setuid failed";
    } else {
      try {
        process::TargetProcess::open(parent);
        code = 0;
        msg = "opened";
      } catch (const process::TargetError& e) {
        code = e.code();
        msg = e.what();
      }
    }
    int64_t len = static_cast<int64_t>(msg.size());
    write_all(r, &code, sizeof code);
    write_all(r, &len, sizeof len);
    write_all(r, msg.data(), msg.size());
  });
  const int64_t code = child.receive<int64_t>();
  const int64_t len = child.receive<int64_t>();
  ASSERT_GE(len, 0);
  ASSERT_LT(len, 4096);
  std::string msg(static_cast<size_t>(len), '\0');
  ASSERT_TRUE(child.receive_bytes(msg.data(), msg.size()));
  EXPECT_EQ(code, util::kExitPermission) << msg;
  std::string comm = slurp("/proc/self/comm");
  if (!comm.empty()) comm.pop_back();
  const std::string expected = "cannot read process " + std::to_string(parent) + " (" + comm +
                               "): /proc/" + std::to_string(parent) +
                               "/exe: Permission denied; need root or CAP_SYS_PTRACE (running "
                               "as uid 65534 without CAP_SYS_PTRACE, target owned by uid 0)";
  if (::access("/proc/sys/kernel/yama/ptrace_scope", F_OK) != 0) {
    EXPECT_EQ(msg, expected);
  } else {
    EXPECT_EQ(msg.substr(0, expected.size()), expected);
  }
  EXPECT_EQ(msg.find('\n'), std::string::npos);
}

// A minimal static i386 executable: one PT_LOAD whose code loops on pause() via int 0x80.
std::vector<unsigned char> elf32_pause_loop() {
  const unsigned char code[] = {
      0xb8, 29,   0, 0, 0,  // mov eax, 29 (i386 pause)
      0xcd, 0x80,           // int 0x80
      0xeb, 0xf7,           // jmp back to mov
  };
  const uint32_t base = 0x08048000;
  Elf32_Ehdr eh{};
  Elf32_Phdr ph{};
  const uint32_t code_off = sizeof eh + sizeof ph;
  const uint32_t total = code_off + sizeof code;
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS32;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_ident[EI_OSABI] = ELFOSABI_SYSV;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_386;
  eh.e_version = EV_CURRENT;
  eh.e_entry = base + code_off;
  eh.e_phoff = sizeof eh;
  eh.e_ehsize = sizeof eh;
  eh.e_phentsize = sizeof ph;
  eh.e_phnum = 1;
  ph.p_type = PT_LOAD;
  ph.p_offset = 0;
  ph.p_vaddr = ph.p_paddr = base;
  ph.p_filesz = ph.p_memsz = total;
  ph.p_flags = PF_R | PF_X;
  ph.p_align = 0x1000;
  std::vector<unsigned char> out(total);
  std::memcpy(out.data(), &eh, sizeof eh);
  std::memcpy(out.data() + sizeof eh, &ph, sizeof ph);
  std::memcpy(out.data() + code_off, code, sizeof code);
  return out;
}

TEST(TargetProcess, ThirtyTwoBitProcessIsUnsupported) {
  TempDir dir;
  const std::string bin = dir.write("ap-pause32", elf32_pause_loop(), 0755);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execl(bin.c_str(), "ap-pause32", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  bool running = eventually([&] {
    int status;
    if (::waitpid(pid, &status, WNOHANG) == pid) return true;  // exec failed
    return proc_state(pid) == 'S' &&
           slurp("/proc/" + std::to_string(pid) + "/comm") == "ap-pause32\n";
  });
  ASSERT_TRUE(running);
  if (::kill(pid, 0) != 0) {
    GTEST_SKIP() << "this kernel cannot run 32-bit executables (ia32 emulation off); "
                    "ThirtyTwoBitExecutableIsUnsupported covers the check";
  }
  process::TargetError e = open_error(pid);
  EXPECT_EQ(e.code(), util::kExitUnsupported);
  EXPECT_EQ(std::string(e.what()),
            "process " + std::to_string(pid) + " (ap-pause32) runs " + bin +
                ", a 32-bit ELF (i386); asyncprobe supports 64-bit x86-64 ELF processes only");
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

// Makes the calling (forked, single-threaded) process's /proc/self/exe name `new_exe`, the way
// checkpoint/restore tools do: PR_SET_MM_MAP with exe_fd, allowed only once the old executable
// is unmapped. The unmapping has to run from outside the executable, so a small stub copied
// into an anonymous page does it, then the prctl, reports the result on reply_fd and pauses.
[[noreturn]] void replace_own_exe(const std::string& new_exe, int reply_fd) {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf);
  if (n <= 0) ::_exit(10);
  const std::string exe(buf, static_cast<size_t>(n));
  process::MapsParseResult maps;
  if (process::read_maps_file("/proc/self/maps", &maps) != 0) ::_exit(11);

  // Data the stub needs must live outside the executable's mappings: an anonymous page.
  auto* data = static_cast<uint64_t*>(
      ::mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (data == MAP_FAILED) ::_exit(12);
  uint64_t count = 0;
  for (const auto& m : maps.mappings) {
    if (m.path == exe && count < 256) {
      data[2 * count] = m.start;
      data[2 * count + 1] = m.size();
      ++count;
    }
  }
  // The mm fields PR_SET_MM_MAP must be given, from /proc/self/stat (fields 26-28, 45-51).
  std::string stat = slurp("/proc/self/stat");
  std::vector<uint64_t> f(64, 0);
  std::istringstream rest(stat.substr(stat.rfind(')') + 2));
  std::string tok;
  for (size_t i = 3; i < f.size() && rest >> tok; ++i)
    f[i] = std::strtoull(tok.c_str(), nullptr, 10);
  auto* mm = reinterpret_cast<struct prctl_mm_map*>(data + 512);
  std::memset(mm, 0, sizeof *mm);
  mm->start_code = f[26];
  mm->end_code = f[27];
  mm->start_stack = f[28];
  mm->start_data = f[45];
  mm->end_data = f[46];
  mm->start_brk = f[47];
  mm->brk = reinterpret_cast<uint64_t>(::sbrk(0));
  mm->arg_start = f[48];
  mm->arg_end = f[49];
  mm->env_start = f[50];
  mm->env_end = f[51];
  int fd = ::open(new_exe.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) ::_exit(13);
  mm->exe_fd = static_cast<uint32_t>(fd);

  // stub(ranges=rdi, count=rsi, mm_map=rdx, reply_fd=rcx), raw syscalls only.
  static const unsigned char kStub[] = {
      0x49, 0x89, 0xfc,                    // mov r12, rdi
      0x49, 0x89, 0xf5,                    // mov r13, rsi
      0x49, 0x89, 0xd6,                    // mov r14, rdx
      0x49, 0x89, 0xcf,                    // mov r15, rcx
      0x4d, 0x85, 0xed,                    // loop: test r13, r13
      0x74, 0x19,                          // jz done
      0x49, 0x8b, 0x3c, 0x24,              // mov rdi, [r12]
      0x49, 0x8b, 0x74, 0x24, 0x08,        // mov rsi, [r12+8]
      0xb8, 0x0b, 0x00, 0x00, 0x00,        // mov eax, SYS_munmap
      0x0f, 0x05,                          // syscall
      0x49, 0x83, 0xc4, 0x10,              // add r12, 16
      0x49, 0xff, 0xcd,                    // dec r13
      0xeb, 0xe2,                          // jmp loop
      0xbf, 0x23, 0x00, 0x00, 0x00,        // done: mov edi, PR_SET_MM
      0xbe, 0x0e, 0x00, 0x00, 0x00,        // mov esi, PR_SET_MM_MAP
      0x4c, 0x89, 0xf2,                    // mov rdx, r14
      0x41, 0xba, 0x68, 0x00, 0x00, 0x00,  // mov r10d, sizeof(struct prctl_mm_map)
      0x45, 0x31, 0xc0,                    // xor r8d, r8d
      0xb8, 0x9d, 0x00, 0x00, 0x00,        // mov eax, SYS_prctl
      0x0f, 0x05,                          // syscall
      0x50,                                // push rax
      0x48, 0x89, 0xe6,                    // mov rsi, rsp
      0xba, 0x08, 0x00, 0x00, 0x00,        // mov edx, 8
      0x44, 0x89, 0xff,                    // mov edi, r15d
      0xb8, 0x01, 0x00, 0x00, 0x00,        // mov eax, SYS_write
      0x0f, 0x05,                          // syscall
      0xb8, 0x22, 0x00, 0x00, 0x00,        // again: mov eax, SYS_pause
      0x0f, 0x05,                          // syscall
      0xeb, 0xf7,                          // jmp again
  };
  static_assert(sizeof(struct prctl_mm_map) == 0x68);
  void* code = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (code == MAP_FAILED) ::_exit(14);
  std::memcpy(code, kStub, sizeof kStub);
  if (::mprotect(code, 4096, PROT_READ | PROT_EXEC) != 0) ::_exit(15);
  using Stub = void (*)(uint64_t*, uint64_t, void*, int64_t);
  reinterpret_cast<Stub>(code)(data, count, mm, reply_fd);
  ::_exit(16);  // not reached: the stub never returns
}

// Runs a child whose /proc/PID/exe names `file`; returns false (and why) if the kernel refuses.
bool child_with_exe(Child** out, const std::string& file, std::string* why) {
  *out = new Child([file](int, int r) { replace_own_exe(file, r); });
  int64_t result = 0;
  if (!(*out)->receive_bytes(&result, sizeof result)) {
    ADD_FAILURE() << "the exe-replacing child died before reporting";
    *why = "child died";
    return false;
  }
  if (result != 0) {
    *why = "PR_SET_MM_MAP failed: " + std::string(std::strerror(static_cast<int>(-result))) +
           " (needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE)";
    return false;
  }
  return true;
}

// A process whose /proc/PID/exe is `file` must be refused as unsupported, with the message
// "process PID (comm) runs FILE<what_it_is>; asyncprobe supports ...". Skips where the exe cannot
// be replaced.
void expect_unsupported_exe(const std::string& file, const std::string& what_it_is) {
  Child* raw = nullptr;
  std::string why;
  bool ok = child_with_exe(&raw, file, &why);
  std::unique_ptr<Child> child(raw);
  if (!ok) GTEST_SKIP() << why;
  std::string comm = slurp("/proc/" + std::to_string(child->pid()) + "/comm");
  comm.pop_back();
  process::TargetError e = open_error(child->pid());
  EXPECT_EQ(e.code(), util::kExitUnsupported);
  EXPECT_EQ(std::string(e.what()), "process " + std::to_string(child->pid()) + " (" + comm +
                                       ") runs " + file + what_it_is +
                                       "; asyncprobe supports 64-bit x86-64 ELF processes only");
}

TEST(TargetProcess, NonElfExecutableIsUnsupported) {
  TempDir dir;
  const std::string file = dir.write(
      "ap-not-elf", {'#', '!', '/', 'b', 'i', 'n', '/', 's', 'h', '\n', 'e', 'x', 'i', 't', '\n'},
      0755);
  expect_unsupported_exe(file, ", which is not an ELF file");
}

// Where 32-bit processes cannot run (ia32 emulation off), a 64-bit process whose exe names the
// same 32-bit ELF exercises the identical check on a real /proc/PID/exe.
TEST(TargetProcess, ThirtyTwoBitExecutableIsUnsupported) {
  TempDir dir;
  const std::string file = dir.write("ap-elf32", elf32_pause_loop(), 0755);
  expect_unsupported_exe(file, ", a 32-bit ELF (i386)");
}

TEST(TargetProcess, ForeignArchitectureIsUnsupported) {
  TempDir dir;
  std::vector<unsigned char> hdr(64, 0);
  std::memcpy(hdr.data(), ELFMAG, SELFMAG);
  hdr[EI_CLASS] = ELFCLASS64;
  hdr[EI_DATA] = ELFDATA2LSB;
  hdr[EI_VERSION] = EV_CURRENT;
  hdr[16] = ET_EXEC;
  hdr[18] = EM_AARCH64;  // 183, little-endian
  const std::string file = dir.write("ap-aarch64", hdr, 0755);
  expect_unsupported_exe(file, ", a 64-bit ELF for aarch64, not x86-64");
}

std::vector<unsigned char> ident(unsigned cls, unsigned data, unsigned machine) {
  std::vector<unsigned char> h(64, 0);
  std::memcpy(h.data(), ELFMAG, SELFMAG);
  h[EI_CLASS] = static_cast<unsigned char>(cls);
  h[EI_DATA] = static_cast<unsigned char>(data);
  if (data == ELFDATA2MSB) {
    h[18] = static_cast<unsigned char>(machine >> 8);
    h[19] = static_cast<unsigned char>(machine);
  } else {
    h[18] = static_cast<unsigned char>(machine);
    h[19] = static_cast<unsigned char>(machine >> 8);
  }
  return h;
}

TEST(ElfHeaderCheck, ClassifiesEveryShape) {
  struct Case {
    std::vector<unsigned char> bytes;
    bool supported;
    bool is_elf;
    std::string problem;
  };
  const std::vector<Case> cases = {
      {{}, false, false, "not an ELF file"},
      {{0x7f, 'E', 'L'}, false, false, "not an ELF file"},
      {{'#', '!', '/', 'b', 'i', 'n'}, false, false, "not an ELF file"},
      {{0x7f, 'E', 'L', 'F', 2, 1}, false, true, "a truncated ELF file"},
      {ident(ELFCLASS32, ELFDATA2LSB, EM_386), false, true, "a 32-bit ELF (i386)"},
      {ident(ELFCLASS32, ELFDATA2LSB, EM_ARM), false, true, "a 32-bit ELF (arm)"},
      {ident(ELFCLASS32, ELFDATA2LSB, EM_X86_64), false, true,
       "an x32 ELF (32-bit pointers on x86-64)"},
      {ident(ELFCLASS64, ELFDATA2MSB, EM_PPC64), false, true, "a big-endian 64-bit ELF (ppc64)"},
      {ident(ELFCLASS64, ELFDATA2LSB, EM_AARCH64), false, true,
       "a 64-bit ELF for aarch64, not x86-64"},
      {ident(ELFCLASS64, ELFDATA2LSB, 0x9999), false, true,
       "a 64-bit ELF for machine 39321, not x86-64"},
      {ident(7, ELFDATA2LSB, EM_X86_64), false, true, "an ELF of unknown class 7"},
      {ident(ELFCLASS64, ELFDATA2LSB, EM_X86_64), true, true, ""},
  };
  for (const auto& c : cases) {
    process::ElfHeaderCheck r = process::check_elf_header(c.bytes.data(), c.bytes.size());
    EXPECT_EQ(r.supported, c.supported) << c.problem;
    EXPECT_EQ(r.is_elf, c.is_elf) << c.problem;
    EXPECT_EQ(r.problem, c.problem);
  }
  EXPECT_FALSE(process::check_elf_header(nullptr, 64).supported);
}

// A stat line with fields 3..52; `over` replaces chosen fields (by number).
std::string stat_line(const std::string& head, std::map<int, std::string> over = {}) {
  std::map<int, std::string> f = {
      {3, "S"}, {4, "77"}, {9, "4194560"}, {20, "3"}, {22, "123456789"}};
  for (auto& [k, v] : over) f[k] = v;
  std::string s = head;
  for (int i = 3; i <= 52; ++i) {
    auto it = f.find(i);
    if (it != f.end() && it->second == "<end>") break;
    s += " " + (it != f.end() ? it->second : std::string("0"));
  }
  return s + "\n";
}

TEST(ProcStat, ParsesHostileComm) {
  // The comm field may hold ')', spaces and digits; the last ')' ends it.
  auto st = process::parse_proc_stat(stat_line("4242 (a) Z 1 (b)"));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->pid, 4242);
  EXPECT_EQ(st->comm, "a) Z 1 (b");
  EXPECT_EQ(st->state, 'S');
  EXPECT_EQ(st->ppid, 77);
  EXPECT_EQ(st->flags, 4194560u);
  EXPECT_EQ(st->num_threads, 3);
  EXPECT_EQ(st->start_time, 123456789u);

  st = process::parse_proc_stat(stat_line("1 ()", {{3, "R"}}));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->comm, "");
  EXPECT_EQ(st->state, 'R');

  const std::vector<std::string> bad = {
      "",
      "garbage",
      "4242 (x",
      stat_line("4242 x)"),
      stat_line("-1 (x)"),
      stat_line("0 (x)"),
      stat_line("99999999999 (x)"),
      stat_line("abc (x)"),
      stat_line("4242 (x)", {{10, "<end>"}}),                    // too few fields
      stat_line("4242 (x) "),                                    // double space
      stat_line("4242 (x)", {{3, "SS"}}),                        // state is one character
      stat_line("4242 (x)", {{9, "zz"}}),                        // non-numeric flags
      stat_line("4242 (x)", {{4, "-3"}}),                        // negative ppid
      stat_line("4242 (x)", {{22, "99999999999999999999999"}}),  // overflows u64
      stat_line("4242 (" + std::string(100, 'c') + ")"),         // comm longer than the kernel's
  };
  for (const auto& b : bad) EXPECT_FALSE(process::parse_proc_stat(b)) << b;
}

TEST(ReadFileAt, CapsAndReportsTruncation) {
  TempDir dir;
  std::string path = dir.write("f", std::vector<unsigned char>(100, 'x'), 0644);
  std::string out;
  bool truncated = true;
  EXPECT_EQ(process::read_file_at(AT_FDCWD, path.c_str(), 100, &out, &truncated), 0);
  EXPECT_EQ(out.size(), 100u);
  EXPECT_FALSE(truncated);
  EXPECT_EQ(process::read_file_at(AT_FDCWD, path.c_str(), 99, &out, &truncated), 0);
  EXPECT_EQ(out.size(), 99u);
  EXPECT_TRUE(truncated);
  EXPECT_EQ(process::read_file_at(AT_FDCWD, (path + "-missing").c_str(), 99, &out), ENOENT);
}

}  // namespace
}  // namespace asyncprobe
