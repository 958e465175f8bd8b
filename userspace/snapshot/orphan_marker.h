// The orphan analysis: a garbage collector's mark phase over the target's writable memory, to
// find suspended coroutines that nothing can resume any more (issue 13). Roots are the words of
// the live thread stacks (from sp up; a running thread's whole stack), of the modules' writable
// data, and of every heap or anonymous mapping outside the frames found; a frame is reachable when
// a root or a reachable frame holds a pointer into it (its start, its promise, or any byte of it:
// an awaiter object inside the frame registered with an event loop counts too). Iterated to the
// fixpoint; the suspended frames left are orphaned.
//
// Limits (printed with the diagnosis): a pointer kept only in kernel memory (io_uring user_data,
// epoll_event.data) or in a compressed/tagged form makes a live frame look orphaned; a stale
// pointer in freed memory hides an orphan; registers of running threads are not seen (their whole
// stack is scanned instead).
#pragma once

#include <cstdint>
#include <vector>

#include "userspace/model/snapshot_model.h"
#include "userspace/process/memory_reader.h"
#include "userspace/snapshot/frame_scanner.h"

namespace asyncprobe::snapshot {

// A frame's extent in the target, for the mark phase.
struct FrameExtent {
  uint64_t start = 0;
  uint64_t size = 0;  // bytes; 0 when unknown (the frame then is not a candidate)
};

struct OrphanStats {
  uint64_t bytes_scanned = 0;
  uint64_t unreadable_bytes = 0;
  size_t candidates = 0;  // suspended heap frames with a known extent
  size_t unknown_extent = 0;
  bool reused_scan = false;  // the frame scan's recorded words were used (no second read)
};

// Extents of `frames`: the DWARF frame size when the catalog knows it, else the usable size of the
// glibc malloc chunk holding the frame (the size word before it), validated. Stack frames: 0.
std::vector<FrameExtent> frame_extents(const std::vector<model::CoroFrame>& frames,
                                       const std::vector<FoundFrame>& found,
                                       const process::ReadMemory& read);

// Marks CoroFrame::orphaned on the suspended frames nothing live points to. `regions` are the
// roots' memory (stacks from sp up, heap, anonymous and module data mappings). `seen`: words the
// frame scan already recorded (valid unless it overflowed); those regions (`seen_regions`, the
// ones the frame scan read) are then not read again.
OrphanStats mark_orphans(std::vector<model::CoroFrame>& frames,
                         const std::vector<FrameExtent>& extents,
                         const std::vector<ScanRegion>& regions, const process::ReadMemory& read,
                         const PointerRecord* seen = nullptr, size_t seen_regions = 0,
                         size_t chunk_bytes = 1 << 20);

}  // namespace asyncprobe::snapshot
