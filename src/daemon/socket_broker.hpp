// socket_broker: connects a client's own AF_UNIX socket of one type (stream
// or seqpacket; passed to the daemon with SCM_RIGHTS) to a fresh server end, which the daemon then
// hands to a listener like any brokered stream. The client's fd stays the
// same open file, so everything the application did to it (epoll
// registrations, flags, dups) still holds once it is connected.
//
// The server ends come from a listening socket file that only the daemon's
// user can open (mode 0600); each accepted end is checked to come from the
// daemon itself, so nobody else's connection can be handed out by mistake.
//
// Thread safety: none; runs on the event loop's thread.
#pragma once

#include <string>

#include <hvsock/result.hpp>
#include <hvsock/socket_type.hpp>
#include <hvsock/unique_fd.hpp>

namespace hvsock::daemon {

class socket_broker {
 public:
  // Listens at `path` for sockets of `type`, replacing a stale file there.
  static result<socket_broker> open(std::string path, socket_type type = socket_type::stream);
  socket_broker(socket_broker&&) noexcept = default;
  socket_broker& operator=(socket_broker&&) noexcept = default;
  // Removes the socket file.
  ~socket_broker();

  // Checks that `client` is an unconnected, not listening AF_UNIX socket of
  // the broker's type (invalid_argument otherwise), connects it, and returns
  // the other end (blocking, CLOEXEC).
  result<unique_fd> connect(int client);
  // The first check: an AF_UNIX socket of `type` that is not listening.
  static result<void> check_client(int client, socket_type type = socket_type::stream);

 private:
  socket_broker(std::string path, unique_fd fd, socket_type type)
      : path_(std::move(path)), fd_(std::move(fd)), type_(type) {}

  std::string path_;
  unique_fd fd_;
  socket_type type_ = socket_type::stream;
};

}  // namespace hvsock::daemon
