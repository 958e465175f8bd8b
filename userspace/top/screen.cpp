#include "userspace/top/screen.h"

#include <curses.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "userspace/output/function_name_shortener.h"
#include "userspace/util/format.h"

namespace asyncprobe::top {

namespace {

constexpr int kHeaderRows = 5;  // title, threads, coroutines, diagnoses, column names
constexpr int kStatusRows = 1;
constexpr short kStuckPair = 1;
constexpr short kTitlePair = 2;

const std::vector<std::string>& help_lines() {
  static const std::vector<std::string> lines = {
      "Keys",
      "",
      "  Up/Down, j/k      move the selection (PgUp/PgDn, Home/End: by page, to the ends)",
      "  Enter             open the selected point: its async stacks, coalesced",
      "  d                 the diagnoses: orphaned, await cycles, thread deadlocks, failed",
      "  Esc, Left, h      back to the table",
      "  /                 filter by function or file (Enter applies, Esc cancels, empty clears)",
      "  s                 sort: stuck first -> count -> oldest wait",
      "  p                 pause refreshing (p again resumes)",
      "  ?                 this page",
      "  q, Ctrl-C         quit",
      "",
      "Columns",
      "",
      "  COUNT    coroutines at the point now",
      "  STUCK    of those, known not resumed: a resume probe watched them for a whole refresh",
      "           interval and saw none (root or CAP_BPF+CAP_PERFMON; the header counts the",
      "           ones that only looked unchanged as `unchanged`)",
      "  OLDEST   the longest any of them has been seen waiting there unchanged (a lower bound)",
      "  RES/S    resumes per second the probe counted at the point; - where none was probed",
  };
  return lines;
}

// `s` cut or padded to exactly `width` columns (names are ASCII after demangling; the few
// Unicode glyphs of the trees count one column each, which holds for the box-drawing set).
std::string fit(const std::string& s, size_t width) {
  size_t cols = 0, i = 0;
  while (i < s.size() && cols < width) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    i += len;
    ++cols;
  }
  std::string out = s.substr(0, std::min(i, s.size()));
  out.append(width - cols, ' ');
  return out;
}

std::string base_name(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string where(const PointRow& r) {
  if (r.file.empty()) return r.line > 0 ? "?" : "(line unknown)";
  std::string w = base_name(r.file);
  w += r.line > 0 ? ":" + std::to_string(r.line)
                  : " (line unknown, index " + std::to_string(r.index) + ")";
  if (r.running_thread != 0) w += " running on " + std::to_string(r.running_thread);
  return w;
}

}  // namespace

Screen::~Screen() { close(); }

bool Screen::open(bool color, bool unicode, std::string* error) {
  screen_ = newterm(nullptr, stdout, stdin);
  if (screen_ == nullptr) {
    *error = "cannot start the terminal (TERM not set or unknown to terminfo)";
    return false;
  }
  open_ = true;
  unicode_ = unicode;
  cbreak();
  noecho();
  keypad(stdscr, TRUE);
  curs_set(0);
  set_escdelay(25);
  color_ = color && has_colors();
  if (color_) {
    start_color();
    use_default_colors();
    init_pair(kStuckPair, COLOR_RED, -1);
    init_pair(kTitlePair, COLOR_CYAN, -1);
  }
  return true;
}

void Screen::close() {
  if (!open_) return;
  endwin();
  delscreen(static_cast<SCREEN*>(screen_));
  screen_ = nullptr;
  open_ = false;
}

size_t Screen::table_rows() const {
  int r = LINES - kHeaderRows - kStatusRows;
  return r > 0 ? static_cast<size_t>(r) : 0;
}

size_t Screen::page_rows() const {
  int r = LINES - 2 - kStatusRows;
  return r > 0 ? static_cast<size_t>(r) : 0;
}

int Screen::read_key(int timeout_ms) {
  timeout(timeout_ms);
  int k = getch();
  return k == ERR ? -1 : k;
}

void Screen::draw_header(const View& v, const ScreenState& state) {
  const Header& h = v.header;
  std::string title = "asyncprobe top - pid " + std::to_string(h.pid);
  if (!h.command.empty()) title += " (" + h.command + ")";
  title += "   refresh #" + std::to_string(h.refreshes) + " took " +
           util::format_duration(h.refresh_ms / 1e3);
  if (state.paused) title += "   [paused]";
  if (color_) attron(COLOR_PAIR(kTitlePair) | A_BOLD);
  mvaddstr(0, 0, fit(title, static_cast<size_t>(COLS)).c_str());
  if (color_) attroff(COLOR_PAIR(kTitlePair) | A_BOLD);
  std::string threads = "threads " + std::to_string(h.threads);
  if (!h.blocked.empty()) {
    threads += ": blocked in";
    for (const auto& [call, n] : h.blocked) threads += " " + call + " " + std::to_string(n);
  }
  mvaddstr(1, 0, fit(threads, static_cast<size_t>(COLS)).c_str());
  std::string coros = "coroutines " + std::to_string(h.suspended + h.running + h.done + h.unknown) +
                      ": " + std::to_string(h.suspended) + " suspended, " +
                      std::to_string(h.running) + " running, " + std::to_string(h.done) +
                      " done   stuck " + std::to_string(h.stuck);
  if (h.unchanged > 0) coros += "   unchanged " + std::to_string(h.unchanged);
  mvaddstr(2, 0, fit(coros, static_cast<size_t>(COLS)).c_str());
  std::string diag = "diagnoses: orphaned " + std::to_string(h.orphaned) + ", await cycles " +
                     std::to_string(h.await_cycles) + ", thread deadlocks " +
                     std::to_string(h.thread_deadlocks) + ", failed (5 min) " +
                     std::to_string(h.failed_recent) + "   (d: details)";
  bool alarm = h.orphaned + h.await_cycles + h.thread_deadlocks + h.failed_recent > 0;
  if (alarm) attron(A_BOLD | (color_ ? COLOR_PAIR(kStuckPair) : 0));
  mvaddstr(3, 0, fit(diag, static_cast<size_t>(COLS)).c_str());
  if (alarm) attroff(A_BOLD | (color_ ? COLOR_PAIR(kStuckPair) : 0));
}

void Screen::draw_table(const View& v, ScreenState& state) {
  size_t width = static_cast<size_t>(COLS);
  size_t rows = table_rows();
  if (state.selected >= v.rows.size()) state.selected = v.rows.empty() ? 0 : v.rows.size() - 1;
  if (state.selected < state.scroll) state.scroll = state.selected;
  if (rows > 0 && state.selected >= state.scroll + rows) state.scroll = state.selected - rows + 1;
  // COUNT STUCK OLDEST RES/S take 31 columns; the location gets what its longest visible entry
  // needs, up to half of the rest, and the function name the remainder.
  size_t rest = width > 32 ? width - 32 : 0;
  size_t where_w = 5;
  for (size_t r = state.scroll; r < v.rows.size() && r < state.scroll + rows; ++r) {
    where_w = std::max(where_w, where(v.rows[r]).size());
  }
  where_w = std::min(where_w, rest / 2);
  size_t fn_w = rest > where_w + 1 ? rest - where_w - 1 : 0;
  char head[64];
  std::snprintf(head, sizeof head, "%7s %6s %8s %7s ", "COUNT", "STUCK", "OLDEST", "RES/S");
  attron(A_BOLD);
  mvaddstr(kHeaderRows - 1, 0,
           fit(std::string(head) + fit("FUNCTION", fn_w) + " WHERE", width).c_str());
  attroff(A_BOLD);
  for (size_t i = 0; i < rows; ++i) {
    int y = kHeaderRows + static_cast<int>(i);
    size_t r = state.scroll + i;
    if (r >= v.rows.size()) {
      move(y, 0);
      clrtoeol();
      continue;
    }
    const PointRow& row = v.rows[r];
    char cells[64];
    std::snprintf(cells, sizeof cells, "%7zu %6zu %8s %7s ", row.count, row.stuck,
                  age_text(row.oldest_s).c_str(), rate_text(row.resumes_per_s).c_str());
    std::string name = output::shorten_function_name(row.function, fn_w);
    std::string line = std::string(cells) + fit(name, fn_w) + " " + fit(where(row), where_w);
    attr_t attr = r == state.selected ? A_REVERSE : A_NORMAL;
    if (color_ && row.stuck > 0) attr |= COLOR_PAIR(kStuckPair);
    attron(attr);
    mvaddstr(y, 0, fit(line, width).c_str());
    attroff(attr);
  }
}

void Screen::draw_lines(const std::vector<std::string>& lines, size_t first,
                        const std::string& title) {
  size_t width = static_cast<size_t>(COLS);
  attron(A_BOLD);
  mvaddstr(0, 0, fit(title, width).c_str());
  attroff(A_BOLD);
  move(1, 0);
  clrtoeol();
  size_t rows = page_rows();
  for (size_t i = 0; i < rows; ++i) {
    size_t k = first + i;
    mvaddstr(2 + static_cast<int>(i), 0, fit(k < lines.size() ? lines[k] : "", width).c_str());
  }
}

void Screen::draw_status(const View& v, const ScreenState& state) {
  std::string s;
  if (state.editing_filter) {
    s = "filter: " + state.filter_input + "_   (Enter applies, Esc cancels)";
  } else {
    s = std::to_string(v.rows.size()) + (v.rows.size() == 1 ? " point" : " points") +
        "   sort: " + to_string(state.view.sort);
    if (!state.view.filter.empty()) s += "   filter: " + state.view.filter;
    s += "   Enter: stacks  /: filter  s: sort  p: pause  ?: help  q: quit";
  }
  attron(A_REVERSE);
  mvaddstr(LINES - 1, 0, fit(s, static_cast<size_t>(COLS)).c_str());
  attroff(A_REVERSE);
}

void Screen::draw(const View& view, ScreenState& state, const std::vector<std::string>& detail,
                  const std::string& detail_title) {
  erase();
  switch (state.page) {
    case Page::kTable:
      draw_header(view, state);
      draw_table(view, state);
      break;
    case Page::kDetail:
    case Page::kDiagnoses:
      draw_lines(detail, state.detail_scroll, detail_title);
      break;
    case Page::kHelp:
      draw_lines(help_lines(), 0, "asyncprobe top: help (any key returns)");
      break;
  }
  draw_status(view, state);
  refresh();
}

namespace {

bool handle_filter_key(int key, ScreenState& s) {
  if (key == 27) {  // Esc: cancel
    s.editing_filter = false;
  } else if (key == '\n' || key == KEY_ENTER) {
    s.view.filter = s.filter_input;
    s.editing_filter = false;
    s.selected = s.scroll = 0;
  } else if (key == KEY_BACKSPACE || key == 127 || key == 8) {
    if (!s.filter_input.empty()) s.filter_input.pop_back();
  } else if (key >= 32 && key < 127) {
    s.filter_input += static_cast<char>(key);
  }
  return true;
}

void move_selection(ScreenState& s, long delta, size_t rows) {
  if (rows == 0) return;
  long next = static_cast<long>(s.selected) + delta;
  next = std::clamp(next, 0L, static_cast<long>(rows) - 1);
  s.selected = static_cast<size_t>(next);
}

void scroll_detail(ScreenState& s, long delta, size_t lines, size_t page) {
  long max_first = static_cast<long>(lines > page ? lines - page : 0);
  long next = std::clamp(static_cast<long>(s.detail_scroll) + delta, 0L, max_first);
  s.detail_scroll = static_cast<size_t>(next);
}

}  // namespace

bool handle_key(int key, ScreenState& s, size_t rows, size_t page_rows, size_t detail_lines) {
  if (s.editing_filter) return handle_filter_key(key, s);
  if (key == 'q' || key == 3) return false;
  if (s.page == Page::kHelp) {
    s.page = Page::kTable;
    return true;
  }
  long page = static_cast<long>(std::max<size_t>(page_rows, 1));
  if (s.page == Page::kDetail || s.page == Page::kDiagnoses) {
    if (key == 27 || key == KEY_LEFT || key == 'h' || key == KEY_BACKSPACE || key == 127) {
      s.page = Page::kTable;
    } else if (key == KEY_DOWN || key == 'j') {
      scroll_detail(s, 1, detail_lines, page_rows);
    } else if (key == KEY_UP || key == 'k') {
      scroll_detail(s, -1, detail_lines, page_rows);
    } else if (key == KEY_NPAGE || key == ' ') {
      scroll_detail(s, page, detail_lines, page_rows);
    } else if (key == KEY_PPAGE) {
      scroll_detail(s, -page, detail_lines, page_rows);
    } else if (key == 'p') {
      s.paused = !s.paused;
    } else if (key == '?') {
      s.page = Page::kHelp;
    }
    return true;
  }
  switch (key) {
    case KEY_DOWN:
    case 'j':
      move_selection(s, 1, rows);
      break;
    case KEY_UP:
    case 'k':
      move_selection(s, -1, rows);
      break;
    case KEY_NPAGE:
      move_selection(s, page, rows);
      break;
    case KEY_PPAGE:
      move_selection(s, -page, rows);
      break;
    case KEY_HOME:
    case 'g':
      s.selected = 0;
      break;
    case KEY_END:
    case 'G':
      move_selection(s, static_cast<long>(rows), rows);
      break;
    case '\n':
    case KEY_ENTER:
    case KEY_RIGHT:
      if (rows > 0) {
        s.page = Page::kDetail;
        s.detail_scroll = 0;
      }
      break;
    case 'd':
      s.page = Page::kDiagnoses;
      s.detail_scroll = 0;
      break;
    case '/':
      s.editing_filter = true;
      s.filter_input = s.view.filter;
      break;
    case 's':
      s.view.sort = next(s.view.sort);
      break;
    case 'p':
      s.paused = !s.paused;
      break;
    case '?':
      s.page = Page::kHelp;
      break;
    default:
      break;
  }
  return true;
}

}  // namespace asyncprobe::top
