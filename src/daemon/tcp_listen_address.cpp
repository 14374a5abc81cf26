// tcp_listen_address: parsing ADDR:PORT and opening the TCP listener.
#include "daemon/tcp_listen_address.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include <hvsock/error.hpp>

namespace hvsock::daemon {
namespace {

failure bad(std::string_view text, std::string_view why) {
  return failure(errc::invalid_argument, fmt::format("\"{}\": {}", text, why));
}

}  // namespace

result<tcp_listen_address> parse_tcp_listen_address(std::string_view text) {
  constexpr std::string_view expected =
      "expected IPV4:PORT, [IPV6]:PORT or :PORT (127.0.0.1), e.g. 127.0.0.1:9731";
  std::string_view host;
  std::string_view port_text;
  bool ipv6 = false;
  if (text.starts_with('[')) {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return bad(text, expected);
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
    ipv6 = true;
  } else if (const std::size_t colon = text.rfind(':'); colon != std::string_view::npos) {
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos)
      return bad(text, "an IPv6 address goes in brackets: [IPV6]:PORT");
  } else {
    port_text = text;  // a bare port
  }

  unsigned long port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size())
    return bad(text, expected);
  if (port > 65535) return bad(text, "the port must be 0..65535");

  tcp_listen_address out;
  if (ipv6) {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(static_cast<std::uint16_t>(port));
    if (::inet_pton(AF_INET6, std::string(host).c_str(), &a.sin6_addr) != 1)
      return bad(text, "not an IPv6 address between the brackets");
    std::memcpy(&out.address, &a, sizeof a);
    out.length = sizeof a;
    return out;
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  if (host.empty() || host == "localhost") {
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);  // loopback unless told otherwise
  } else if (::inet_pton(AF_INET, std::string(host).c_str(), &a.sin_addr) != 1) {
    return bad(text, expected);
  }
  std::memcpy(&out.address, &a, sizeof a);
  out.length = sizeof a;
  return out;
}

std::string to_string(const sockaddr_storage& address) {
  char host[INET6_ADDRSTRLEN] = "?";
  if (address.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&address);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    return fmt::format("[{}]:{}", host, ntohs(a->sin6_port));
  }
  const auto* a = reinterpret_cast<const sockaddr_in*>(&address);
  ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
  return fmt::format("{}:{}", host, ntohs(a->sin_port));
}

result<unique_fd> listen_tcp(const tcp_listen_address& where, int backlog) {
  const std::string name = to_string(where.address);
  unique_fd fd(
      ::socket(where.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP));
  if (!fd) return make_system_error(errno, "socket for " + name);
  const int on = 1;
  (void)::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  if (where.address.ss_family == AF_INET6)  // [::] means IPv6 only, as written
    (void)::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&where.address), where.length) < 0)
    return make_system_error(errno, "bind " + name);
  if (::listen(fd.get(), backlog) < 0) return make_system_error(errno, "listen on " + name);
  return fd;
}

result<tcp_listen_address> bound_address(int fd) {
  tcp_listen_address out;
  out.length = sizeof out.address;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&out.address), &out.length) < 0)
    return make_system_error(errno, "getsockname");
  return out;
}

}  // namespace hvsock::daemon
