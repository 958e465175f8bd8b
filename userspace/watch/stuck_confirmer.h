// The seam between the watcher and the stuck check: frames that sat unchanged in memory past the
// threshold are handed to a confirmer, which says whether they were resumed meanwhile. Memory
// alone cannot tell (a coroutine resumed and re-suspended at the same point looks the same), so
// only a confirmed "not resumed" becomes a `stuck` event; without a confirmer, or when it cannot
// know, the event is `unchanged`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace asyncprobe::watch {

struct ConfirmRequest {
  int pid = 0;
  std::vector<uint64_t> frames;  // frame addresses, all at one suspend point
  uint64_t resume_fn = 0;        // their resume function (absolute address in the target)
  double window_s = 0.0;         // how long the confirmer may watch
};

struct ConfirmResult {
  enum class Verdict {
    kNotResumed,  // none of the frames ran during the window: stuck
    kResumed,     // some ran: they are busy, not stuck (their unchanged clock restarts)
    kUnknown,     // could not be known: `unchanged`
  };
  Verdict verdict = Verdict::kUnknown;
  std::vector<uint64_t> resumed;  // with kResumed: the frames seen running
  std::string evidence;           // how it was decided, e.g. "resume-probe"
};

class StuckConfirmer {
 public:
  virtual ~StuckConfirmer() = default;
  virtual ConfirmResult confirm(const ConfirmRequest& request) = 0;
};

// No probe: every answer is kUnknown with evidence "memory-unchanged".
class MemoryOnlyConfirmer final : public StuckConfirmer {
 public:
  ConfirmResult confirm(const ConfirmRequest&) override {
    return {ConfirmResult::Verdict::kUnknown, {}, "memory-unchanged"};
  }
};

}  // namespace asyncprobe::watch
