// log_limiter: per-key fixed windows of log lines, and the summary of what
// each window left out.
#include "daemon/log_limiter.hpp"

#include <fmt/format.h>

#include <utility>

namespace hvsock::daemon {

log_limiter::log_limiter(std::string what, log_level level, log_function log)
    : log_limiter(std::move(what), level, std::move(log), limits{}, [] { return clock::now(); }) {}

log_limiter::log_limiter(std::string what, log_level level, log_function log, limits l,
                         now_function now)
    : what_(std::move(what)),
      level_(level),
      log_(std::move(log)),
      limits_(l),
      now_(std::move(now)) {}

bool log_limiter::log(const std::string& key, const std::string& line) {
  const clock::time_point now = now_();
  auto it = windows_.find(key);
  if (it != windows_.end() && now - it->second.start >= limits_.window) {
    end_window(key, it->second);
    it->second = window{};
    it->second.start = now;
  }
  if (it == windows_.end()) it = windows_.emplace(key, window{now, 0, 0}).first;
  window& w = it->second;
  if (w.logged < limits_.lines) {
    ++w.logged;
    log_(level_, line);
    return true;
  }
  ++w.suppressed;
  return false;
}

void log_limiter::flush() {
  const clock::time_point now = now_();
  for (auto it = windows_.begin(); it != windows_.end();) {
    if (now - it->second.start >= limits_.window) {
      end_window(it->first, it->second);
      it = windows_.erase(it);
    } else {
      ++it;
    }
  }
}

std::optional<log_limiter::clock::time_point> log_limiter::next_flush() const {
  std::optional<clock::time_point> earliest;
  for (const auto& [key, w] : windows_) {
    if (w.suppressed == 0) continue;
    const clock::time_point end = w.start + limits_.window;
    if (!earliest || end < *earliest) earliest = end;
  }
  return earliest;
}

void log_limiter::end_window(const std::string& key, const window& w) {
  if (w.suppressed > 0)
    log_(level_, fmt::format("{}: ... and {} more {}", key, w.suppressed, what_));
}

}  // namespace hvsock::daemon
