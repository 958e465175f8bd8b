// The terminal side of `asyncprobe top`: ncurses setup and teardown, drawing a View (header,
// table of suspend points, detail and help pages, status line) and reading keys. Knows nothing
// of processes: the session (top/session.h) decides what is shown.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "userspace/top/view.h"

namespace asyncprobe::top {

enum class Page { kTable, kDetail, kDiagnoses, kHelp };

// What the user has chosen, kept across refreshes.
struct ScreenState {
  Page page = Page::kTable;
  size_t selected = 0;       // row index in View::rows
  size_t scroll = 0;         // first table row drawn
  size_t detail_scroll = 0;  // first detail line drawn
  bool paused = false;
  bool editing_filter = false;
  std::string filter_input;  // what is being typed after '/'
  ViewOptions view;
};

class Screen {
 public:
  Screen() = default;
  ~Screen();
  Screen(const Screen&) = delete;
  Screen& operator=(const Screen&) = delete;

  // Takes over the terminal. false with *error when it cannot (no terminfo entry, ...).
  bool open(bool color, bool unicode, std::string* error);
  // Gives the terminal back as it was; safe to call twice.
  void close();

  void draw(const View& view, ScreenState& state, const std::vector<std::string>& detail,
            const std::string& detail_title);
  // The next key, or -1 when none came within timeout_ms.
  int read_key(int timeout_ms);
  // Rows available to the table (the screen minus header and status lines).
  size_t table_rows() const;
  size_t page_rows() const;

 private:
  void draw_header(const View& view, const ScreenState& state);
  void draw_table(const View& view, ScreenState& state);
  void draw_lines(const std::vector<std::string>& lines, size_t first, const std::string& title);
  void draw_status(const View& view, const ScreenState& state);

  void* screen_ = nullptr;  // the ncurses SCREEN (kept opaque: no curses.h in this header)
  bool open_ = false;
  bool color_ = false;
  bool unicode_ = false;
};

// Applies one key to the state; returns false when the key asks to quit. `rows` is the number
// of rows in the current view, `page_rows` what one screen shows.
bool handle_key(int key, ScreenState& state, size_t rows, size_t page_rows, size_t detail_lines);

}  // namespace asyncprobe::top
