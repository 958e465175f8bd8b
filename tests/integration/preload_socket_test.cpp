// Snapshots without root: a fixture started with `asyncprobe run` by an ordinary user, made
// non-dumpable so that not even its own user can read /proc/PID or use process_vm_readv, serves
// its memory and /proc files over the library's socket. The same user reads exactly what root
// reads directly (same frames, same awaiter edges, same report; `asyncprobe -p` falls back to the
// socket by itself); another user, and root, are refused by the library.
#include <gtest/gtest.h>

#include <grp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>

#include <algorithm>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/fixture_process.h"
#include "tests/integration/preload_support.h"
#include "tests/integration/source_markers.h"
#include "userspace/output/report_json.h"
#include "userspace/preload/protocol.h"
#include "userspace/process/memory_reader.h"
#include "userspace/process/preload_client.h"
#include "userspace/process/process_maps.h"
#include "userspace/snapshot/awaiter_stitcher.h"
#include "userspace/snapshot/frame_scanner.h"
#include "userspace/snapshot/snapshot_taker.h"
#include "userspace/util/exit_codes.h"

namespace asyncprobe::testing {
namespace {

using nlohmann::json;

// Runs `work` in a child process with the given uid and returns what it wrote to its pipe.
std::string as_child(unsigned uid, const std::function<std::string()>& work) {
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("pipe");
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    if (uid != 0 && (setgroups(0, nullptr) != 0 || setresgid(uid, uid, uid) != 0 ||
                     setresuid(uid, uid, uid) != 0)) {
      _exit(3);
    }
    std::string out;
    try {
      out = work();
    } catch (const std::exception& e) {
      out = std::string("exception: ") + e.what();
    }
    const char* p = out.data();
    size_t n = out.size();
    while (n > 0) {
      ssize_t w = write(fds[1], p, n);
      if (w <= 0) break;
      p += w;
      n -= static_cast<size_t>(w);
    }
    _exit(0);
  }
  close(fds[1]);
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  return out;
}

// Frames found with `read` over the regions of `maps_text`, decoded and stitched, as JSON.
json scan_with(const snapshot::CoroutineIndex& index, const std::string& maps_text,
               const process::ReadMemory& read) {
  process::MapsParseResult maps = process::parse_maps(maps_text);
  std::vector<snapshot::ScanRegion> regions;
  for (const process::Mapping& m : process::scan_regions(maps.mappings))
    regions.push_back({m.start, m.end, process::classify(m) == process::RegionKind::kMainStack});
  snapshot::FrameScanner scanner(index, read);
  snapshot::ScanStats stats;
  std::vector<snapshot::FoundFrame> found = scanner.scan(regions, &stats);
  model::Snapshot snap;
  for (const auto& f : found) snap.frames.push_back(snapshot::decode_frame(f));
  snapshot::stitch_awaiters(snap.frames, found, read);
  json out = json::array();
  for (const auto& f : snap.frames) {
    out.push_back({{"address", f.address},
                   {"function", f.function},
                   {"state", to_string(f.state)},
                   {"file", f.suspend.file},
                   {"line", f.suspend.line},
                   {"awaiter", f.awaiter},
                   {"rule", coro::rule_name(f.awaiter_rule)}});
  }
  return out;
}

// Waits until the target's library has its coroutine tables (its memory map stops changing).
void wait_for_tables(pid_t pid, unsigned uid) {
  for (int i = 0; i < 600; ++i) {
    std::string f = as_child(uid, [pid] {
      std::string why;
      auto c = process::PreloadConnection::open(pid, &why);
      return c != nullptr && c->has_feature(preload_proto::kFeatureTablesComplete) ? "yes" : "no";
    });
    if (f == "yes") return;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  FAIL() << "pid " << pid << " never completed its coroutine tables";
}

class PreloadSocket : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string variant = "gcc12-O2";
    service_ = new FixtureProcess(as_user(
        kTestUid, run_argv({}, {fixture_path(variant, "preload_service"), "--nondumpable"})));
    wait_for_tables(service_->pid(), kTestUid);
  }
  static void TearDownTestSuite() {
    delete service_;
    service_ = nullptr;
  }
  static FixtureProcess* service_;
};

FixtureProcess* PreloadSocket::service_ = nullptr;

TEST_F(PreloadSocket, TheTargetIsClosedToItsOwnUserExceptThroughTheSocket) {
  pid_t pid = service_->pid();
  std::string out = as_child(kTestUid, [pid] {
    std::ostringstream s;
    char byte;
    iovec local{&byte, 1};
    iovec remote{reinterpret_cast<void*>(0x1000), 1};
    errno = 0;
    process_vm_readv(pid, &local, 1, &remote, 1, 0);
    s << "vm_readv_errno=" << errno;
    std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
    std::string line;
    s << " proc_maps_readable=" << (std::getline(maps, line) ? 1 : 0);
    return s.str();
  });
  EXPECT_EQ(out, "vm_readv_errno=" + std::to_string(EPERM) + " proc_maps_readable=0");
}

TEST_F(PreloadSocket, SameUserReadsExactlyWhatRootReadsDirectly) {
  pid_t pid = service_->pid();
  // Root: the coroutine index (also inherited by the child below) and a direct scan.
  snapshot::SnapshotTaker taker(snapshot::SnapshotSession{pid, {}});
  snapshot::SnapshotError err;
  ASSERT_TRUE(taker.attach(&err)) << err.message;
  std::string maps_text = read_text_file("/proc/" + std::to_string(pid) + "/maps");
  process::MemoryReader direct(pid);
  json root_frames = scan_with(taker.index(), maps_text, [&direct](uint64_t a, void* o, size_t n) {
    return direct.read(a, o, n);
  });

  std::string child = as_child(kTestUid, [&] {
    std::string why;
    int code = 0;
    auto src = process::preload_source(pid, &why, &code);
    if (!src) return "error: " + why;
    json j;
    j["maps_equal"] = src->maps == maps_text;
    if (src->maps != maps_text) j["maps"] = src->maps;
    j["comm"] = src->comm;
    j["exe"] = src->exe;
    j["frames"] = scan_with(taker.index(), src->maps, src->read);
    return j.dump();
  });
  json c = json::parse(child, nullptr, false);
  ASSERT_FALSE(c.is_discarded()) << child;
  EXPECT_TRUE(c["maps_equal"].get<bool>()) << maps_text << "\n-- served --\n"
                                           << c.value("maps", "");
  EXPECT_EQ(c["comm"], "preload_service");
  EXPECT_EQ(c["exe"], fixture_path("gcc12-O2", "preload_service"));
  EXPECT_EQ(c["frames"], root_frames);

  // And they are the frames the fixture parked: two chains root > middle > leaf.
  const std::string src = "tests/fixtures/preload_service.cpp";
  std::map<std::string, int> by_place;
  for (const auto& f : root_frames) {
    by_place[f["function"].get<std::string>() + "@" + std::to_string(f["line"].get<int>()) + " " +
             f["rule"].get<std::string>()]++;
  }
  std::map<std::string, int> want = {
      {"service_root(int)@" + std::to_string(marker_line(src, "root_calls_middle")) + " ", 2},
      {"service_middle(int)@" + std::to_string(marker_line(src, "middle_calls_leaf")) +
           " continuation-in-promise",
       2},
      {"service_leaf(int)@" + std::to_string(marker_line(src, "leaf_parks")) +
           " continuation-in-promise",
       2}};
  EXPECT_EQ(by_place, want) << root_frames.dump(1);
}

TEST_F(PreloadSocket, ServesTheProcFilesOfANonDumpableTarget) {
  pid_t pid = service_->pid();
  std::string proc = "/proc/" + std::to_string(pid);
  std::string out = as_child(kTestUid, [pid] {
    std::string why;
    auto c = process::PreloadConnection::open(pid, &why);
    if (c == nullptr) return "error: " + why;
    json j;
    std::string v;
    for (const char* name : {"comm", "status", "cmdline", "tasks"}) {
      j[name] = c->proc_file(name, &v) ? v : "<not served>";
    }
    j["stat"] = c->proc_file("task/" + std::to_string(pid) + "/stat", &v) ? v : "<not served>";
    j["bad"] = c->proc_file("environ", &v) ? "served" : "refused";
    j["traversal"] = c->proc_file("task/../../etc/passwd", &v) ? "served" : "refused";
    return j.dump();
  });
  json j = json::parse(out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << out;
  EXPECT_EQ(j["comm"], "preload_service\n");
  EXPECT_EQ(j["cmdline"], read_text_file(proc + "/cmdline"));
  std::string tasks = j["tasks"];
  EXPECT_NE(tasks.find(std::to_string(pid) + "\n"), std::string::npos);
  // stat: the same process (pid and comm; the counters move).
  EXPECT_EQ(j["stat"].get<std::string>().rfind(std::to_string(pid) + " (preload_service) ", 0), 0u);
  EXPECT_EQ(j["bad"], "refused");
  EXPECT_EQ(j["traversal"], "refused");
}

TEST_F(PreloadSocket, AnotherUserCannotReachTheSocket) {
  pid_t pid = service_->pid();
  const std::string path = preload_proto::socket_path("", kTestUid, pid);
  std::string out = as_child(kOtherUid, [pid, path] {
    std::ostringstream s;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    errno = 0;
    int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    s << "connect=" << rc << " errno=" << errno;
    std::string why;
    s << " open=" << (process::PreloadConnection::open(pid, &why) != nullptr ? "ok" : "refused");
    return s.str();
  });
  EXPECT_EQ(out, "connect=-1 errno=" + std::to_string(EACCES) + " open=refused");
}

TEST_F(PreloadSocket, RootPastTheDirectoryIsRefusedByTheLibrary) {
  // Root passes the 0700 directory and the 0600 socket; the library checks the peer's uid.
  pid_t pid = service_->pid();
  const std::string path = preload_proto::socket_path("", kTestUid, pid);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0)
      << std::strerror(errno);
  preload_proto::RequestHeader rq{preload_proto::kMagic, preload_proto::kReadMemory,
                                  preload_proto::kVersion, 0, 0};
  ASSERT_EQ(write(fd, &rq, sizeof rq), static_cast<ssize_t>(sizeof rq));
  preload_proto::ReplyHeader reply{};
  ASSERT_EQ(read(fd, &reply, sizeof reply), static_cast<ssize_t>(sizeof reply));
  EXPECT_EQ(reply.status, preload_proto::kErrPermission);
  char more;
  EXPECT_EQ(read(fd, &more, 1), 0);  // and closed
  close(fd);
  // The client side refuses a directory that is not root's own before connecting.
  std::string why;
  EXPECT_EQ(process::PreloadConnection::open(pid, &why, nullptr,
                                             "/tmp/asyncprobe-" + std::to_string(kTestUid)),
            nullptr);
  EXPECT_NE(why.find("is not a private directory of uid 0"), std::string::npos) << why;
}

TEST_F(PreloadSocket, UnreadableMemoryIsReportedAsSuchNeverAsZeros) {
  pid_t pid = service_->pid();
  std::string out = as_child(kTestUid, [pid] {
    std::string why;
    auto c = process::PreloadConnection::open(pid, &why);
    if (c == nullptr) return "error: " + why;
    std::string maps;
    c->proc_file("maps", &maps);
    process::MapsParseResult parsed = process::parse_maps(maps);
    // The last readable page of the first writable mapping, then one byte past its end.
    const process::Mapping* rw = nullptr;
    for (const auto& m : parsed.mappings) {
      if (m.perms.read && m.perms.write && (rw == nullptr)) rw = &m;
    }
    std::vector<unsigned char> buf(8192, 0xAA);
    std::ostringstream s;
    s << "inside=" << c->read(rw->end - 4096, buf.data(), 4096);
    s << " prefix=" << c->read_prefix(rw->end - 4096, buf.data(), 8192);
    s << " null=" << c->read(0, buf.data(), 16);
    return s.str();
  });
  // The mapping after it may be adjacent and readable; the prefix is then longer.
  EXPECT_EQ(out.rfind("inside=1 prefix=", 0), 0u) << out;
  EXPECT_NE(out.find(" null=0"), std::string::npos) << out;
}

TEST_F(PreloadSocket, CliSnapshotAsTheSameUserEqualsRootsSnapshot) {
  // `asyncprobe -p PID` as the target's user: direct reading is refused (non-dumpable), so the
  // snapshot goes through the socket. Everything read from memory is root's to the byte. What
  // only the kernel knows about threads differs, and the report says so: a non-dumpable
  // process's task/TID/syscall is root's alone (0400, owner root), even to the process itself,
  // and the library's own thread is running: it is serving this very snapshot.
  pid_t pid = service_->pid();
  std::vector<std::string> cmd = {asyncprobe_binary(), "-p", std::to_string(pid), "--json",
                                  "--window",          "0"};
  RunResult root = run_command(cmd);
  RunResult user = run_command(as_user(kTestUid, cmd));
  ASSERT_EQ(root.exit.exit_code, 0) << root.err;
  ASSERT_EQ(user.exit.exit_code, 0) << user.err;
  EXPECT_EQ(user.err, "");
  json a = json::parse(root.out), b = json::parse(user.out);

  ASSERT_EQ(a["threads"].size(), 2u) << a["threads"].dump(1);
  ASSERT_EQ(b["threads"].size(), 2u) << b["threads"].dump(1);
  for (size_t i = 0; i < 2; ++i) {
    const json &ra = a["threads"][i], &ub = b["threads"][i];
    EXPECT_EQ(ub["tid"], ra["tid"]);
    EXPECT_EQ(ub["name"], ra["name"]);
    EXPECT_NE(ra["syscall"], "") << ra.dump();  // root knows where each thread waits
    EXPECT_EQ(ub["syscall"], "") << ub.dump();  // the socket cannot, and does not guess
    EXPECT_EQ(ub["sp"], "0x0");
    EXPECT_EQ(ub["pc"], "0x0");
  }
  EXPECT_EQ(a["threads"][0]["tid"], pid);
  EXPECT_EQ(b["threads"][0]["state"], a["threads"][0]["state"]);
  EXPECT_EQ(b["threads"][0]["stack_lo"], a["threads"][0]["stack_lo"]);
  EXPECT_EQ(b["threads"][0]["stack_hi"], a["threads"][0]["stack_hi"]);
  EXPECT_EQ(a["threads"][1]["name"], "asyncprobe");
  EXPECT_EQ(a["threads"][1]["state"], "S");
  EXPECT_EQ(b["threads"][1]["state"], "R");
  EXPECT_EQ(a["warnings"], json::array());
  EXPECT_EQ(b["warnings"],
            json::array({"2 of 2 threads read through the asyncprobe socket have no syscall, sp "
                         "or pc (the kernel shows them for a non-dumpable process to root only): "
                         "their whole stacks were scanned"}));
  // Without a stack pointer a thread's whole stack is scanned, never less.
  EXPECT_GT(b["summary"]["bytes_scanned"].get<uint64_t>(),
            a["summary"]["bytes_scanned"].get<uint64_t>());

  for (json* j : {&a, &b}) {
    j->erase("threads");
    j->erase("warnings");
    (*j)["summary"].erase("scan_seconds");
    (*j)["summary"].erase("bytes_scanned");
  }
  EXPECT_EQ(a, b);
  EXPECT_EQ(b["coroutines"].size(), 6u);
}

TEST_F(PreloadSocket, CliSnapshotAsAnotherUserIsRefusedAndSaysWhy) {
  pid_t pid = service_->pid();
  RunResult r = run_command(
      as_user(kOtherUid, {asyncprobe_binary(), "-p", std::to_string(pid), "--window", "0"}));
  EXPECT_EQ(r.exit.exit_code, util::kExitPermission) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.err.rfind("asyncprobe: cannot read process " + std::to_string(pid), 0), 0u) << r.err;
  EXPECT_NE(r.err.find("need root or CAP_SYS_PTRACE (running as uid " + std::to_string(kOtherUid) +
                       " without CAP_SYS_PTRACE, target owned by uid " + std::to_string(kTestUid)),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("a process started with `asyncprobe run` is readable by its own user "
                       "(socket: pid " +
                       std::to_string(pid) + " serves no asyncprobe socket to this user"),
            std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace asyncprobe::testing
