// message_socket: a connected hvsock socket that keeps message boundaries
// (SOCK_SEQPACKET), and message_listener to accept them.
//
// Addressing and routing are those of stream and listener; only the type
// differs, and a message connect to a stream listener (or the reverse) is
// refused. Each send() is one message, delivered whole or not at all; each
// receive() takes one message, and a buffer too small for it keeps its
// first bytes and says the rest was dropped (truncated), as recv(2) does.
// The fd is a real kernel socket (AF_UNIX SOCK_SEQPACKET under the emulated
// transport, AF_VSOCK SOCK_SEQPACKET in a guest): poll/epoll work on it.
//
// Message size: the socket's send buffer bounds one message. Under the
// emulated transport hvsockd sizes both ends for max_message_size() (it
// needs CAP_NET_ADMIN to go past the system's net.core.wmem_max); a larger
// message fails with message_too_long and sends nothing. Inside a guest
// (kernel transport) the bound is this socket's SO_VM_SOCKETS_BUFFER_SIZE;
// the kernel itself refuses a message larger than the smaller of both ends'
// buffer sizes (EMSGSIZE on Linux 6.12, ENOMEM on 6.1), which send() also
// reports as message_too_long.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <span>
#include <string_view>

#include <hvsock/endpoint.hpp>
#include <hvsock/listener.hpp>
#include <hvsock/result.hpp>
#include <hvsock/socket_type.hpp>
#include <hvsock/stream.hpp>
#include <hvsock/unique_fd.hpp>

namespace hvsock {

// What one receive() took.
struct receive_result {
  std::size_t size = 0;        // bytes stored in the buffer
  std::size_t length = 0;      // the message's whole length (> size: truncated)
  bool end_of_stream = false;  // no message: the peer shut down its write side
  bool truncated() const noexcept { return length > size; }
};

class message_socket {
 public:
  message_socket() = default;
  message_socket(unique_fd fd, endpoint local, endpoint peer);

  // As stream::connect, with a message listener at `target`.
  static result<message_socket> connect(const endpoint& target,
                                        const connect_options& options = {});

  // Sends `message` as one message (an empty one too; inside a guest the
  // kernel sends nothing for it: docs/messages.md). message_too_long if
  // the socket cannot carry it whole; would_block when non-blocking and the
  // peer's queue has no room for it now (inside a guest the kernel may have
  // sent the start of it then).
  result<void> send(std::span<const std::byte> message);
  result<void> send(std::string_view text) { return send(std::as_bytes(std::span(text))); }
  // Takes the next message. An empty message is {0, 0, false}; the end of
  // the peer's messages is {0, 0, true}.
  result<receive_result> receive(std::span<std::byte> buffer);

  // The largest message send() takes whole on this socket.
  result<std::size_t> max_message_size() const;

  result<void> shutdown(shutdown_how how);
  result<void> set_non_blocking(bool enabled);
  void close() noexcept;

  bool is_open() const noexcept { return fd_.valid(); }
  int native_handle() const noexcept { return fd_.get(); }
  unique_fd release() noexcept { return std::move(fd_); }
  const endpoint& local_endpoint() const noexcept { return local_; }
  const endpoint& peer_endpoint() const noexcept { return peer_; }

 private:
  unique_fd fd_;
  endpoint local_{};
  endpoint peer_{};
  int domain_ = 0;  // AF_UNIX (emulated) or AF_VSOCK (kernel): how boundaries are marked
};

// A listener for message connections. listen_options apply as they are
// (backlog, control socket, relisten and its events).
class message_listener {
 public:
  message_listener() = default;

  static result<message_listener> listen(const endpoint& local, const listen_options& options = {});

  // As listener::accept.
  result<message_socket> accept(std::optional<std::chrono::milliseconds> timeout = std::nullopt);

  std::optional<std::chrono::milliseconds> relisten_due_in() const {
    return inner_.relisten_due_in();
  }
  result<void> set_non_blocking(bool enabled) { return inner_.set_non_blocking(enabled); }
  void close() noexcept { inner_.close(); }
  bool is_open() const noexcept { return inner_.is_open(); }
  int native_handle() const noexcept { return inner_.native_handle(); }
  const endpoint& local_endpoint() const noexcept { return inner_.local_endpoint(); }

 private:
  explicit message_listener(listener inner) : inner_(std::move(inner)) {}
  listener inner_;  // its accept() hands over SOCK_SEQPACKET fds
};

}  // namespace hvsock
