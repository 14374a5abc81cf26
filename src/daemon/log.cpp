#include "daemon/log.hpp"

#include <array>
#include <utility>

namespace hvsock::daemon {

namespace {

constexpr std::array<std::pair<std::string_view, log_level>, 12> names{{
    {"error", log_level::error},
    {"err", log_level::error},
    {"3", log_level::error},
    {"warning", log_level::warning},
    {"warn", log_level::warning},
    {"4", log_level::warning},
    {"notice", log_level::notice},
    {"5", log_level::notice},
    {"info", log_level::info},
    {"6", log_level::info},
    {"debug", log_level::debug},
    {"7", log_level::debug},
}};

}  // namespace

std::optional<log_level> parse_log_level(std::string_view text) {
  for (const auto& [name, level] : names)
    if (name == text) return level;
  return std::nullopt;
}

std::string_view to_string(log_level level) {
  switch (level) {
    case log_level::error: return "error";
    case log_level::warning: return "warning";
    case log_level::notice: return "notice";
    case log_level::info: return "info";
    case log_level::debug: return "debug";
  }
  return "unknown";
}

}  // namespace hvsock::daemon
