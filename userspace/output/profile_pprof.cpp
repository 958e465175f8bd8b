#include "userspace/output/profile_pprof.h"
#include "userspace/util/format.h"

#include <zlib.h>

#include <algorithm>
#include <map>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "userspace/output/profile_stacks.h"

namespace asyncprobe::output {

namespace {

class StringTable {
 public:
  explicit StringTable(pprof::Profile* out) : out_(out) { index(""); }

  int64_t index(const std::string& s) {
    auto [it, added] = ids_.emplace(s, out_->string_table_size());
    if (added) out_->add_string_table(s);
    return it->second;
  }

 private:
  pprof::Profile* out_;
  std::unordered_map<std::string, int64_t> ids_;
};

void set_value_type(pprof::ValueType* vt, StringTable& strings, const char* type,
                    const char* unit) {
  vt->set_type(strings.index(type));
  vt->set_unit(strings.index(unit));
}

std::string pprof_function_name(const model::ProfileFrame& f, bool uncertain) {
  std::string name = f.function.empty() ? "[unknown]" : f.function;
  if (f.kind == model::ProfileFrame::Kind::kCoroutine) return name + " [coroutine]";
  if (f.kind == model::ProfileFrame::Kind::kAsync)
    return name + (uncertain ? " [async?]" : " [async]");
  return name;
}

void add_label(pprof::Sample* s, StringTable& strings, const char* key, const std::string& str) {
  pprof::Label* l = s->add_label();
  l->set_key(strings.index(key));
  l->set_str(strings.index(str));
}

// Interns Functions, Mappings and Locations of one profile.
class Builder {
 public:
  Builder(const model::Profile& p, pprof::Profile* out) : p_(p), out_(out), strings_(out) {}

  StringTable& strings() { return strings_; }

  // Mappings first, so ids follow the order objects are met (the executable first: pprof takes
  // the first mapping for the main binary).
  void add_mappings() {
    std::vector<std::string> order;
    std::map<std::string, std::pair<uint64_t, uint64_t>> ranges;
    auto note = [&](const model::ProfileFrame& f) {
      if (f.object.empty() || f.kind == model::ProfileFrame::Kind::kAsync ||
          f.kind == model::ProfileFrame::Kind::kKernel) {
        return;
      }
      auto [it, added] = ranges.emplace(f.object, std::make_pair(f.address, f.address + 1));
      if (added) {
        order.push_back(f.object);
      } else {
        it->second.first = std::min(it->second.first, f.address);
        it->second.second = std::max(it->second.second, f.address + 1);
      }
    };
    for (const model::ProfileSample& s : p_.samples) {
      for (const uint32_t f : s.frames) note(p_.frames[f]);
    }
    std::stable_partition(order.begin(), order.end(),
                          [&](const std::string& o) { return o == p_.executable; });
    for (const std::string& object : order) {
      pprof::Mapping* m = out_->add_mapping();
      m->set_id(out_->mapping_size());
      m->set_memory_start(ranges[object].first);
      m->set_memory_limit(ranges[object].second);
      m->set_filename(strings_.index(object));
      m->set_has_functions(true);
      m->set_has_filenames(true);
      m->set_has_line_numbers(true);
      m->set_has_inline_frames(true);
      mapping_ids_[object] = m->id();
    }
  }

  // The Location of frames [first, last] of a sample: `last` holds the pc, the ones before it
  // were inlined into it.
  uint64_t location(const std::vector<uint32_t>& frames, bool uncertain) {
    const model::ProfileFrame& outer = p_.frames[frames.back()];
    const bool async = outer.kind == model::ProfileFrame::Kind::kAsync;
    auto [it, added] = locations_.emplace(std::make_pair(frames, async && uncertain), 0);
    if (!added) return it->second;
    pprof::Location* loc = out_->add_location();
    loc->set_id(out_->location_size());
    if (!async) {
      loc->set_address(outer.address);
      auto m = mapping_ids_.find(outer.object);
      if (m != mapping_ids_.end() && outer.kind != model::ProfileFrame::Kind::kKernel) {
        loc->set_mapping_id(m->second);
      }
    }
    for (const uint32_t f : frames) {
      pprof::Line* line = loc->add_line();
      line->set_function_id(function(p_.frames[f], uncertain));
      line->set_line(p_.frames[f].line);
    }
    it->second = loc->id();
    return it->second;
  }

 private:
  uint64_t function(const model::ProfileFrame& f, bool uncertain) {
    const std::string name = pprof_function_name(f, uncertain);
    auto key = std::make_tuple(name, f.function, f.file);
    auto [it, added] = functions_.emplace(key, 0);
    if (!added) return it->second;
    pprof::Function* fn = out_->add_function();
    fn->set_id(out_->function_size());
    fn->set_name(strings_.index(name));
    fn->set_system_name(strings_.index(f.function));
    fn->set_filename(strings_.index(f.file));
    it->second = fn->id();
    return it->second;
  }

  const model::Profile& p_;
  pprof::Profile* out_;
  StringTable strings_;
  std::map<std::string, uint64_t> mapping_ids_;
  std::map<std::pair<std::vector<uint32_t>, bool>, uint64_t> locations_;
  std::map<std::tuple<std::string, std::string, std::string>, uint64_t> functions_;
};

}  // namespace

pprof::Profile profile_to_pprof(const model::Profile& p) {
  pprof::Profile out;
  Builder b(p, &out);
  StringTable& strings = b.strings();
  const bool cpu = p.type == model::Profile::Type::kCpu;
  set_value_type(out.add_sample_type(), strings, cpu ? "samples" : "suspensions", "count");
  set_value_type(out.add_sample_type(), strings, cpu ? "cpu" : "wall", "nanoseconds");
  set_value_type(out.mutable_period_type(), strings, cpu ? "cpu" : "wall", "nanoseconds");
  out.set_default_sample_type(strings.index(cpu ? "cpu" : "wall"));
  out.set_period(p.period_ns);
  out.set_time_nanos(p.start_unix_ns);
  out.set_duration_nanos(p.duration_ns);
  std::string title = std::string("asyncprobe ") + profile_type_name(p.type) + " profile of pid " +
                      std::to_string(p.pid);
  if (!p.command.empty()) title += " (" + p.command + ")";
  out.add_comment(strings.index(title));
  for (const std::string& w : p.warnings) out.add_comment(strings.index("warning: " + w));

  b.add_mappings();
  for (const model::ProfileSample& s : p.samples) {
    if (s.frames.empty()) continue;
    pprof::Sample* ps = out.add_sample();
    std::vector<uint32_t> group;
    for (size_t i = 0; i < s.frames.size(); ++i) {
      const model::ProfileFrame& f = p.frames[s.frames[i]];
      group.push_back(s.frames[i]);
      const bool continues =
          f.inlined && i + 1 < s.frames.size() && p.frames[s.frames[i + 1]].address == f.address;
      if (continues) continue;
      ps->add_location_id(b.location(group, s.async_uncertain));
      group.clear();
    }
    ps->add_value(s.count);
    ps->add_value(s.value_ns);
    if (s.tid != 0) {
      pprof::Label* l = ps->add_label();
      l->set_key(strings.index("tid"));
      l->set_num(s.tid);
    }
    if (!s.thread_name.empty()) add_label(ps, strings, "thread", s.thread_name);
    if (s.coroutine != 0) {
      const std::string fn = s.coroutine_function.empty() ? "?" : s.coroutine_function;
      add_label(ps, strings, "coroutine", fn + " @ " + util::hex(s.coroutine));
    }
    if (s.async_uncertain) add_label(ps, strings, "async_stack", "uncertain");
  }
  return out;
}

bool write_pprof(std::ostream& out, const model::Profile& p, std::string* error) {
  std::string raw;
  if (!profile_to_pprof(p).SerializeToString(&raw)) {
    if (error != nullptr) *error = "pprof: protobuf serialization failed";
    return false;
  }
  z_stream z{};
  // windowBits 15 + 16: a gzip header and trailer instead of zlib's.
  if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    if (error != nullptr) *error = "pprof: zlib deflateInit2 failed";
    return false;
  }
  std::string gz(deflateBound(&z, raw.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(raw.data());
  z.avail_in = static_cast<uInt>(raw.size());
  z.next_out = reinterpret_cast<Bytef*>(gz.data());
  z.avail_out = static_cast<uInt>(gz.size());
  const int rc = deflate(&z, Z_FINISH);
  gz.resize(z.total_out);
  deflateEnd(&z);
  if (rc != Z_STREAM_END) {
    if (error != nullptr) *error = "pprof: zlib deflate failed";
    return false;
  }
  out.write(gz.data(), static_cast<std::streamsize>(gz.size()));
  return true;
}

bool read_pprof(const std::string& gzipped, pprof::Profile* out, std::string* error) {
  z_stream z{};
  if (inflateInit2(&z, 15 + 16) != Z_OK) {
    if (error != nullptr) *error = "pprof: zlib inflateInit2 failed";
    return false;
  }
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(gzipped.data()));
  z.avail_in = static_cast<uInt>(gzipped.size());
  std::string raw;
  char buf[1 << 16];
  int rc = Z_OK;
  while (rc == Z_OK) {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    rc = inflate(&z, Z_NO_FLUSH);
    raw.append(buf, sizeof buf - z.avail_out);
    if (rc == Z_BUF_ERROR && z.avail_in == 0) break;  // truncated input
  }
  inflateEnd(&z);
  if (rc != Z_STREAM_END) {
    if (error != nullptr) *error = "pprof: not a complete gzip stream";
    return false;
  }
  if (!out->ParseFromString(raw)) {
    if (error != nullptr) *error = "pprof: not a Profile message";
    return false;
  }
  return true;
}

}  // namespace asyncprobe::output
