// Sending and receiving one message with at most one attached fd
// (SCM_RIGHTS) on an AF_UNIX socket. Received fds are wrapped in unique_fd
// before anything else looks at the message, arrive CLOEXEC, and any fds
// beyond the first are closed at once, so a misbehaving peer cannot leak fds
// into the receiver.
#pragma once

#include <sys/uio.h>
#include <cstddef>
#include <span>
#include <vector>

#include <hvsock/result.hpp>
#include <hvsock/unique_fd.hpp>

namespace hvsock::detail {

// Sends `data` (and `fd_to_pass` if >= 0) as one message. Never raises
// SIGPIPE. `flags` is added to the sendmsg flags (e.g. MSG_DONTWAIT).
result<void> send_message(int socket, std::span<const std::byte> data, int fd_to_pass = -1,
                          int flags = 0);
// The same with any number of fds attached (tests use it to send too many).
result<void> send_message(int socket, std::span<const std::byte> data, std::span<const int> fds,
                          int flags = 0);
// The same with the data gathered from several buffers (e.g. guest memory).
result<void> send_message(int socket, std::span<const iovec> data, std::span<const int> fds,
                          int flags = 0);

struct received_message {
  std::size_t size = 0;            // bytes placed in the buffer; 0 on a stream/seqpacket means EOF
  bool truncated = false;          // the message was larger than the buffer
  bool control_truncated = false;  // more fds/control data than expected were sent
  unsigned fd_count = 0;           // how many fds came with it (all but the first closed)
  unique_fd fd;                    // the first fd received, if any
};

// The most fds one message may carry; more set control_truncated (the kernel
// closes what does not fit).
inline constexpr std::size_t max_fds_per_message = 8;

// Receives one message into `buffer`. EINTR is retried. EAGAIN comes back as
// errc::would_block. With `all_fds`, every fd received is appended there
// (owned at once) and `fd` stays empty; without, the first is kept in `fd`
// and the rest are closed.
result<received_message> receive_message(int socket, std::span<std::byte> buffer, int flags = 0,
                                         std::vector<unique_fd>* all_fds = nullptr);

}  // namespace hvsock::detail
