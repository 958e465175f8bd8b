#include "userspace/output/profile_json.h"
#include "userspace/util/format.h"

#include <nlohmann/json.hpp>

#include "userspace/output/profile_stacks.h"

namespace asyncprobe::output {

using json = nlohmann::ordered_json;

json profile_to_json(const model::Profile& p) {
  json frames = json::array();
  for (size_t i = 0; i < p.frames.size(); ++i) {
    const model::ProfileFrame& f = p.frames[i];
    // Addresses are strings: JSON numbers lose precision past 2^53 in most consumers.
    frames.push_back(json{{"id", i},
                          {"kind", frame_kind_name(f.kind)},
                          {"function", f.function},
                          {"file", f.file},
                          {"line", f.line},
                          {"object", f.object},
                          {"address", util::hex(f.address)},
                          {"inlined", f.inlined}});
  }
  json samples = json::array();
  for (const model::ProfileSample& s : p.samples) {
    samples.push_back(
        json{{"frames", s.frames},
             {"count", s.count},
             {"value_ns", s.value_ns},
             {"tid", s.tid},
             {"thread_name", s.thread_name},
             {"coroutine", s.coroutine == 0 ? json(nullptr) : json(util::hex(s.coroutine))},
             {"coroutine_function", s.coroutine_function},
             {"async_uncertain", s.async_uncertain}});
  }
  return json{{"schema", kProfileSchema},
              {"type", profile_type_name(p.type)},
              {"weight_unit", profile_weight_unit(p)},
              {"pid", p.pid},
              {"command", p.command},
              {"executable", p.executable},
              {"start_unix_ns", p.start_unix_ns},
              {"duration_ns", p.duration_ns},
              {"period_ns", p.period_ns},
              {"frequency_hz", p.frequency_hz},
              {"lost_samples", p.lost_samples},
              {"warnings", p.warnings},
              {"frames", std::move(frames)},
              {"samples", std::move(samples)}};
}

void write_profile_json(std::ostream& out, const model::Profile& p) {
  out << profile_to_json(p).dump(2, ' ', false, json::error_handler_t::replace) << "\n";
}

}  // namespace asyncprobe::output
