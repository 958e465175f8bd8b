#include "userspace/cli/startup_watch.h"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>

#include "userspace/cli/cli_options.h"
#include "userspace/util/exit_codes.h"

namespace asyncprobe::cli {

StartupWatch::StartupWatch(int pid)
    : pid_(pid), fd_(static_cast<int>(syscall(SYS_pidfd_open, pid, 0))) {
  ended_at_start_ = ended();
  std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
  std::getline(comm, command_);
}

StartupWatch::~StartupWatch() {
  if (fd_ >= 0) close(fd_);
}

bool StartupWatch::ended() const {
  if (fd_ >= 0) {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
  }
  return kill(pid_, 0) != 0 && errno == ESRCH;
}

int StartupWatch::fail(const std::string& message, int code) const {
  if (started_ || ended_at_start_ || !ended()) return fail_with_message(message, code);
  return fail_with_message("process " + std::to_string(pid_) + " (" + command_ +
                               ") exited while asyncprobe was " + doing_,
                           util::kExitTargetExited);
}

}  // namespace asyncprobe::cli
