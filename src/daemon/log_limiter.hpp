// log_limiter: at most `lines` log lines per `window` for each key (a
// partition's name), so that a guest or client hammering the daemon with
// refused requests cannot flood its log. Lines over the budget are counted,
// not logged; when that key's window ends, one line says how many were left
// out: "<key>: ... and N more <what>" (e.g. "refusals suppressed"). Counters
// elsewhere (hvsock stats) stay exact: only the log lines are limited.
//
// Windows are fixed and start at a key's first line after its previous
// window ended. A summary is logged by the first call (log or flush) after
// the window ends; the owner runs flush() at next_flush() (a timer) so the
// summary does not wait for the key's next line. Keys whose window is over
// are forgotten, so the state is bounded by the keys active in one window.
// The clock is injected, so the class is tested without sleeping.
//
// Thread safety: none; runs on the event loop's thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "daemon/event_loop.hpp"

namespace hvsock::daemon {

class log_limiter {
 public:
  using clock = std::chrono::steady_clock;
  using now_function = std::function<clock::time_point()>;

  struct limits {
    std::size_t lines = 10;  // logged per key and window
    clock::duration window = std::chrono::seconds(1);
  };

  // `what` ends the summary line ("refusals suppressed"); 10 lines a second.
  // Every line, summaries included, is logged at `level`.
  log_limiter(std::string what, log_level level, log_function log);
  log_limiter(std::string what, log_level level, log_function log, limits l, now_function now);

  // Logs `line` if `key` has budget left in its window, else counts it.
  // Returns whether it was logged.
  bool log(const std::string& key, const std::string& line);
  // Logs the summary of every window that is over and forgets those keys.
  void flush();
  // When the earliest window with lines left out ends (when flush() has a
  // summary to log); nullopt when no line is being left out.
  std::optional<clock::time_point> next_flush() const;

  std::size_t keys() const { return windows_.size(); }

 private:
  struct window {
    clock::time_point start;
    std::size_t logged = 0;
    std::size_t suppressed = 0;
  };
  void end_window(const std::string& key, const window& w);

  std::string what_;
  log_level level_;
  log_function log_;
  limits limits_;
  now_function now_;
  std::map<std::string, window, std::less<>> windows_;
};

}  // namespace hvsock::daemon
