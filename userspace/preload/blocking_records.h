// Blocking calls made while a coroutine runs: the interposer library (blocking_interpose.c)
// times the calls and hands slow ones to asyncprobe_blocking_note(), which finds the coroutine
// running on the thread (stack walk) and keeps a bounded ring of records. Records are kept raw
// and symbolized when read (socket, exit report).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

extern "C" {
// Called by the interposers. `call` must be a string literal. Returns nothing; never blocks.
void asyncprobe_blocking_note(const char* call, uint64_t start_ns, uint64_t duration_ns,
                              uint64_t call_site) __attribute__((visibility("default")));
// The threshold (ns) the interposers compare against; 0 when recording is off.
uint64_t asyncprobe_blocking_threshold() __attribute__((visibility("default")));
// True on threads that belong to the library (their calls are never recorded).
int asyncprobe_internal_thread() __attribute__((visibility("default")));
}

namespace asyncprobe::preload {

inline constexpr size_t kBlockingRing = 1024;
inline constexpr size_t kBlockingFrames = 16;
inline constexpr uint64_t kHeaderMask = 0x5a5a5a5a5a5a5a5aull;
inline constexpr size_t kFrameCopyBytes = 128;

struct BlockingSample {
  uint64_t seq = 0;
  const char* call = "";
  int tid = 0;
  uint64_t start_ns = 0;
  uint64_t duration_ns = 0;
  uint64_t call_site = 0;   // return address of the blocking call
  uint64_t app_site = 0;    // first caller with line information (the program's own code)
  uint64_t running_pc = 0;  // where the running coroutine's activation is (a return address)
  uint32_t frames = 0;
  uint64_t frame[kBlockingFrames] = {};
  // The coroutine's destroy address XOR kHeaderMask: kept obfuscated so that a snapshot scanning
  // this memory never mistakes a record for a (NULL, destroy) frame header.
  uint64_t destroy_masked[kBlockingFrames] = {};
  int64_t index[kBlockingFrames] = {};  // as read when recorded; -1 if the layout was unknown
  // The first bytes of each frame, XOR kHeaderMask word by word (same reason as above): the
  // suspend index is decoded from them when the layout is known only later (a call made before
  // the helper's tables arrived).
  uint64_t head_masked[kBlockingFrames][kFrameCopyBytes / 8] = {};
};

// Records with seq >= since; *next = the sequence to ask for next; *dropped = overwritten ones.
void blocking_samples(uint64_t since, std::vector<BlockingSample>* out, uint64_t* next,
                      uint64_t* dropped);

// Symbolized view of one sample.
struct BlockingFrameText {
  uint64_t frame = 0;
  std::string function;
  std::string file;
  uint32_t line = 0;
};
std::string describe_call_site(uint64_t pc);
std::vector<BlockingFrameText> describe_sample_frames(const BlockingSample& s);

void set_internal_thread(bool internal);

}  // namespace asyncprobe::preload
