// preload-run-driver: `asyncprobe run` as a program of its own, for the tests while the CLI's
// dispatch is being wired (userspace/main.cpp). argv[1..] are run's arguments.
#include "userspace/run_command.h"

int main(int argc, char** argv) {
  argv[0] = const_cast<char*>("run");
  return asyncprobe::run_main(argc, argv);
}
