// The coroutine ABI rules of userspace/coro/: the awaiter rules over promise words (each library's
// layout, written out here by hand as the libraries' headers declare it), the rule names reports
// print, and the split-function names of GCC and Clang.
#include <gtest/gtest.h>

#include <cstdint>
#include <map>

#include "userspace/coro/awaiter_rules.h"
#include "userspace/coro/split_names.h"

namespace asyncprobe::coro {
namespace {

// Live frames by address -> promise offset; what each caller's lookup answers.
struct Frames {
  std::map<uint64_t, uint64_t> live;
  bool operator()(uint64_t addr, uint64_t* promise_offset) const {
    auto it = live.find(addr);
    if (it == live.end()) return false;
    *promise_offset = it->second;
    return true;
  }
};

TEST(AwaiterRules, ContinuationInPromise) {
  Frames frames{{{0x1000, 16}, {0x2000, 16}}};
  const uint64_t promise[kPromiseWords] = {0x1000, 0, 0};
  AwaiterEdge e = awaiter_from_promise(0x2000, promise, frames);
  EXPECT_EQ(e.frame, 0x1000u);
  EXPECT_EQ(e.rule, AwaiterRule::kContinuationInPromise);
}

TEST(AwaiterRules, ContinuationToUnknownOrFinishedFrameIsNoEdge) {
  Frames frames{{{0x2000, 16}}};
  const uint64_t promise[kPromiseWords] = {0x1000, 0, 0};
  EXPECT_EQ(awaiter_from_promise(0x2000, promise, frames).frame, 0u);
  const uint64_t null_promise[kPromiseWords] = {0, 0, 0};
  EXPECT_EQ(awaiter_from_promise(0x2000, null_promise, frames).rule, AwaiterRule::kNone);
}

TEST(AwaiterRules, FollyAsyncStackFrameNamesTheEdge) {
  // folly::coro::TaskPromise: continuation (2 words), then AsyncStackFrame whose parentFrame
  // points at the awaiting promise's AsyncStackFrame (promise + 16). Awaiter promise at +16.
  Frames frames{{{0x1000, 16}, {0x2000, 16}}};
  const uint64_t promise[kPromiseWords] = {0x1000, 0x5555, 0x1000 + 16 + 16};
  AwaiterEdge e = awaiter_from_promise(0x2000, promise, frames);
  EXPECT_EQ(e.frame, 0x1000u);
  EXPECT_EQ(e.rule, AwaiterRule::kFollyAsyncStack);
  // Over-aligned awaiting promise (+32): its AsyncStackFrame is at +48.
  Frames aligned{{{0x1000, 32}, {0x2000, 16}}};
  const uint64_t promise48[kPromiseWords] = {0x1000, 0, 0x1000 + 48};
  EXPECT_EQ(awaiter_from_promise(0x2000, promise48, aligned).rule, AwaiterRule::kFollyAsyncStack);
  EXPECT_EQ(awaiter_from_promise(0x2000, promise, aligned).rule,
            AwaiterRule::kContinuationInPromise);
}

TEST(AwaiterRules, AsioCallerPointsAtTheCallersPromise) {
  // awaitable_frame_base {coro_ = this frame, attached_thread_, caller_ = &caller promise}.
  Frames frames{{{0x1000, 16}, {0x2000, 16}}};
  const uint64_t promise[kPromiseWords] = {0x2000, 0x7777, 0x1010};
  AwaiterEdge e = awaiter_from_promise(0x2000, promise, frames);
  EXPECT_EQ(e.frame, 0x1000u);
  EXPECT_EQ(e.rule, AwaiterRule::kAsioCaller);
}

TEST(AwaiterRules, AsioCallerWithOverAlignedPromise) {
  Frames frames{{{0x1000, 32}, {0x2000, 32}}};
  const uint64_t promise[kPromiseWords] = {0x2000, 0, 0x1020};
  AwaiterEdge e = awaiter_from_promise(0x2000, promise, frames);
  EXPECT_EQ(e.frame, 0x1000u);
  EXPECT_EQ(e.rule, AwaiterRule::kAsioCaller);
}

TEST(AwaiterRules, AsioCallerMustHaveItsPromiseThere) {
  // A frame 16 bytes before caller_ whose promise is at +32 is not the caller; nor is the frame
  // itself, nor a word that is not past any frame.
  Frames frames{{{0x1000, 32}, {0x2000, 16}}};
  const uint64_t promise[kPromiseWords] = {0x2000, 0, 0x1010};
  EXPECT_EQ(awaiter_from_promise(0x2000, promise, frames).frame, 0u);
  const uint64_t self[kPromiseWords] = {0x2000, 0, 0x2010};
  EXPECT_EQ(awaiter_from_promise(0x2000, self, frames).frame, 0u);
  const uint64_t tiny[kPromiseWords] = {0x2000, 0, 8};
  EXPECT_EQ(awaiter_from_promise(0x2000, tiny, frames).frame, 0u);
  // An Asio frame is never read by the continuation rule: word 0 is itself.
  const uint64_t root[kPromiseWords] = {0x2000, 0, 0};
  EXPECT_EQ(awaiter_from_promise(0x2000, root, frames).rule, AwaiterRule::kNone);
}

TEST(AwaiterRules, MutualPointerDecisions) {
  EXPECT_TRUE(may_be_continuation(0x1000, 0x1000, 16));
  EXPECT_TRUE(may_be_continuation(0x1010, 0x1000, 16));
  EXPECT_FALSE(may_be_continuation(0x1008, 0x1000, 16));
  EXPECT_TRUE(continuation_before_task(2, 5));
  EXPECT_FALSE(continuation_before_task(5, 5));
  EXPECT_FALSE(continuation_before_task(6, 5));
  EXPECT_EQ(kFirstBodyWord, 2u);
}

TEST(AwaiterRules, NamesAndGenericEdges) {
  EXPECT_STREQ(rule_name(AwaiterRule::kNone), "");
  EXPECT_STREQ(rule_name(AwaiterRule::kRunning), "running");
  EXPECT_STREQ(rule_name(AwaiterRule::kContinuationInPromise), "continuation-in-promise");
  EXPECT_STREQ(rule_name(AwaiterRule::kAsioCaller), "asio-caller");
  EXPECT_STREQ(rule_name(AwaiterRule::kFollyAsyncStack), "folly-async-stack");
  EXPECT_STREQ(rule_name(AwaiterRule::kMutualPointer), "mutual-pointer");
  EXPECT_STREQ(rule_name(AwaiterRule::kStartSnapshot), "start-snapshot");
  EXPECT_STREQ(rule_name(AwaiterRule::kViaHeapObject), "via-heap-object");
  EXPECT_STREQ(rule_name(AwaiterRule::kHeldByFrame), "held-by-frame");
  EXPECT_TRUE(is_generic(AwaiterRule::kViaHeapObject));
  EXPECT_TRUE(is_generic(AwaiterRule::kHeldByFrame));
  EXPECT_TRUE(is_generic(AwaiterRule::kMutualPointer));
  EXPECT_TRUE(is_generic(AwaiterRule::kNone));
  EXPECT_FALSE(is_generic(AwaiterRule::kAsioCaller));
  EXPECT_FALSE(is_generic(AwaiterRule::kContinuationInPromise));
  EXPECT_FALSE(is_generic(AwaiterRule::kFollyAsyncStack));
  EXPECT_FALSE(is_generic(AwaiterRule::kStartSnapshot));
}

TEST(AwaiterRules, WeakerRulesTakeOnlyASoleFrame) {
  SoleFrame none;
  EXPECT_EQ(none.frame(), 0u);
  SoleFrame one;
  one.add(0x1000);
  one.add(0);  // a word that names no frame
  one.add(0x1000);
  EXPECT_EQ(one.frame(), 0x1000u);
  SoleFrame two;
  two.add(0x1000);
  two.add(0x2000);
  two.add(0x1000);
  EXPECT_EQ(two.frame(), 0u);
}

TEST(AwaiterRules, HeapObjectsAreBoundedByTheirMallocChunk) {
  // glibc size words: chunk bytes | PREV_INUSE. A 48-byte chunk holds 5 usable words (the next
  // chunk's prev_size word included), a 0x1010-byte one more than the rule reads.
  EXPECT_EQ(heap_object_words(0x31), 5u);
  EXPECT_EQ(heap_object_words(0x30), 5u);
  EXPECT_EQ(heap_object_words(0x1011), kHeapObjectWords);
  // Not a size word: the use counts before a make_shared object, a pointer, an odd size, an
  // mmapped chunk, a chunk below glibc's minimum.
  EXPECT_EQ(heap_object_words(0x100000009), 0u);
  EXPECT_EQ(heap_object_words(0x5611c6c68f10), 0u);
  EXPECT_EQ(heap_object_words(0x39), 0u);
  EXPECT_EQ(heap_object_words(0x1002), 0u);
  EXPECT_EQ(heap_object_words(0x11), 0u);
}

TEST(AwaiterRules, AsioThreadEntryHasNoCaller) {
  const uint64_t entry[kPromiseWords] = {0x1000, 0x7000, 0};
  const uint64_t callee[kPromiseWords] = {0x2000, 0x7000, 0x1010};
  const uint64_t task[kPromiseWords] = {0, 0, 0};
  EXPECT_TRUE(is_asio_thread_entry(0x1000, entry));
  EXPECT_FALSE(is_asio_thread_entry(0x2000, callee));
  EXPECT_FALSE(is_asio_thread_entry(0x3000, task));
}

TEST(SplitNames, GccAndClangParts) {
  SplitName gcc = parse_split_name("_Z7descendPZ7descendiE17_Z7descendi.Frame.actor");
  EXPECT_EQ(gcc.part, SplitPart::kResume);
  EXPECT_TRUE(gcc.gcc);
  EXPECT_EQ(gcc.key, "_Z7descendPZ7descendiE17_Z7descendi.Frame");
  SplitName gcc_destroy = parse_split_name("_Z7descendPZ7descendiE17_Z7descendi.Frame.destroy");
  EXPECT_EQ(gcc_destroy.part, SplitPart::kDestroy);
  EXPECT_TRUE(gcc_destroy.gcc);
  EXPECT_EQ(gcc_destroy.key, gcc.key);
  SplitName clang = parse_split_name("_Z7descendi.resume");
  EXPECT_EQ(clang.part, SplitPart::kResume);
  EXPECT_FALSE(clang.gcc);
  EXPECT_EQ(clang.key, "_Z7descendi");
  EXPECT_EQ(parse_split_name("_Z7descendi.destroy").part, SplitPart::kDestroy);
  EXPECT_EQ(parse_split_name("_Z7descendi.cleanup").part, SplitPart::kCleanup);
  EXPECT_EQ(parse_split_name("_Z7descendi.cleanup").key, "_Z7descendi");
}

TEST(SplitNames, NotSplitFunctions) {
  for (const char* name :
       {"main", ".resume", "foo.bar.resume", "task.actor", "_Z7descendi.Frame.resume",
        "_Z7descendi.Frame.cleanup", "_Z7descendPZ7descendiE17_Z7descendi.Frame.actor.cold",
        "_Z3fooPZ3foovE9_Z3foov.Frame.actor.cold", ".actor", ""}) {
    EXPECT_EQ(parse_split_name(name).part, SplitPart::kNone) << name;
  }
}

// The parser is usable where the in-target library has no allocator to call.
static_assert(parse_split_name("_Z1fv.resume").part == SplitPart::kResume);

}  // namespace
}  // namespace asyncprobe::coro
