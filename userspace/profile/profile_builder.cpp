#include "userspace/profile/profile_builder.h"

namespace asyncprobe::profile {

model::ProfileFrame async_frame(const model::CoroFrame& c) {
  model::ProfileFrame f;
  f.kind = model::ProfileFrame::Kind::kAsync;
  f.function = c.function;
  f.file = c.suspend.file;
  f.line = c.suspend.line;
  f.object = c.object;
  f.address = c.address;
  return f;
}

uint32_t ProfileBuilder::intern(const model::ProfileFrame& f) {
  std::string key;
  key.reserve(f.function.size() + f.file.size() + f.object.size() + 48);
  key += static_cast<char>('0' + static_cast<int>(f.kind));
  key += f.inlined ? '1' : '0';
  key += std::to_string(f.address);
  key += '\0';
  key += std::to_string(f.line);
  key += '\0';
  key += f.function;
  key += '\0';
  key += f.file;
  key += '\0';
  key += f.object;
  auto [it, added] = frame_index_.emplace(key, static_cast<uint32_t>(profile_->frames.size()));
  if (added) profile_->frames.push_back(f);
  return it->second;
}

void ProfileBuilder::add(const std::vector<uint32_t>& frames, int tid,
                         const std::string& thread_name, uint64_t coroutine,
                         const std::string& coroutine_function, bool async_uncertain, int64_t count,
                         int64_t value_ns) {
  auto [it, added] = sample_index_.emplace(std::make_tuple(frames, tid, async_uncertain),
                                           profile_->samples.size());
  if (added) {
    model::ProfileSample s;
    s.frames = frames;
    s.tid = tid;
    s.thread_name = thread_name;
    s.coroutine = coroutine;
    s.coroutine_function = coroutine_function;
    s.async_uncertain = async_uncertain;
    profile_->samples.push_back(std::move(s));
  }
  model::ProfileSample& s = profile_->samples[it->second];
  if (!added && s.coroutine != coroutine) {
    s.coroutine = 0;  // several coroutines ran (waited) here
    if (s.coroutine_function != coroutine_function) s.coroutine_function.clear();
  }
  s.count += count;
  s.value_ns += value_ns;
}

}  // namespace asyncprobe::profile
