// Failed coroutines: frames whose promise holds an exception, grouped by the exception's type and
// message, so that "12 tasks failed with the same error" reads as one line.
#include <map>
#include <set>
#include <tuple>

#include "userspace/diagnose/diagnose.h"

namespace asyncprobe::diagnose {

std::vector<model::Diagnosis> failed_coroutines(const model::Snapshot& snap) {
  using Key =
      std::tuple<std::string, bool, std::string, std::string>;  // type, has_what, what, error
  std::map<Key, model::Diagnosis> groups;
  std::vector<Key> order;  // first appearance: the report follows the frames
  for (size_t i = 0; i < snap.frames.size(); ++i) {
    const auto& ex = snap.frames[i].exception;
    if (!ex) continue;
    Key key{ex->type, ex->has_what, ex->what, ex->error};
    auto [it, fresh] = groups.try_emplace(key);
    if (fresh) {
      order.push_back(key);
      it->second.kind = model::Diagnosis::Kind::kFailed;
      it->second.exception = *ex;
    }
    it->second.frame_ids.push_back(i);
  }
  std::vector<model::Diagnosis> out;
  for (const Key& key : order) {
    model::Diagnosis d = std::move(groups[key]);
    const model::HeldException& ex = *d.exception;
    std::set<std::string> functions;
    for (size_t f : d.frame_ids) functions.insert(snap.frames[f].function);
    const size_t n = d.frame_ids.size();
    d.summary =
        std::to_string(n) + (n == 1 ? " coroutine failed with " : " coroutines failed with ");
    d.summary += ex.type.empty() ? "an exception of unreadable type" : ex.type;
    if (ex.has_what) d.summary += ": \"" + ex.what + (ex.what_truncated ? "...\"" : "\"");
    d.summary += " in ";
    size_t k = 0;
    for (const std::string& fn : functions) {
      if (k == 3) {
        d.summary += ", ... (" + std::to_string(functions.size()) + " functions)";
        break;
      }
      d.summary += (k++ > 0 ? ", " : "") + fn;
    }
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace asyncprobe::diagnose
