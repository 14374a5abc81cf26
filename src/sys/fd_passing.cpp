#include "sys/fd_passing.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace hvsock::detail {
result<void> send_message(int socket, std::span<const std::byte> data, int fd_to_pass, int flags) {
  return fd_to_pass >= 0 ? send_message(socket, data, std::span(&fd_to_pass, 1), flags)
                         : send_message(socket, data, std::span<const int>(), flags);
}

result<void> send_message(int socket, std::span<const std::byte> data, std::span<const int> fds,
                          int flags) {
  const iovec iov{const_cast<std::byte*>(data.data()), data.size()};
  return send_message(socket, std::span(&iov, 1), fds, flags);
}

result<void> send_message(int socket, std::span<const iovec> data, std::span<const int> fds,
                          int flags) {
  std::size_t total = 0;
  for (const iovec& v : data) total += v.iov_len;
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(data.data());
  msg.msg_iovlen = data.size();
  // Room for one fd without allocating, which is every message but tests'.
  alignas(cmsghdr) char small[CMSG_SPACE(sizeof(int))];
  std::vector<cmsghdr> large;
  if (!fds.empty()) {
    const std::size_t space = CMSG_SPACE(sizeof(int) * fds.size());
    char* control = small;
    if (space > sizeof small) {
      large.resize((space + sizeof(cmsghdr) - 1) / sizeof(cmsghdr));
      control = reinterpret_cast<char*>(large.data());
    }
    std::memset(control, 0, space);
    msg.msg_control = control;
    msg.msg_controllen = space;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  for (;;) {
    const ssize_t n = ::sendmsg(socket, &msg, MSG_NOSIGNAL | flags);
    if (n >= 0) {
      if (static_cast<std::size_t>(n) != total)
        return failure(errc::protocol_error, "short send of a control message");
      return {};
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return make_error(errc::would_block, "sendmsg");
    return make_system_error(errno, "sendmsg");
  }
}

result<received_message> receive_message(int socket, std::span<std::byte> buffer, int flags,
                                         std::vector<unique_fd>* all_fds) {
  iovec iov{buffer.data(), buffer.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * max_fds_per_message)];
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC | flags);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN) return make_error(errc::would_block, "recvmsg");
    return make_system_error(errno, "recvmsg");
  }
  received_message out;
  // Take ownership of every fd first, whatever else is wrong with the message.
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      unique_fd owned(fd);
      if (all_fds != nullptr) {
        all_fds->push_back(std::move(owned));
      } else if (out.fd_count == 0) {
        out.fd = std::move(owned);
      }
      ++out.fd_count;
    }
  }
  out.size = static_cast<std::size_t>(n);
  out.truncated = (msg.msg_flags & MSG_TRUNC) != 0;
  out.control_truncated = (msg.msg_flags & MSG_CTRUNC) != 0;
  return out;
}

}  // namespace hvsock::detail
