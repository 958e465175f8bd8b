#include "userspace/model/snapshot_model.h"

namespace asyncprobe::model {

const char* to_string(FrameState s) {
  switch (s) {
    case FrameState::kSuspended:
      return "suspended";
    case FrameState::kDone:
      return "done";
    case FrameState::kUnknown:
      return "unknown";
    case FrameState::kRunning:
      return "running";
  }
  return "unknown";
}

const char* to_string(SuspendPoint::Kind k) {
  switch (k) {
    case SuspendPoint::Kind::kInitial:
      return "initial";
    case SuspendPoint::Kind::kAwait:
      return "await";
    case SuspendPoint::Kind::kFinal:
      return "final";
    case SuspendPoint::Kind::kUnknown:
      return "unknown";
  }
  return "unknown";
}

const char* to_string(StuckEvidence e) {
  switch (e) {
    case StuckEvidence::kNotChecked:
      return "not-checked";
    case StuckEvidence::kNew:
      return "new";
    case StuckEvidence::kRecreated:
      return "recreated";
    case StuckEvidence::kSuspendPointChanged:
      return "suspend-point-changed";
    case StuckEvidence::kContentChanged:
      return "content-changed";
    case StuckEvidence::kResumed:
      return "resumed";
    case StuckEvidence::kResumeProbe:
      return "resume-probe";
    case StuckEvidence::kUnchangedNoProbe:
      return "unchanged-no-probe";
    case StuckEvidence::kUnchangedProbeHot:
      return "unchanged-probe-hot";
    case StuckEvidence::kUnchangedProbeMissed:
      return "unchanged-probe-missed";
    case StuckEvidence::kRunning:
      return "running";
    case StuckEvidence::kMaybeRunning:
      return "maybe-running";
  }
  return "not-checked";
}

const char* to_string(Diagnosis::Kind k) {
  switch (k) {
    case Diagnosis::Kind::kOrphaned:
      return "orphaned";
    case Diagnosis::Kind::kAwaitCycle:
      return "await_cycle";
    case Diagnosis::Kind::kThreadDeadlock:
      return "thread_deadlock";
    case Diagnosis::Kind::kLockOwnerGone:
      return "lock_owner_gone";
    case Diagnosis::Kind::kFailed:
      return "failed";
  }
  return "unknown";
}

}  // namespace asyncprobe::model
