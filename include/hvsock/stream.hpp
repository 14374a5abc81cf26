// stream: a connected hvsock byte stream, and connect() to make one.
//
// The fd behind a stream is a real kernel socket: poll/epoll/select work on
// native_handle(), and shutdown, EOF and EPIPE behave as the kernel makes
// them (writes never raise SIGPIPE). A stream is move-only; one object must
// not be used from two threads at once, but reading on one thread while
// writing on another is fine, as for any socket.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include <hvsock/endpoint.hpp>
#include <hvsock/result.hpp>
#include <hvsock/unique_fd.hpp>

namespace hvsock {

inline constexpr std::chrono::milliseconds default_connect_timeout{2000};

enum class shutdown_how { read, write, both };

// Where a process reaches the switch. Empty control_socket means: from the
// environment (HVSOCK_CONTROL_SOCKET, which `hvsock run` sets), else the host
// partition's socket in the runtime directory.
struct connect_options {
  std::chrono::milliseconds timeout = default_connect_timeout;
  std::string control_socket;
};

class stream {
 public:
  stream() = default;
  stream(unique_fd fd, endpoint local, endpoint peer);

  // Connects to `target` from this process's partition. Completes when the
  // connection is queued on the target's listener. Errors: service_not_registered,
  // service_disabled, connection_refused, backlog_full, network_unreachable,
  // unknown_partition, broadcast_not_allowed, parent_on_host, timed_out,
  // daemon_unavailable; each message names the target endpoint.
  static result<stream> connect(const endpoint& target, const connect_options& options = {});

  // Reads up to buffer.size() bytes; 0 means the peer shut down its write side.
  result<std::size_t> read(std::span<std::byte> buffer);
  // Writes some bytes (at least one unless the buffer is empty).
  result<std::size_t> write(std::span<const std::byte> data);
  // Writes everything, retrying partial writes (and waiting when non-blocking).
  result<void> write_all(std::span<const std::byte> data);
  // Convenience overloads for text and raw buffers.
  result<std::size_t> read(void* buffer, std::size_t size);
  result<void> write_all(const void* data, std::size_t size);
  result<void> write_all(std::string_view text) { return write_all(text.data(), text.size()); }

  result<void> shutdown(shutdown_how how);
  result<void> set_non_blocking(bool enabled);
  void close() noexcept;

  bool is_open() const noexcept { return fd_.valid(); }
  int native_handle() const noexcept { return fd_.get(); }
  // Gives the fd to the caller; the stream becomes closed.
  unique_fd release() noexcept { return std::move(fd_); }
  const endpoint& local_endpoint() const noexcept { return local_; }
  const endpoint& peer_endpoint() const noexcept { return peer_; }

 private:
  std::string describe() const;

  unique_fd fd_;
  endpoint local_{};
  endpoint peer_{};
};

inline result<stream> connect(const endpoint& target, const connect_options& options = {}) {
  return stream::connect(target, options);
}

}  // namespace hvsock
