#include "protocol/hybrid_vsock.hpp"

#include <sys/socket.h>

#include <array>
#include <cerrno>
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

result<bool> read_hybrid_line(int fd, std::string& line) {
  // Peek, then take only up to the '\n'.
  std::array<char, hybrid_max_line> buf{};
  const std::size_t room = hybrid_max_line - std::min(line.size(), hybrid_max_line);
  if (room == 0)
    return failure(errc::protocol_error,
                   "its line is longer than " + std::to_string(hybrid_max_line) + " bytes");
  ssize_t n;
  do {
    n = ::recv(fd, buf.data(), room, MSG_PEEK | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno == EAGAIN) return false;
  if (n < 0) return make_system_error(errno, "reading its line");
  if (n == 0) return failure(errc::connection_refused, "closed before its line");
  const std::string_view peeked(buf.data(), static_cast<std::size_t>(n));
  const auto eol = peeked.find('\n');
  const std::size_t take = eol == std::string_view::npos ? peeked.size() : eol + 1;
  if (::recv(fd, buf.data(), take, MSG_DONTWAIT) != static_cast<ssize_t>(take))
    return make_system_error(errno, "reading its line");
  line.append(buf.data(), eol == std::string_view::npos ? take : eol);
  if (eol != std::string_view::npos) return true;
  if (line.size() >= hybrid_max_line)
    return failure(errc::protocol_error,
                   "its line is longer than " + std::to_string(hybrid_max_line) + " bytes");
  return false;
}

}  // namespace hvsock::detail
