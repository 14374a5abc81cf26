// listener: owns the transport's listening handle and defers accept to the
// transport that made it.
#include <hvsock/listener.hpp>

#include "sys/socket_ops.hpp"
#include "transport/transport.hpp"

namespace hvsock {

listener::listener(unique_fd fd, endpoint local, std::shared_ptr<const detail::transport> transport)
    : fd_(std::move(fd)), local_(local), transport_(std::move(transport)) {}

listener::listener(listener&&) noexcept = default;
listener& listener::operator=(listener&&) noexcept = default;
listener::~listener() = default;

result<listener> listener::listen(const endpoint& local, const listen_options& options) {
  auto transport = detail::select_transport(options.control_socket);
  if (!transport) return transport.error().with_context("listen " + local.to_string());
  return (*transport)->listen(local, options.backlog);
}

result<stream> listener::accept(std::optional<std::chrono::milliseconds> timeout) {
  if (!fd_ || !transport_) return make_error(errc::not_connected, "accept");
  return transport_->accept(fd_.get(), local_, timeout);
}

result<void> listener::set_non_blocking(bool enabled) {
  if (!fd_) return make_error(errc::not_connected, "set_non_blocking");
  return detail::set_non_blocking(fd_.get(), enabled);
}

void listener::close() noexcept { fd_.reset(); }

}  // namespace hvsock
