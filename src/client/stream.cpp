// stream: I/O on the kernel socket the switch handed us. Data never passes
// through hvsockd, so these are plain socket calls with hvsock errors.
#include <hvsock/stream.hpp>

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>

#include "sys/socket_ops.hpp"
#include "transport/transport.hpp"

namespace hvsock {

stream::stream(unique_fd fd, endpoint local, endpoint peer)
    : fd_(std::move(fd)), local_(local), peer_(peer) {}

result<stream> stream::connect(const endpoint& target, const connect_options& options) {
  auto transport = detail::select_transport(options.control_socket);
  if (!transport) return transport.error().with_context("connect " + target.to_string());
  return (*transport)->connect(target, options.timeout, socket_type::stream);
}

std::string stream::describe() const { return peer_.to_string(); }

result<std::size_t> stream::read(std::span<std::byte> buffer) {
  if (!fd_) return make_error(errc::not_connected, "read");
  for (;;) {
    const ssize_t n = ::recv(fd_.get(), buffer.data(), buffer.size(), 0);
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return make_error(errc::would_block, "read " + describe());
    return make_system_error(errno, "read " + describe());
  }
}

result<std::size_t> stream::read(void* buffer, std::size_t size) {
  return read(std::span(static_cast<std::byte*>(buffer), size));
}

result<std::size_t> stream::write(std::span<const std::byte> data) {
  if (!fd_) return make_error(errc::not_connected, "write");
  for (;;) {
    const ssize_t n = ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL);
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return make_error(errc::would_block, "write " + describe());
    return make_system_error(errno, "write " + describe());
  }
}

result<void> stream::write_all(std::span<const std::byte> data) {
  while (!data.empty()) {
    auto n = write(data);
    if (!n) {
      if (n.error().code() != errc::would_block) return n.error();
      if (auto ready = detail::wait_ready(fd_.get(), POLLOUT, std::nullopt); !ready)
        return ready.error().with_context("write " + describe());
      continue;
    }
    data = data.subspan(*n);
  }
  return {};
}

result<void> stream::write_all(const void* data, std::size_t size) {
  return write_all(std::span(static_cast<const std::byte*>(data), size));
}

result<void> stream::shutdown(shutdown_how how) {
  if (!fd_) return make_error(errc::not_connected, "shutdown");
  return detail::shutdown_socket(fd_.get(), how, describe());
}

result<void> stream::set_non_blocking(bool enabled) {
  if (!fd_) return make_error(errc::not_connected, "set_non_blocking");
  return detail::set_non_blocking(fd_.get(), enabled);
}

void stream::close() noexcept { fd_.reset(); }

}  // namespace hvsock
