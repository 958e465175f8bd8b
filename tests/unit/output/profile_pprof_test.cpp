#include "userspace/output/profile_pprof.h"
#include "tests/unit/profile_builders.h"

#include <gtest/gtest.h>

#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace asyncprobe {
namespace {

pprof::Profile round_trip(const model::Profile& p) {
  std::ostringstream out;
  std::string error;
  EXPECT_TRUE(output::write_pprof(out, p, &error)) << error;
  const std::string bytes = out.str();
  EXPECT_GE(bytes.size(), 18u);
  EXPECT_EQ(static_cast<unsigned char>(bytes[0]), 0x1f);  // gzip magic
  EXPECT_EQ(static_cast<unsigned char>(bytes[1]), 0x8b);
  pprof::Profile back;
  EXPECT_TRUE(output::read_pprof(bytes, &back, &error)) << error;
  return back;
}

// A pprof profile with its string-table indexes and ids resolved, for exact comparisons.
struct Resolved {
  const pprof::Profile& p;
  std::string str(int64_t i) const { return p.string_table(static_cast<int>(i)); }
  const pprof::Location& location(uint64_t id) const {
    return p.location(static_cast<int>(id - 1));  // ids are 1-based positions
  }
  const pprof::Function& function(uint64_t id) const {
    return p.function(static_cast<int>(id - 1));
  }
  // "name file:line" per Line of every Location of a sample, leaf first.
  std::vector<std::string> stack(const pprof::Sample& s) const {
    std::vector<std::string> out;
    for (const uint64_t id : s.location_id()) {
      for (const pprof::Line& l : location(id).line()) {
        const pprof::Function& f = function(l.function_id());
        out.push_back(str(f.name()) + " " + str(f.filename()) + ":" + std::to_string(l.line()));
      }
    }
    return out;
  }
  std::map<std::string, std::string> labels(const pprof::Sample& s) const {
    std::map<std::string, std::string> out;
    for (const pprof::Label& l : s.label()) {
      out[str(l.key())] = l.str() != 0 ? str(l.str()) : "#" + std::to_string(l.num());
    }
    return out;
  }
};

TEST(ProfilePprof, CpuSampleTypesPeriodAndHeader) {
  const pprof::Profile p = round_trip(testing::coroutine_cpu_profile());
  const Resolved r{p};
  EXPECT_EQ(r.str(0), "");
  ASSERT_EQ(p.sample_type_size(), 2);
  EXPECT_EQ(r.str(p.sample_type(0).type()), "samples");
  EXPECT_EQ(r.str(p.sample_type(0).unit()), "count");
  EXPECT_EQ(r.str(p.sample_type(1).type()), "cpu");
  EXPECT_EQ(r.str(p.sample_type(1).unit()), "nanoseconds");
  EXPECT_EQ(r.str(p.period_type().type()), "cpu");
  EXPECT_EQ(r.str(p.period_type().unit()), "nanoseconds");
  EXPECT_EQ(r.str(p.default_sample_type()), "cpu");
  EXPECT_EQ(p.period(), 10'101'010);
  EXPECT_EQ(p.time_nanos(), 1'700'000'000'000'000'000);
  EXPECT_EQ(p.duration_nanos(), 2'000'000'000);
  ASSERT_EQ(p.comment_size(), 2);
  EXPECT_EQ(r.str(p.comment(0)), "asyncprobe cpu profile of pid 4242 (burn)");
  EXPECT_EQ(r.str(p.comment(1)), "warning: 1 stack joined by a best guess");
}

TEST(ProfilePprof, SamplesCarryJoinedAsyncStacksInlinedLinesAndLabels) {
  const pprof::Profile p = round_trip(testing::coroutine_cpu_profile());
  const Resolved r{p};
  ASSERT_EQ(p.sample_size(), 4);
  const pprof::Sample& hot = p.sample(0);
  EXPECT_EQ(std::vector<int64_t>(hot.value().begin(), hot.value().end()),
            (std::vector<int64_t>{6, 60'606'060}));
  EXPECT_EQ(r.stack(hot), (std::vector<std::string>{
                              "mix(unsigned long) burn.cpp:9",
                              "compute(int) [coroutine] burn.cpp:21",
                              "render(int) [async] burn.cpp:30",
                              "handle(request) [async] burn.cpp:41",
                              "std::coroutine_handle<void>::resume() const coroutine:244",
                              "event_loop::run() loop.cpp:77",
                              "main burn.cpp:90",
                          }));
  // mix was inlined into compute at the same pc: one Location, two Lines, innermost first.
  ASSERT_EQ(hot.location_id_size(), 6);
  const pprof::Location& leaf = r.location(hot.location_id(0));
  ASSERT_EQ(leaf.line_size(), 2);
  EXPECT_EQ(leaf.address(), 0x401230u);
  EXPECT_EQ(r.str(r.function(leaf.line(0).function_id()).name()), "mix(unsigned long)");
  EXPECT_EQ(r.str(r.function(leaf.line(1).function_id()).name()), "compute(int) [coroutine]");
  EXPECT_EQ(r.str(r.function(leaf.line(1).function_id()).system_name()), "compute(int)");
  // Async parents are not code on the stack: no mapping, no address.
  const pprof::Location& render = r.location(hot.location_id(1));
  EXPECT_EQ(render.address(), 0u);
  EXPECT_EQ(render.mapping_id(), 0u);
  EXPECT_EQ(
      r.labels(hot),
      (std::map<std::string, std::string>{
          {"tid", "#4243"}, {"thread", "worker"}, {"coroutine", "compute(int) @ 0x7f00000a0000"}}));

  // The body sample shares the Locations of the hot one above the leaf.
  const pprof::Sample& body = p.sample(1);
  ASSERT_EQ(body.location_id_size(), 6);
  EXPECT_NE(body.location_id(0), hot.location_id(0));
  for (int i = 1; i < 6; ++i) EXPECT_EQ(body.location_id(i), hot.location_id(i)) << i;

  const pprof::Sample& idle = p.sample(2);
  EXPECT_EQ(r.stack(idle),
            (std::vector<std::string>{"do_epoll_wait :0", "poll_once() loop.cpp:60",
                                      "event_loop::run() loop.cpp:77", "main burn.cpp:90"}));
  EXPECT_EQ(r.location(idle.location_id(0)).mapping_id(), 0u);  // kernel
  EXPECT_EQ(r.labels(idle),
            (std::map<std::string, std::string>{{"tid", "#4242"}, {"thread", "burn"}}));

  const pprof::Sample& guess = p.sample(3);
  EXPECT_EQ(r.stack(guess)[1], "maybe_parent(int) [async?] burn.cpp:50");
  EXPECT_EQ(r.labels(guess).at("async_stack"), "uncertain");
  EXPECT_EQ(r.labels(guess).at("coroutine"), "compute(int) @ 0x7f00000a8000");
}

TEST(ProfilePprof, OneMappingPerObjectCoveringItsSampledAddresses) {
  model::Profile in = testing::coroutine_cpu_profile();
  in.frames[testing::kPoll].object = "/usr/lib/libloop.so";
  in.executable = "/srv/bin/burn";
  const pprof::Profile p = round_trip(in);
  const Resolved r{p};
  ASSERT_EQ(p.mapping_size(), 2);
  EXPECT_EQ(p.mapping(0).id(), 1u);
  EXPECT_EQ(r.str(p.mapping(0).filename()), "/srv/bin/burn");  // the executable first
  EXPECT_EQ(p.mapping(0).memory_start(), 0x401230u);
  EXPECT_EQ(p.mapping(0).memory_limit(), 0x401901u);
  EXPECT_TRUE(p.mapping(0).has_functions());
  EXPECT_TRUE(p.mapping(0).has_filenames());
  EXPECT_TRUE(p.mapping(0).has_line_numbers());
  EXPECT_TRUE(p.mapping(0).has_inline_frames());
  EXPECT_EQ(r.str(p.mapping(1).filename()), "/usr/lib/libloop.so");
  EXPECT_EQ(p.mapping(1).memory_start(), 0x401700u);
  EXPECT_EQ(p.mapping(1).memory_limit(), 0x401701u);
  for (const pprof::Location& l : p.location()) {
    if (l.address() == 0x401700u) {
      EXPECT_EQ(l.mapping_id(), 2u);
    }
    if (l.address() == 0x401900u) {
      EXPECT_EQ(l.mapping_id(), 1u);
    }
  }
}

TEST(ProfilePprof, AwaitProfilesUseWallTime) {
  const pprof::Profile p = round_trip(testing::coroutine_await_profile());
  const Resolved r{p};
  EXPECT_EQ(r.str(p.sample_type(0).type()), "suspensions");
  EXPECT_EQ(r.str(p.sample_type(1).type()), "wall");
  EXPECT_EQ(r.str(p.period_type().type()), "wall");
  EXPECT_EQ(r.str(p.default_sample_type()), "wall");
  EXPECT_EQ(p.period(), 100'000'000);
}

TEST(ProfilePprof, ReaderRejectsWhatIsNotAGzippedProfile) {
  pprof::Profile p;
  std::string error;
  EXPECT_FALSE(output::read_pprof("not gzip", &p, &error));
  EXPECT_EQ(error, "pprof: not a complete gzip stream");
  std::ostringstream out;
  ASSERT_TRUE(output::write_pprof(out, testing::coroutine_cpu_profile(), &error));
  const std::string truncated = out.str().substr(0, out.str().size() / 2);
  EXPECT_FALSE(output::read_pprof(truncated, &p, &error));
  EXPECT_EQ(error, "pprof: not a complete gzip stream");
}

}  // namespace
}  // namespace asyncprobe
