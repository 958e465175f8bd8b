# ctest link_rules: reads the link closures written at configure time (tests/link_rules) and fails
# with one line per broken rule. Run: cmake -DCLOSURES=<file> -P check.cmake
include(${CLOSURES})
set(broken "")

# libbpf stays with userspace/kernel: through PkgConfig::LIBBPF, the skeletons, or by name.
foreach(t asyncprobe_output asyncprobe_snapshot asyncprobe_coro)
  foreach(l ${closure_${t}})
    if(l MATCHES "LIBBPF|^asyncprobe_bpf|^asyncprobe_kernel$|(^|[/-])(lib)?bpf(\\.|$)")
      list(APPEND broken "${t} links ${l} (libbpf is for asyncprobe_kernel only)")
    endif()
  endforeach()
endforeach()

# The in-target library: its own code, asyncprobe_coro and system libraries only.
foreach(l ${closure_asyncprobe_preload})
  if(l MATCHES "nlohmann")
    list(APPEND broken "asyncprobe_preload links ${l} (no JSON code in the target)")
  elseif(l MATCHES "^asyncprobe_" AND NOT l MATCHES "^asyncprobe_(coro|preload_core)$")
    list(APPEND broken "asyncprobe_preload links ${l} (only asyncprobe_coro may be linked)")
  endif()
endforeach()

if(broken)
  list(JOIN broken "\n" lines)
  message(FATAL_ERROR "link rules broken:\n${lines}")
endif()
message(STATUS "link rules hold")
