// The interactive flame graph asyncprobe draws itself: one self-contained SVG (styles and script
// inline, nothing fetched) with the root at the bottom, frames merged by function and kind, and
//  - zoom: click a frame (its ancestors stay, dimmed); "Reset Zoom" or Escape goes back;
//  - search: "Search" or Ctrl-F asks for a regular expression, matches turn magenta and the
//    matched share of the total is shown;
//  - details: a <title> tooltip and a status line with function, file:line, weight and %;
//  - URL fragment or query "s=REGEX" searches and "x=fN" zooms on load (links, headless tests);
//  - kinds: native frames warm, running coroutine bodies blue, async parents joined from the
//    async stack (not on the thread's stack) purple with a dashed outline, joins that are a best
//    guess with a red dashed outline, inlined frames aqua, kernel frames grey.
#pragma once

#include <ostream>
#include <string>

#include "userspace/model/profile_model.h"

namespace asyncprobe::output {

struct SvgOptions {
  int width = 1200;        // pixels of the whole image
  int frame_height = 16;   // pixels per stack level
  double min_width = 0.1;  // frames narrower than this (pixels, unzoomed) are left out
  std::string title;       // empty: "asyncprobe CPU profile of pid N (comm)"
};

// Expects a checked profile (check_profile).
void write_flame_svg(std::ostream& out, const model::Profile& p, const SvgOptions& opts = {});

// Text for XML character data and attribute values: escapes markup characters, replaces invalid
// UTF-8 and characters XML 1.0 forbids with U+FFFD.
std::string xml_escape(const std::string& s);

}  // namespace asyncprobe::output
