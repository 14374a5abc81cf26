// How the daemon says something: one line at one syslog priority. Code
// under src/daemon never prints by itself; hvsockd's main decides where the
// lines go (stderr, with "<N>" prefixes when that is the journal) and which
// levels it keeps (--log-level).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace hvsock::daemon {

// The syslog priorities the daemon uses; the values are syslog's, so a
// line's "<N>" prefix is its level as a number.
enum class log_level : int {
  error = 3,    // the daemon failed at something it had to do
  warning = 4,  // a peer misbehaved or a resource ran short; the daemon goes on
  notice = 5,   // start, stop, and changes to partitions, services and guests
  info = 6,     // listeners coming and going, refusals
  debug = 7,    // one line per brokered connection
};

using log_function = std::function<void(log_level level, const std::string& line)>;

// "error", "warning", "notice", "info", "debug" (also "err", "warn" and the
// numbers 3..7); nullopt for anything else.
std::optional<log_level> parse_log_level(std::string_view text);
std::string_view to_string(log_level level);

}  // namespace hvsock::daemon
