// The target's life while a subcommand starts (snapshot, trace, profile, top): every step of the
// start-up (reading the process, planning and attaching probes) can fail because the target just
// exited, each in its own words ("no uprobe could be attached ... No such process", "no coroutine
// resume function", a name read empty). Those failures go through StartupWatch::fail, which answers
// with the cause, exit 8 "exited while asyncprobe was <doing>", once the target has ended. Ended
// means its pidfd is readable (exited, reaped or not; no race with pid reuse).
#pragma once

#include <string>

namespace asyncprobe::cli {

class StartupWatch {
 public:
  explicit StartupWatch(int pid);  // reads the target's name now, while it can
  ~StartupWatch();
  StartupWatch(const StartupWatch&) = delete;
  StartupWatch& operator=(const StartupWatch&) = delete;

  bool ended() const;
  // /proc/PID/comm as read at construction.
  const std::string& command() const { return command_; }
  // What asyncprobe is doing, for the message ("starting the trace", "taking the snapshot").
  void set_doing(std::string doing) { doing_ = std::move(doing); }
  // The recording began: from now on the target's exit is part of the result, not a failure.
  void started() { started_ = true; }
  // Prints and returns: `message` with `code`, or, during start-up once the target ended (and it
  // was alive at construction), "process N (comm) exited while asyncprobe was <doing>"
  // with kExitTargetExited.
  int fail(const std::string& message, int code) const;

 private:
  int pid_;
  int fd_ = -1;
  bool ended_at_start_ = false;
  bool started_ = false;
  std::string command_;
  std::string doing_ = "starting";
};

}  // namespace asyncprobe::cli
