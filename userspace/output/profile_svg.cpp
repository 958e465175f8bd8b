#include "userspace/output/profile_svg.h"
#include "userspace/util/format.h"

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "userspace/output/profile_folded.h"
#include "userspace/output/profile_stacks.h"

namespace asyncprobe::output {

namespace {

constexpr int kPad = 10;            // left/right margin
constexpr int kHeaderHeight = 60;   // title, subtitle, legend
constexpr int kFooterHeight = 28;   // details and match lines
constexpr double kCharWidth = 7.2;  // 12px monospace, for fitting names into frames

// One box of the flame graph: a function (of one kind) reached by one path from the root.
struct Node {
  std::string name;
  model::ProfileFrame::Kind kind = model::ProfileFrame::Kind::kNative;
  bool inlined = false;
  bool uncertain = false;  // an async parent whose join is a best guess
  bool root = false;
  int64_t weight = 0;
  std::map<std::string, int64_t> locations;  // "file:line" -> weight
  std::map<std::string, size_t> children;    // folded name -> node index (sorted, stable output)
};

std::vector<Node> build_tree(const model::Profile& p) {
  std::vector<Node> nodes(1);
  nodes[0].name = "all";
  nodes[0].root = true;
  for (const model::ProfileSample& s : p.samples) {
    const int64_t w = profile_weight(p, s);
    if (w <= 0) continue;
    nodes[0].weight += w;
    size_t cur = 0;
    for (auto it = s.frames.rbegin(); it != s.frames.rend(); ++it) {
      const model::ProfileFrame& f = p.frames[*it];
      const std::string key = folded_frame_name(f, s.async_uncertain);
      auto found = nodes[cur].children.find(key);
      size_t child;
      if (found == nodes[cur].children.end()) {
        child = nodes.size();
        nodes[cur].children.emplace(key, child);
        Node n;
        n.name = f.function.empty() ? "[unknown]" : f.function;
        n.kind = f.kind;
        n.inlined = f.inlined;
        n.uncertain = s.async_uncertain && f.kind == model::ProfileFrame::Kind::kAsync;
        nodes.push_back(std::move(n));
      } else {
        child = found->second;
      }
      Node& n = nodes[child];
      n.weight += w;
      const std::string loc = frame_location(f);
      if (!loc.empty()) n.locations[loc] += w;
      cur = child;
    }
  }
  return nodes;
}

uint32_t name_hash(const std::string& s) {
  uint32_t h = 2166136261u;  // FNV-1a: stable colours for a name across runs and files
  for (const char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 16777619u;
  }
  return h;
}

std::string rgb(int r, int g, int b) {
  return "rgb(" + std::to_string(r) + "," + std::to_string(g) + "," + std::to_string(b) + ")";
}

// Palettes by kind; the name picks a shade so neighbours differ.
std::string frame_colour(const Node& n) {
  const uint32_t h = name_hash(n.name);
  const double v1 = (h & 0xffff) / 65536.0;
  const double v2 = (h >> 16) / 65536.0;
  if (n.root) return rgb(200, 200, 200);
  switch (n.kind) {
    case model::ProfileFrame::Kind::kCoroutine:  // blue
      return rgb(50 + static_cast<int>(40 * v1), 120 + static_cast<int>(50 * v2),
                 225 + static_cast<int>(30 * v1));
    case model::ProfileFrame::Kind::kAsync:  // purple
      return rgb(150 + static_cast<int>(40 * v1), 105 + static_cast<int>(35 * v2),
                 225 + static_cast<int>(30 * v1));
    case model::ProfileFrame::Kind::kKernel:  // grey
      return rgb(150 + static_cast<int>(40 * v1), 150 + static_cast<int>(40 * v1),
                 150 + static_cast<int>(40 * v1));
    case model::ProfileFrame::Kind::kNative:
      break;
  }
  if (n.inlined) {  // aqua
    return rgb(70 + static_cast<int>(40 * v1), 200 + static_cast<int>(40 * v2),
               195 + static_cast<int>(40 * v2));
  }
  // warm: red through orange to yellow
  return rgb(215 + static_cast<int>(40 * v1), 70 + static_cast<int>(150 * v2),
             30 + static_cast<int>(40 * v1));
}

const char* kind_label(const Node& n) {
  if (n.root) return "all samples";
  switch (n.kind) {
    case model::ProfileFrame::Kind::kCoroutine:
      return "coroutine, running on the thread";
    case model::ProfileFrame::Kind::kAsync:
      return n.uncertain ? "async parent, awaiting (not on the thread's stack); join uncertain"
                         : "async parent, awaiting (not on the thread's stack)";
    case model::ProfileFrame::Kind::kKernel:
      return "kernel";
    case model::ProfileFrame::Kind::kNative:
      break;
  }
  return n.inlined ? "native, inlined" : "native";
}

const char* kind_class(const Node& n) {
  if (n.root) return "root";
  switch (n.kind) {
    case model::ProfileFrame::Kind::kCoroutine:
      return "k-coro";
    case model::ProfileFrame::Kind::kAsync:
      return "k-async";
    case model::ProfileFrame::Kind::kKernel:
      return "k-kernel";
    case model::ProfileFrame::Kind::kNative:
      break;
  }
  return n.inlined ? "k-inlined" : "k-native";
}

std::string fixed2(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

// The name as it fits into `width` pixels ("" when not even three characters do).
std::string fitted_name(const std::string& name, double width) {
  const int chars = static_cast<int>((width - 6) / kCharWidth);
  if (chars < 3) return "";
  if (static_cast<int>(name.size()) <= chars) return name;
  // Cut on a UTF-8 character boundary.
  size_t cut = static_cast<size_t>(chars - 2);
  while (cut > 0 && (static_cast<unsigned char>(name[cut]) & 0xc0) == 0x80) --cut;
  return name.substr(0, cut) + "..";
}

std::string tooltip(const model::Profile& p, const Node& n, int64_t total) {
  std::string t = n.name + "\n";
  if (!n.locations.empty()) {
    auto best = n.locations.begin();
    for (auto it = n.locations.begin(); it != n.locations.end(); ++it) {
      if (it->second > best->second) best = it;
    }
    t += best->first;
    if (n.locations.size() > 1) {
      t += " (+" + std::to_string(n.locations.size() - 1) + " more lines)";
    }
    t += "\n";
  }
  t += kind_label(n);
  t += "\n" + profile_weight_text(p, n.weight) + ", " +
       fixed2(total > 0 ? 100.0 * n.weight / total : 0.0) + "%";
  return t;
}

constexpr const char* kStyle = R"CSS(
text { font-family: monospace; font-size: 12px; fill: #000; }
text.title { font-size: 16px; }
text.btn { cursor: pointer; fill: #1a4fa0; text-decoration: underline; }
g.f { cursor: pointer; }
g.f rect { stroke: rgba(0,0,0,0.15); stroke-width: 0.5; }
g.f:hover rect { stroke: #000; stroke-width: 1; }
g.f text { pointer-events: none; }
g.k-async rect { stroke: #3a1a72; stroke-width: 1.2; stroke-dasharray: 4 2; }
g.uncertain rect { stroke: #d00000; stroke-width: 1.5; stroke-dasharray: 2 2; }
g.anc rect { opacity: 0.5; }
g.hit rect { fill: rgb(230,0,230); }
)CSS";

// The viewer: zoom, search, details. Reads everything from the DOM the C++ side wrote.
constexpr const char* kScript = R"JS(
(function () {
  'use strict';
  var svg = document.documentElement;
  var pad = Number(svg.getAttribute('data-pad'));
  var width = Number(svg.getAttribute('data-frames-width'));
  var total = Number(svg.getAttribute('data-total'));
  var charWidth = 7.2;
  var frames = Array.prototype.slice.call(document.getElementsByClassName('f'));
  var byId = {};
  var details = document.getElementById('details');
  var matched = document.getElementById('matched');
  var reset = document.getElementById('reset');
  var searchButton = document.getElementById('search');
  var idle = 'Click a frame to zoom, Search or Ctrl-F to find functions.';

  function num(g, name) { return Number(g.getAttribute(name)); }

  function place(g, x, w) {
    var rect = g.getElementsByTagName('rect')[0];
    var text = g.getElementsByTagName('text')[0];
    rect.setAttribute('x', x.toFixed(2));
    rect.setAttribute('width', w.toFixed(2));
    text.setAttribute('x', (x + 3).toFixed(2));
    var name = g.getAttribute('data-name');
    var fit = Math.floor((w - 6) / charWidth);
    text.textContent = fit < 3 ? '' : (name.length <= fit ? name : name.substr(0, fit - 2) + '..');
  }

  function zoom(target) {
    var s = num(target, 'data-s'), w = num(target, 'data-w'), d = num(target, 'data-d');
    frames.forEach(function (g) {
      var gs = num(g, 'data-s'), gw = num(g, 'data-w'), gd = num(g, 'data-d');
      g.classList.remove('anc');
      if (gd < d && gs <= s && gs + gw >= s + w) {
        g.style.display = '';
        g.classList.add('anc');
        place(g, pad, width);
      } else if (gd >= d && gs >= s && gs + gw <= s + w) {
        g.style.display = '';
        place(g, pad + (gs - s) / w * width, gw / w * width);
      } else {
        g.style.display = 'none';
      }
    });
    var isRoot = d === 0;
    reset.style.opacity = isRoot ? '0' : '1';
    svg.setAttribute('data-zoom', target.id);
  }

  function search(pattern) {
    var re;
    try {
      re = new RegExp(pattern);
    } catch (e) {
      matched.textContent = 'Bad regular expression: ' + pattern;
      return;
    }
    var spans = [];
    frames.forEach(function (g) {
      if (pattern !== '' && re.test(g.getAttribute('data-name'))) {
        g.classList.add('hit');
        spans.push([num(g, 'data-s'), num(g, 'data-s') + num(g, 'data-w')]);
      } else {
        g.classList.remove('hit');
      }
    });
    // Nested matches (recursion, a function under itself) count once: merge the spans.
    spans.sort(function (a, b) { return a[0] - b[0] || b[1] - a[1]; });
    var covered = 0, end = -1;
    spans.forEach(function (sp) {
      if (sp[1] <= end) return;
      covered += sp[1] - Math.max(sp[0], end);
      end = sp[1];
    });
    var pct = total > 0 ? 100 * covered / total : 0;
    matched.textContent = pattern === '' ? ' ' : 'Matched: ' + pct.toFixed(1) + '% (' + pattern + ')';
    svg.setAttribute('data-matched', pattern === '' ? '' : pct.toFixed(2));
    searchButton.textContent = pattern === '' ? 'Search' : 'Clear search';
  }

  function ask() {
    if (searchButton.textContent !== 'Search') { search(''); return; }
    var pattern = window.prompt('Search for (regular expression):', '');
    if (pattern !== null) search(pattern);
  }

  frames.forEach(function (g) {
    byId[g.id] = g;
    var tip = g.getElementsByTagName('title')[0].textContent.replace(/\n/g, '  |  ');
    g.addEventListener('click', function () { zoom(g); });
    g.addEventListener('mouseover', function () { details.textContent = tip; });
    g.addEventListener('mouseout', function () { details.textContent = idle; });
  });
  reset.addEventListener('click', function () { zoom(byId.f0); });
  searchButton.addEventListener('click', ask);
  window.addEventListener('keydown', function (e) {
    if ((e.ctrlKey || e.metaKey) && e.key === 'f') { e.preventDefault(); ask(); }
    if (e.key === 'Escape') { zoom(byId.f0); search(''); }
  });

  // "s=REGEX" and "x=fN" in the fragment or query: a link to a view, and how tests drive it.
  var params = (window.location.hash.replace(/^#/, '') + '&' +
                window.location.search.replace(/^\?/, '')).split('&');
  params.forEach(function (kv) {
    var eq = kv.indexOf('=');
    if (eq < 0) return;
    var key = kv.substr(0, eq), value = decodeURIComponent(kv.substr(eq + 1));
    if (key === 'x' && byId[value]) zoom(byId[value]);
    if (key === 's') search(value);
  });
  details.textContent = idle;
  svg.setAttribute('data-viewer', 'ready');
})();
)JS";

struct LegendEntry {
  const char* label;
  const char* fill;
  const char* cls;
};

constexpr LegendEntry kLegend[] = {
    {"native", "rgb(235,145,50)", "k-native"},
    {"inlined", "rgb(90,220,215)", "k-inlined"},
    {"coroutine (running)", "rgb(70,145,240)", "k-coro"},
    {"async parent (awaiting, not on stack)", "rgb(170,122,240)", "k-async"},
    {"join uncertain", "rgb(170,122,240)", "k-async uncertain"},
    {"kernel", "rgb(170,170,170)", "k-kernel"},
};

}  // namespace

std::string xml_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  const char* kReplacement = "\xEF\xBF\xBD";
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '&':
          out += "&amp;";
          break;
        case '<':
          out += "&lt;";
          break;
        case '>':
          out += "&gt;";
          break;
        case '"':
          out += "&quot;";
          break;
        case '\'':
          out += "&apos;";
          break;
        default:
          // XML 1.0 allows only tab, LF and CR below 0x20.
          if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
            out += kReplacement;
          } else {
            out += static_cast<char>(c);
          }
      }
      ++i;
      continue;
    }
    // A well-formed UTF-8 sequence (no overlongs, surrogates or code points past U+10FFFF).
    size_t len = 0;
    uint32_t cp = 0;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      cp = c & 0x07;
    }
    bool ok = len > 0 && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) ok = false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (ok && ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
               (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) || cp == 0xfffe || cp == 0xffff)) {
      ok = false;
    }
    if (ok) {
      out.append(s, i, len);
      i += len;
    } else {
      out += kReplacement;
      ++i;
    }
  }
  return out;
}

namespace {

// Where a node is drawn: its start offset (in weight units) and depth.
struct Placed {
  size_t node;
  int64_t start;
  int depth;
};

// Layout: start offsets and depths, depth first in name order; nodes narrower than min_width
// pixels are left out.
std::vector<Placed> place_nodes(const std::vector<Node>& nodes, double frames_width,
                                double min_width, int* max_depth) {
  const int64_t total = nodes[0].weight;
  std::vector<Placed> placed;
  *max_depth = 0;
  std::vector<Placed> todo{{0, 0, 0}};
  while (!todo.empty()) {
    const Placed cur = todo.back();
    todo.pop_back();
    const Node& n = nodes[cur.node];
    if (total > 0 && n.weight * frames_width / total < min_width) continue;
    placed.push_back(cur);
    *max_depth = std::max(*max_depth, cur.depth);
    // Children pushed in reverse so they pop in name order.
    std::vector<Placed> kids;
    int64_t offset = cur.start;
    for (const auto& [key, child] : n.children) {
      kids.push_back({child, offset, cur.depth + 1});
      offset += nodes[child].weight;
    }
    for (auto it = kids.rbegin(); it != kids.rend(); ++it) todo.push_back(*it);
  }
  return placed;
}

std::string svg_title(const model::Profile& p, const SvgOptions& opts) {
  if (!opts.title.empty()) return opts.title;
  std::string title = std::string("asyncprobe ") +
                      (p.type == model::Profile::Type::kCpu ? "CPU" : "await") +
                      " profile of pid " + std::to_string(p.pid);
  if (!p.command.empty()) title += " (" + p.command + ")";
  return title;
}

std::string svg_subtitle(const model::Profile& p, int64_t total) {
  std::string subtitle = profile_weight_text(p, total);
  if (p.type == model::Profile::Type::kAwait) subtitle += " suspended";
  subtitle += " in " + util::format_duration_ns(p.duration_ns);
  if (p.type == model::Profile::Type::kCpu && p.frequency_hz > 0) {
    subtitle += " at " + std::to_string(p.frequency_hz) + " Hz";
  }
  if (p.lost_samples > 0) subtitle += ", " + std::to_string(p.lost_samples) + " lost";
  if (!p.warnings.empty()) {
    subtitle += ", " + std::to_string(p.warnings.size()) +
                (p.warnings.size() == 1 ? " warning: " : " warnings, first: ") + p.warnings[0];
  }
  return subtitle;
}

// The document up to the frames: style, title, subtitle, buttons, legend.
void write_svg_head(std::ostream& out, const model::Profile& p, const SvgOptions& opts,
                    int64_t total, int height, double frames_width) {
  out << "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n"
      << "<svg version=\"1.1\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" << opts.width
      << "\" height=\"" << height << "\" viewBox=\"0 0 " << opts.width << " " << height
      << "\" data-total=\"" << total << "\" data-unit=\"" << profile_weight_unit(p)
      << "\" data-pad=\"" << kPad << "\" data-frames-width=\"" << fixed2(frames_width)
      << "\">\n<style>" << kStyle << "</style>\n";
  out << "<rect x=\"0\" y=\"0\" width=\"" << opts.width << "\" height=\"" << height
      << "\" fill=\"#f6f6f2\"/>\n";
  out << "<text id=\"title\" class=\"title\" x=\"" << opts.width / 2
      << "\" y=\"20\" text-anchor=\"middle\">" << xml_escape(svg_title(p, opts)) << "</text>\n";
  out << "<text id=\"subtitle\" x=\"" << opts.width / 2 << "\" y=\"36\" text-anchor=\"middle\">"
      << xml_escape(svg_subtitle(p, total)) << "</text>\n";
  out << "<text id=\"reset\" class=\"btn\" x=\"" << kPad << "\" y=\"20\" style=\"opacity:0\">"
      << "Reset Zoom</text>\n";
  out << "<text id=\"search\" class=\"btn\" x=\"" << opts.width - kPad
      << "\" y=\"20\" text-anchor=\"end\">Search</text>\n";
  out << "<g id=\"legend\">\n";
  double lx = kPad;
  for (const LegendEntry& e : kLegend) {
    out << "<g class=\"" << e.cls << "\"><rect x=\"" << fixed2(lx) << "\" y=\"43\" width=\"14\""
        << " height=\"11\" fill=\"" << e.fill << "\"/><text x=\"" << fixed2(lx + 18)
        << "\" y=\"53\">" << e.label << "</text></g>\n";
    lx += 18 + std::string(e.label).size() * kCharWidth + 16;
  }
  out << "</g>\n";
}

}  // namespace

void write_flame_svg(std::ostream& out, const model::Profile& p, const SvgOptions& opts) {
  const std::vector<Node> nodes = build_tree(p);
  const int64_t total = nodes[0].weight;
  const double frames_width = opts.width - 2 * kPad;
  const int fh = opts.frame_height;
  int max_depth = 0;
  const std::vector<Placed> placed = place_nodes(nodes, frames_width, opts.min_width, &max_depth);
  const int height = kHeaderHeight + (max_depth + 1) * fh + kFooterHeight;
  const int frames_bottom = kHeaderHeight + (max_depth + 1) * fh;

  write_svg_head(out, p, opts, total, height, frames_width);
  out << "<g id=\"frames\">\n";
  for (size_t i = 0; i < placed.size(); ++i) {
    const Placed& pl = placed[i];
    const Node& n = nodes[pl.node];
    const double x = kPad + (total > 0 ? pl.start * frames_width / total : 0);
    const double w = total > 0 ? n.weight * frames_width / total : frames_width;
    const int y = frames_bottom - (pl.depth + 1) * fh;
    out << "<g id=\"f" << i << "\" class=\"f " << kind_class(n) << (n.uncertain ? " uncertain" : "")
        << "\" data-s=\"" << pl.start << "\" data-w=\"" << n.weight << "\" data-d=\"" << pl.depth
        << "\" data-name=\"" << xml_escape(n.name) << "\"><title>"
        << xml_escape(tooltip(p, n, total)) << "</title><rect x=\"" << fixed2(x) << "\" y=\"" << y
        << "\" width=\"" << fixed2(w) << "\" height=\"" << fh - 1 << "\" rx=\"2\" fill=\""
        << frame_colour(n) << "\"/><text x=\"" << fixed2(x + 3) << "\" y=\"" << y + fh - 4 << "\">"
        << xml_escape(fitted_name(n.name, w)) << "</text></g>\n";
  }
  out << "</g>\n";
  out << "<text id=\"details\" x=\"" << kPad << "\" y=\"" << height - 9 << "\"> </text>\n";
  out << "<text id=\"matched\" x=\"" << opts.width - kPad << "\" y=\"" << height - 9
      << "\" text-anchor=\"end\"> </text>\n";
  // Last, so the script runs once every element it looks up has been parsed.
  out << "<script type=\"text/ecmascript\"><![CDATA[" << kScript << "]]></script>\n</svg>\n";
}

}  // namespace asyncprobe::output
