// Termination signals that the program leaves at their default action (SIGTERM, SIGINT, SIGHUP)
// end it without its exit handlers: the reports asked for at exit (`--blocking`, `--trace-out`)
// would be lost and the socket file left behind. For those signals, and only while the program
// has no handler of its own, the library catches the signal, has its service thread do the exit
// work (bounded wait), removes the socket file and raises the signal again with the default
// action: the program still dies by it, with the same wait status.
#pragma once

namespace asyncprobe::preload {

// Normal context, once: catches the signals still at SIG_DFL; `exit_work` runs on the service
// thread when one arrives.
void install_exit_signal_handlers(void (*exit_work)());
// After fork in a child that is not watched: the signals go back to SIG_DFL where still ours.
void uninstall_exit_signal_handlers();

}  // namespace asyncprobe::preload
