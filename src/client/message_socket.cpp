// message_socket and message_listener: SOCK_SEQPACKET sockets from the
// transports, read and written with plain socket calls.
//
// A zero-length message and the end of the peer's messages both make
// recvmsg return 0, so each transport gets a mark that only a message has:
//   AF_UNIX (emulated): with SO_PASSCRED on the socket, every message comes
//     with SCM_CREDENTIALS and the end comes with no control data at all;
//   AF_VSOCK (kernel): send() sets MSG_EOR on every message, and the
//     receiver sees MSG_EOR on each; the end has no flags. (A peer that is not
//     libhvsock and sends an empty message without MSG_EOR reads as the end.)
#include <hvsock/message_socket.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <string>

#include "sys/socket_ops.hpp"
#include "transport/transport.hpp"

namespace hvsock {
namespace {

int domain_of(int fd) {
  int domain = 0;
  socklen_t len = sizeof domain;
  return ::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 ? domain : 0;
}

// The largest message an AF_UNIX datagram socket takes whole: Linux refuses
// more than its send buffer less 32 bytes (unix_dgram_sendmsg).
constexpr std::size_t unix_send_overhead = 32;

}  // namespace

message_socket::message_socket(unique_fd fd, endpoint local, endpoint peer)
    : fd_(std::move(fd)), local_(local), peer_(peer), domain_(fd_ ? domain_of(fd_.get()) : 0) {
  if (domain_ == AF_UNIX) {
    const int on = 1;
    (void)::setsockopt(fd_.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on);
  }
}

result<message_socket> message_socket::connect(const endpoint& target,
                                               const connect_options& options) {
  const std::string what = "connect " + target.to_string();
  auto transport = detail::select_transport(options.control_socket);
  if (!transport) return transport.error().with_context(what);
  auto made = (*transport)->connect(target, options.timeout, socket_type::seqpacket);
  if (!made) return made.error();
  const endpoint local = made->local_endpoint(), peer = made->peer_endpoint();
  return message_socket(made->release(), local, peer);
}

result<void> message_socket::send(std::span<const std::byte> message) {
  const std::string what = "send to " + peer_.to_string();
  if (!fd_) return make_error(errc::not_connected, "send");
  const bool vsock = domain_ == AF_VSOCK;
  const auto too_long = [&] {
    auto limit = max_message_size();
    return failure(errc::message_too_long,
                   what + ": a message of " + std::to_string(message.size()) +
                       " bytes is larger than this socket carries (" +
                       (limit ? std::to_string(*limit) + " bytes" : std::string("unknown")) + ")");
  };
  // The kernel's vsock bounds a message by the PEER's buffer size, which
  // this end cannot read; libhvsock sizes both ends alike, so this socket's
  // own SO_VM_SOCKETS_BUFFER_SIZE is the bound send() keeps to, whatever
  // the peer would take. Checked first, so that no kernel sees a message
  // max_message_size() says does not fit.
  if (vsock) {
    if (auto limit = max_message_size(); limit && message.size() > *limit) return too_long();
  }
  const int flags = MSG_NOSIGNAL | (vsock ? MSG_EOR : 0);
  for (;;) {
    const ssize_t n = ::send(fd_.get(), message.data(), message.size(), flags);
    if (n >= 0) {
      // A SOCK_SEQPACKET socket sends all or nothing; anything else is a bug.
      if (static_cast<std::size_t>(n) != message.size())
        return failure(errc::io_error, what + ": the kernel took part of a message");
      return {};
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return make_error(errc::would_block, what);
    // A peer with a smaller buffer than ours: 6.12 says EMSGSIZE, 6.1
    // turned every error of the transport's enqueue into ENOMEM.
    if (errno == EMSGSIZE || (vsock && errno == ENOMEM)) return too_long();
    return make_system_error(errno, what);
  }
}

result<receive_result> message_socket::receive(std::span<std::byte> buffer) {
  const std::string what = "receive from " + peer_.to_string();
  if (!fd_) return make_error(errc::not_connected, "receive");
  const bool vsock = domain_ == AF_VSOCK;
  for (;;) {
    iovec iov{buffer.data(), buffer.size()};
    alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(64)> control{};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    // MSG_TRUNC: the return value is the message's whole length.
    const ssize_t n = ::recvmsg(fd_.get(), &msg, MSG_TRUNC | MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return make_error(errc::would_block, what);
      return make_system_error(errno, what);
    }
    // A peer may pass fds along (SCM_RIGHTS): never keep them.
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int passed = -1;
        std::memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof passed);
        ::close(passed);
      }
    }
    receive_result got;
    got.length = static_cast<std::size_t>(n);
    got.size = std::min(got.length, buffer.size());
    if (n == 0) {
      const bool marked = vsock ? (msg.msg_flags & MSG_EOR) != 0
                                : msg.msg_controllen > 0 || (msg.msg_flags & MSG_CTRUNC) != 0;
      got.end_of_stream = !marked;
    }
    return got;
  }
}

result<std::size_t> message_socket::max_message_size() const {
  if (!fd_) return make_error(errc::not_connected, "max_message_size");
  if (domain_ == AF_VSOCK) {
    // The kernel refuses a message larger than the peer's buffer size; the
    // peers here are libhvsock's or the kernel's, sized alike: ours it is.
    unsigned long long size = 0;
    socklen_t len = sizeof size;
    if (::getsockopt(fd_.get(), AF_VSOCK, SO_VM_SOCKETS_BUFFER_SIZE, &size, &len) < 0)
      return make_system_error(errno, "max_message_size");
    return static_cast<std::size_t>(size);
  }
  int sndbuf = 0;
  socklen_t len = sizeof sndbuf;
  if (::getsockopt(fd_.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) < 0)
    return make_system_error(errno, "max_message_size");
  return sndbuf > static_cast<int>(unix_send_overhead)
             ? static_cast<std::size_t>(sndbuf) - unix_send_overhead
             : 0;
}

result<void> message_socket::shutdown(shutdown_how how) {
  if (!fd_) return make_error(errc::not_connected, "shutdown");
  return detail::shutdown_socket(fd_.get(), how, peer_.to_string());
}

result<void> message_socket::set_non_blocking(bool enabled) {
  if (!fd_) return make_error(errc::not_connected, "set_non_blocking");
  return detail::set_non_blocking(fd_.get(), enabled);
}

void message_socket::close() noexcept { fd_.reset(); }

result<message_listener> message_listener::listen(const endpoint& local,
                                                  const listen_options& options) {
  auto made = listener::listen(local, options, socket_type::seqpacket);
  if (!made) return made.error();
  return message_listener(std::move(*made));
}

result<message_socket> message_listener::accept(std::optional<std::chrono::milliseconds> timeout) {
  auto s = inner_.accept(timeout);
  if (!s) return s.error();
  const endpoint local = s->local_endpoint(), peer = s->peer_endpoint();
  return message_socket(s->release(), local, peer);
}

}  // namespace hvsock
