// socket_broker: checking, connecting and accepting a client's socket.
#include "daemon/socket_broker.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <utility>

#include "daemon/event_loop.hpp"
#include "sys/socket_ops.hpp"

namespace hvsock::daemon {
namespace {

int socket_option(int fd, int name) {
  int value = -1;
  socklen_t len = sizeof value;
  return ::getsockopt(fd, SOL_SOCKET, name, &value, &len) == 0 ? value : -1;
}

// Stray connections from other processes are dropped; ours is always queued
// already, since an AF_UNIX connect completes at once.
constexpr int max_strays = 16;

int kernel_type(socket_type type) {
  return type == socket_type::seqpacket ? SOCK_SEQPACKET : SOCK_STREAM;
}

}  // namespace

result<socket_broker> socket_broker::open(std::string path, socket_type type) {
  auto fd = listen_unix(path, kernel_type(type), socket_file_options{});
  if (!fd) return fd.error().with_context("the socket broker");
  return socket_broker(std::move(path), std::move(*fd), type);
}

socket_broker::~socket_broker() {
  if (fd_) ::unlink(path_.c_str());
}

result<void> socket_broker::check_client(int client, socket_type type) {
  if (socket_option(client, SO_DOMAIN) != AF_UNIX ||
      socket_option(client, SO_TYPE) != kernel_type(type))
    return failure(errc::invalid_argument,
                   fmt::format("the attached fd is not an AF_UNIX {} socket", to_string(type)));
  if (socket_option(client, SO_ACCEPTCONN) != 0)
    return failure(errc::invalid_argument, "the attached socket is listening");
  return {};
}

result<unique_fd> socket_broker::connect(int client) {
  if (auto ok = check_client(client, type_); !ok) return ok.error();
  auto addr = detail::unix_address(path_);
  if (!addr) return addr.error().with_context("the socket broker");
  int rc;
  do {
    rc = ::connect(client, reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    if (errno == EISCONN) return failure(errc::invalid_argument, "the socket is already connected");
    return make_system_error(errno, "connecting the socket");
  }
  for (int i = 0; i <= max_strays; ++i) {
    unique_fd end(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!end) return make_system_error(errno, "accepting the socket");
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(end.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
        cred.pid == ::getpid())
      return end;
  }
  return failure(errc::io_error, "the socket broker is flooded by other processes");
}

}  // namespace hvsock::daemon
