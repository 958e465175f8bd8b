// asyncprobe: the command-line entry point. The subcommands are in the table of subcommands.h.
#include "userspace/cli/subcommands.h"

int main(int argc, char** argv) { return asyncprobe::cli::dispatch(argc, argv); }
