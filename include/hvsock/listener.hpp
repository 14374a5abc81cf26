// listener: a bound, listening hvsock service, and listen() to make one.
//
// native_handle() is readable when a connection is waiting (or the switch
// went away), so a listener can sit in poll/epoll with other fds. Move-only;
// accept from one thread at a time.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include <hvsock/endpoint.hpp>
#include <hvsock/result.hpp>
#include <hvsock/stream.hpp>
#include <hvsock/unique_fd.hpp>

namespace hvsock {

namespace detail {
class transport;
}

inline constexpr int default_backlog = 16;
inline constexpr int max_backlog = 4096;

struct listen_options {
  int backlog = default_backlog;  // 1..max_backlog
  std::string control_socket;     // as in connect_options
};

class listener {
 public:
  listener() = default;
  listener(unique_fd fd, endpoint local, std::shared_ptr<const detail::transport> transport);
  listener(listener&&) noexcept;
  listener& operator=(listener&&) noexcept;
  ~listener();

  // Binds `local` in this process's partition and listens. local.vm selects
  // who may connect: WILDCARD (anyone allowed to reach this partition),
  // CHILDREN, PARENT (refused on the host), LOOPBACK, or one partition's VmId.
  // Errors: address_in_use, parent_on_host, broadcast_not_allowed,
  // invalid_argument, daemon_unavailable.
  static result<listener> listen(const endpoint& local, const listen_options& options = {});

  // Waits for and takes the next connection. timeout: nullopt waits forever;
  // zero polls once. In non-blocking mode a missing connection is would_block.
  result<stream> accept(std::optional<std::chrono::milliseconds> timeout = std::nullopt);

  result<void> set_non_blocking(bool enabled);
  void close() noexcept;

  bool is_open() const noexcept { return fd_.valid(); }
  int native_handle() const noexcept { return fd_.get(); }
  const endpoint& local_endpoint() const noexcept { return local_; }

 private:
  unique_fd fd_;
  endpoint local_{};
  std::shared_ptr<const detail::transport> transport_;
};

inline result<listener> listen(const endpoint& local, const listen_options& options = {}) {
  return listener::listen(local, options);
}

}  // namespace hvsock
