#include "protocol/hybrid_vsock.hpp"

#include <charconv>

namespace hvsock::detail {
namespace {

bool blank(char c) { return c == ' ' || c == '\t'; }

// "<keyword><blanks><port>[blanks]['\r']"
std::optional<std::uint32_t> parse_line(std::string_view line, std::string_view keyword) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  while (!line.empty() && blank(line.back())) line.remove_suffix(1);
  if (!line.starts_with(keyword)) return std::nullopt;
  line.remove_prefix(keyword.size());
  if (line.empty() || !blank(line.front())) return std::nullopt;
  while (!line.empty() && blank(line.front())) line.remove_prefix(1);
  if (line.empty() || line.front() < '0' || line.front() > '9') return std::nullopt;
  std::uint32_t port = 0;
  const auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), port);
  if (ec != std::errc() || end != line.data() + line.size()) return std::nullopt;
  return port;
}

}  // namespace

std::string hybrid_connect_line(std::uint32_t port) {
  return "CONNECT " + std::to_string(port) + "\n";
}

std::string hybrid_ok_line(std::uint32_t host_port) {
  return "OK " + std::to_string(host_port) + "\n";
}

std::optional<std::uint32_t> parse_hybrid_connect(std::string_view line) {
  return parse_line(line, "CONNECT");
}

std::optional<std::uint32_t> parse_hybrid_ok(std::string_view line) {
  return parse_line(line, "OK");
}

}  // namespace hvsock::detail
