// Who awaits a coroutine: the rules that read an awaiter out of a frame, written once for the
// three places that follow async stacks (the snapshot's stitcher, the trace model at every resume,
// the in-target library's crash and blocking-call walk). Each library-specific rule reads the
// first words of the awaited frame's promise; callers say which addresses hold live frames
// through a lookup callable, so the rules never touch memory, never allocate, and are
// async-signal-safe when the lookup is. The generic mutual-pointer rule for unknown task types
// reads whole frames; its two decisions are here, the batching stays with the snapshot.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "userspace/coro/frame_abi.h"

namespace asyncprobe::coro {

// The rule that made an awaiter edge (named in reports, see rule_name()).
enum class AwaiterRule : uint8_t {
  kNone,                   // no edge, or an edge nobody named
  kRunning,                // not an edge: the running coroutine an in-process walk starts from
  kContinuationInPromise,  // cppcoro / libcoro / folly: the continuation handle is promise word 0
  kAsioCaller,             // Boost.Asio: awaitable_frame_base::caller_ is the caller's promise
  kFollyAsyncStack,        // the continuation rule, confirmed by folly's AsyncStackFrame
  kMutualPointer,          // generic: the two frames point at each other
  kStartSnapshot,          // trace: the edge the snapshot at trace start found
  kViaHeapObject,          // generic, weaker: a heap object the frame points at names its awaiter
  kHeldByFrame,            // generic, weaker: one frame alone holds this frame's handle
};

// The names reports print (JSON, CSV, text); "" for kNone.
constexpr const char* rule_name(AwaiterRule r) {
  switch (r) {
    case AwaiterRule::kNone:
      return "";
    case AwaiterRule::kRunning:
      return "running";
    case AwaiterRule::kContinuationInPromise:
      return "continuation-in-promise";
    case AwaiterRule::kAsioCaller:
      return "asio-caller";
    case AwaiterRule::kFollyAsyncStack:
      return "folly-async-stack";
    case AwaiterRule::kMutualPointer:
      return "mutual-pointer";
    case AwaiterRule::kStartSnapshot:
      return "start-snapshot";
    case AwaiterRule::kViaHeapObject:
      return "via-heap-object";
    case AwaiterRule::kHeldByFrame:
      return "held-by-frame";
  }
  return "";
}

// True for edges found without knowing the library's layout (or by no named rule): reports mark
// them so that readers weigh them accordingly.
constexpr bool is_generic(AwaiterRule r) {
  return r == AwaiterRule::kNone || r == AwaiterRule::kMutualPointer ||
         r == AwaiterRule::kViaHeapObject || r == AwaiterRule::kHeldByFrame;
}

// The promise words the library rules read (the trace probes read as many at every resume).
inline constexpr size_t kPromiseWords = 3;

struct AwaiterEdge {
  uint64_t frame = 0;  // the awaiting frame; 0: no edge
  AwaiterRule rule = AwaiterRule::kNone;
};

namespace detail {

// Boost.Asio's awaitable_frame_base starts {coro_, attached_thread_, caller_}: coro_ is the frame
// itself, caller_ points at the caller's *promise*, which follows the caller's 16-byte header, or
// starts at +32 when that promise is over-aligned. The candidate must say its promise is exactly
// there: an arbitrary pointer 16 or 32 bytes past some frame is not a caller.
template <typename FindLiveFrame>
constexpr AwaiterEdge asio_caller(uint64_t frame, uint64_t caller_promise, FindLiveFrame& find) {
  for (uint64_t back : {kHeaderBytes, 2 * kHeaderBytes}) {
    if (caller_promise <= back) continue;
    const uint64_t candidate = caller_promise - back;
    uint64_t promise_offset = 0;
    if (candidate != frame && find(candidate, &promise_offset) && promise_offset == back) {
      return {candidate, AwaiterRule::kAsioCaller};
    }
  }
  return {};
}

// The continuation handle in promise word 0 (cppcoro, libcoro, folly). folly keeps an
// AsyncStackFrame right after its two-word continuation, whose parentFrame points at the
// awaiting promise's own AsyncStackFrame (promise + 16): when that agrees, the edge is named
// after folly.
template <typename FindLiveFrame>
constexpr AwaiterEdge continuation(uint64_t frame, const uint64_t (&promise)[kPromiseWords],
                                   FindLiveFrame& find) {
  const uint64_t awaiter = promise[0];
  uint64_t promise_offset = 0;
  if (awaiter == 0 || awaiter == frame || !find(awaiter, &promise_offset)) return {};
  const bool folly = promise[2] == awaiter + promise_offset + 16;
  return {awaiter, folly ? AwaiterRule::kFollyAsyncStack : AwaiterRule::kContinuationInPromise};
}

}  // namespace detail

// The awaiter of the frame at `frame`, from the first words of its promise. `find(address,
// &promise_offset)` answers whether a coroutine frame that has not finished starts at `address`
// (a finished one awaits nothing any more) and where its promise is; callers that cannot tell
// a frame's promise offset say kDefaultPromiseOffset. Asio first: its promise word 0 is the frame
// itself, which no continuation can be; no other rule is tried for an Asio frame.
//
// The three callers agreed on this except in details now settled here: the trace tried only
// caller_ - 16 and did not check the promise offset (its Asio frames with over-aligned promises
// went unlinked); the in-target walk did not recognise folly; the snapshot accepted an Asio
// caller that had finished. Whether the awaited frame itself has finished is the caller's check
// (only the snapshot sees finished frames).
template <typename FindLiveFrame>
constexpr AwaiterEdge awaiter_from_promise(uint64_t frame, const uint64_t (&promise)[kPromiseWords],
                                           FindLiveFrame&& find) {
  if (promise[0] == frame) return detail::asio_caller(frame, promise[2], find);
  return detail::continuation(frame, promise, find);
}

// A frame that names itself as its awaiter: Asio's caller_ pointing at its own promise, or, for a
// coroutine whose promise is known to start with the continuation (`continuation_layout`: other
// frames of it were linked by it), that word holding the frame itself. No coroutine can await
// itself and run on: the edge is shown as a cycle, uncertain, never as a plain root.
constexpr bool awaits_itself(uint64_t frame, const uint64_t (&promise)[kPromiseWords],
                             uint64_t promise_offset, bool continuation_layout) {
  if (promise[0] != frame) return false;
  return continuation_layout || promise[2] == frame + promise_offset;
}

// The generic mutual-pointer rule, for task types no library rule knows: frame B is awaited by
// frame A when a word of B is a continuation to A and a word of A is B's address (the task
// object). Words before kFirstBodyWord are the header.
inline constexpr size_t kFirstBodyWord = kHeaderBytes / 8;

// A continuation is a handle (the frame's address) or a pointer to the promise, never an
// arbitrary interior pointer.
constexpr bool may_be_continuation(uint64_t word, uint64_t frame, uint64_t promise_offset) {
  return word == frame || word == frame + promise_offset;
}

// Both frames point at each other; the direction comes from where: a continuation sits in the
// awaited frame's promise, near its header, the task object deeper in the awaiting frame's
// locals. Equal depths are ambiguous: no edge.
constexpr bool continuation_before_task(size_t continuation_word, size_t task_word) {
  return continuation_word < task_word;
}

// The weaker rules, for frames that every rule above left as roots although something waits for
// them, in this order:
// - via-heap-object: a word of the root points at a heap object (not a frame, not a stack: the
//   start of a glibc malloc chunk, see heap_object_words) whose first kHeapObjectWords words name
//   a live frame by its handle or promise address. That is how
//   when_all-style fan-outs keep their continuation (a shared state: counter + handle) and how
//   Boost.Asio's parallel groups reach the awaiting thread (parallel_group_op_handler -> shared
//   parallel_group_state -> the group's handler, an awaitable_thread whose bottom_of_stack_
//   names the awaiting thread's entry frame). An Asio thread resumes at the top of its stack, so
//   an edge to an Asio thread entry frame lands on that thread's top frame (see
//   is_asio_thread_entry).
// - held-by-frame: exactly one other live frame holds the root's handle in its body: a
//   generator and the coroutine iterating it (the generator object lives in the consumer's frame;
//   the generator keeps no pointer back).
// Each takes an edge only when its evidence names one frame (SoleFrame), never a frame the root
// itself (transitively) awaits, and never both ways: two roots that name only each other have no
// direction, and stay roots. Reports mark both rules as generic (is_generic): likely, not certain.
inline constexpr size_t kHeapObjectWords = 32;

// How many words of a heap object the via-heap-object rule reads, from the glibc malloc size
// word just before it: the chunk's usable words, at most kHeapObjectWords; 0 when the word is no
// chunk size (the pointer starts no malloc chunk: an interior pointer, or another allocator).
// What lies past a chunk is its neighbours, which name frames of their own.
constexpr size_t heap_object_words(uint64_t malloc_size_word) {
  const uint64_t bytes = malloc_size_word & ~uint64_t{7};
  if ((malloc_size_word & 2) != 0 || bytes < 32 || bytes % 16 != 0 || bytes > (uint64_t{1} << 20)) {
    return 0;  // mmapped chunks (bit 1) are megabytes, never a small shared state
  }
  const uint64_t usable = bytes / 8 - 1;
  return usable < kHeapObjectWords ? static_cast<size_t>(usable) : kHeapObjectWords;
}

// Folds the frames a weaker rule's evidence names into its answer: that frame when all evidence
// names the same one, 0 when it names none or several.
class SoleFrame {
 public:
  constexpr void add(uint64_t frame) {
    if (frame == 0 || frame == frame_) return;
    several_ = frame_ != 0;
    frame_ = frame;
  }
  constexpr uint64_t frame() const { return several_ ? 0 : frame_; }

 private:
  uint64_t frame_ = 0;
  bool several_ = false;
};

// A Boost.Asio thread's entry frame (co_spawn_entry_point): Asio's layout (coro_ is the frame
// itself) with no caller_. What waits on such a thread is the top of its stack, the end of the
// chain of asio-caller edges that starts at this frame.
constexpr bool is_asio_thread_entry(uint64_t frame, const uint64_t (&promise)[kPromiseWords]) {
  return promise[0] == frame && promise[2] == 0;
}

}  // namespace asyncprobe::coro
