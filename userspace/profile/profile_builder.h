// Accumulates stacks into a Profile: frames interned (identical frames share one index) and
// identical stacks of one thread merged into one ProfileSample with summed weights.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "userspace/model/profile_model.h"
#include "userspace/model/snapshot_model.h"

namespace asyncprobe::profile {

// An awaiting coroutine as a profile frame: its function at the file:line of its suspend point.
model::ProfileFrame async_frame(const model::CoroFrame& c);

class ProfileBuilder {
 public:
  explicit ProfileBuilder(model::Profile* profile) : profile_(profile) {}

  uint32_t intern(const model::ProfileFrame& f);

  // One observation of a stack (frame indexes, leaf first). `coroutine` (0 if none) is kept on
  // the merged sample while every observation of it names the same coroutine, else cleared.
  void add(const std::vector<uint32_t>& frames, int tid, const std::string& thread_name,
           uint64_t coroutine, const std::string& coroutine_function, bool async_uncertain,
           int64_t count, int64_t value_ns);

 private:
  model::Profile* profile_;
  std::unordered_map<std::string, uint32_t> frame_index_;
  std::map<std::tuple<std::vector<uint32_t>, int, bool>, size_t> sample_index_;
};

}  // namespace asyncprobe::profile
