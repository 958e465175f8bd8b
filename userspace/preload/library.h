// What library.cpp (the library's constructor and exit code) offers the other parts of the
// in-target library: reacting to modules the dynamic loader mapped or unmapped.
#pragma once

namespace asyncprobe::preload {

// Called by the dynamic-loader hook (tracer.cpp), with the loader lock held, after the module
// list changed: records new modules, installs their symbol tables, patches them when tracing.
void on_modules_changed();
// Called by the service thread before each request when there is no loader hook: refreshes the
// module list (tables only; no patching).
void poll_modules_without_hook();

}  // namespace asyncprobe::preload
