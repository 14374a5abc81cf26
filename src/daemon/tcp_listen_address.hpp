// tcp_listen_address: the ADDR:PORT of `hvsockd --metrics-listen`, parsed,
// and the listening TCP socket opened on it.
//
// Accepted: IPV4:PORT, [IPV6]:PORT, localhost:PORT, and a bare :PORT or
// PORT, which mean 127.0.0.1: the metrics are served on loopback only
// unless an address is given explicitly. PORT 0 lets the kernel pick one
// (the bound address says which).
#pragma once

#include <sys/socket.h>

#include <string>
#include <string_view>

#include <hvsock/result.hpp>
#include <hvsock/unique_fd.hpp>

namespace hvsock::daemon {

struct tcp_listen_address {
  sockaddr_storage address{};
  socklen_t length = 0;
};

// errc::invalid_argument with a one-line reason (without the option name).
result<tcp_listen_address> parse_tcp_listen_address(std::string_view text);

// "127.0.0.1:9731" or "[::1]:9731".
std::string to_string(const sockaddr_storage& address);

// A non-blocking, CLOEXEC TCP socket bound to `where` and listening
// (SO_REUSEADDR, so a restart does not wait out TIME_WAIT).
result<unique_fd> listen_tcp(const tcp_listen_address& where, int backlog);

// The address a socket is bound to (the port the kernel picked for port 0).
result<tcp_listen_address> bound_address(int fd);

}  // namespace hvsock::daemon
