// The kernel transport: libhvsock's stream and listener over Linux AF_VSOCK,
// for programs running inside a real guest. Addresses map as DESIGN.md
// says: PARENT <-> CID 2 (the host), LOOPBACK <-> CID 1, WILDCARD <->
// CID_ANY, and a service GUID <-> its vsock port (template form only).
//
// A vsock listener cannot bind "the host only": a listener bound to PARENT
// or LOOPBACK binds CID_ANY and closes accepted connections from any other
// peer. So two listeners on one port with different VmIds collide, unlike
// in hvsockd (docs/compatibility.md would list it once written).
#include <poll.h>
#include <sys/socket.h>

#include <linux/vm_sockets.h>

#include <cerrno>

#include "sys/socket_ops.hpp"
#include "transport/transport.hpp"

namespace hvsock::detail {
namespace {

// How the kernel's connect errors read in hvsock's terms.
failure connect_failure(int err, const std::string& what) {
  switch (err) {
    case ECONNRESET:
    case ECONNREFUSED: return make_error(errc::connection_refused, what);
    case ETIMEDOUT: return make_error(errc::timed_out, what);
    case ENETUNREACH:
    case EHOSTUNREACH:
    case ENODEV: return make_error(errc::network_unreachable, what);
    case EACCES:
    case EPERM: return make_error(errc::permission_denied, what);
    default: return make_system_error(err, what);
  }
}

int kernel_type(socket_type type) {
  return type == socket_type::seqpacket ? SOCK_SEQPACKET : SOCK_STREAM;
}

// A vsock SEQPACKET message must fit the peer's whole buffer (Linux refuses
// a bigger one): sized for max_seqpacket_message_size, as on the emulated transport.
// An accepted socket inherits its listener's size. Best effort: a kernel
// with a lower cap keeps its own limit, which max_message_size() reports.
void size_for_messages(int fd, socket_type type) {
  if (type != socket_type::seqpacket) return;
  const unsigned long long size = max_seqpacket_message_size;
  (void)::setsockopt(fd, AF_VSOCK, SO_VM_SOCKETS_BUFFER_MAX_SIZE, &size, sizeof size);
  (void)::setsockopt(fd, AF_VSOCK, SO_VM_SOCKETS_BUFFER_SIZE, &size, sizeof size);
}

// The peer CID a listener bound to `bound` accepts, or nullopt for any.
std::optional<std::uint32_t> required_peer_cid(const vm_id& bound) {
  if (bound == vm_id_parent) return VMADDR_CID_HOST;
  if (bound == vm_id_loopback) return VMADDR_CID_LOCAL;
  return std::nullopt;
}

// Peers are named from this guest's point of view: the host is PARENT,
// this guest (loopback) is LOOPBACK.
result<endpoint> peer_endpoint_of(const sockaddr_vm& addr) {
  sockaddr_vm named = addr;
  if (named.svm_cid != VMADDR_CID_HOST) named.svm_cid = VMADDR_CID_LOCAL;
  return endpoint_from_sockaddr_vm(&named, sizeof named);
}

class kernel_transport final : public transport {
 public:
  std::string_view name() const override { return "kernel"; }

  result<stream> connect(const endpoint& target, std::chrono::milliseconds timeout,
                         socket_type type) const override {
    const std::string what = "connect " + target.to_string();
    if (target.vm != vm_id_parent && target.vm != vm_id_loopback)
      return failure(errc::network_unreachable,
                     what + ": inside a guest only PARENT and LOOPBACK can be reached");
    auto addr = to_sockaddr_vm(target);
    if (!addr) return addr.error().with_context(what);
    unique_fd fd(::socket(AF_VSOCK, kernel_type(type) | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) return make_system_error(errno, what + ": socket(AF_VSOCK)");
    size_for_messages(fd.get(), type);
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) < 0) {
      if (errno != EINPROGRESS && errno != EINTR) return connect_failure(errno, what);
      if (auto ready = wait_ready(fd.get(), POLLOUT, timeout); !ready)
        return make_error(errc::timed_out, what);
      int err = 0;
      socklen_t len = sizeof err;
      if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
      if (err != 0) return connect_failure(err, what);
    }
    if (auto blocking = set_non_blocking(fd.get(), false); !blocking)
      return blocking.error().with_context(what);
    sockaddr_vm local{};
    socklen_t len = sizeof local;
    if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&local), &len) < 0)
      return make_system_error(errno, what + ": getsockname");
    return stream(std::move(fd), endpoint{vm_id_loopback, service_id_from_port(local.svm_port)},
                  target);
  }

  result<listener> listen(const endpoint& local, int backlog, socket_type type) const override {
    const std::string what = "listen " + local.to_string();
    if (local.vm != vm_id_wildcard && !required_peer_cid(local.vm))
      return failure(errc::invalid_argument,
                     what + ": inside a guest a listener binds WILDCARD, PARENT or LOOPBACK");
    auto port = port_from_service_id(local.service);
    if (!port) return port.error().with_context(what);
    if (backlog < 1 || backlog > max_backlog)
      return failure(errc::invalid_argument,
                     what + ": backlog must be 1.." + std::to_string(max_backlog));
    sockaddr_vm addr{};
    addr.svm_family = AF_VSOCK;
    addr.svm_cid = VMADDR_CID_ANY;
    addr.svm_port = *port;
    unique_fd fd(::socket(AF_VSOCK, kernel_type(type) | SOCK_CLOEXEC, 0));
    if (!fd) return make_system_error(errno, what + ": socket(AF_VSOCK)");
    size_for_messages(fd.get(), type);
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) < 0)
      return errno == EADDRINUSE ? make_error(errc::address_in_use, what)
                                 : make_system_error(errno, what + ": bind");
    if (::listen(fd.get(), backlog) < 0) return make_system_error(errno, what + ": listen");
    return listener(std::move(fd), local, shared_from_this(), type);
  }

  result<stream> accept(int listener_fd, const endpoint& listener_local,
                        std::optional<std::chrono::milliseconds> timeout) const override {
    const std::string what = "accept " + listener_local.to_string();
    const auto wanted = required_peer_cid(listener_local.vm);
    for (;;) {
      if (timeout) {
        if (auto ready = wait_ready(listener_fd, POLLIN, timeout); !ready)
          return ready.error().with_context(what);
      }
      sockaddr_vm peer{};
      socklen_t len = sizeof peer;
      unique_fd fd(::accept4(listener_fd, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC));
      if (!fd) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EAGAIN) return make_error(errc::would_block, what);
        return make_system_error(errno, what);
      }
      if (wanted && peer.svm_cid != *wanted) continue;  // not from the bound VmId: drop it
      auto peer_ep = peer_endpoint_of(peer);
      if (!peer_ep) return peer_ep.error().with_context(what);
      return stream(std::move(fd), listener_local, *peer_ep);
    }
  }
};

}  // namespace

std::shared_ptr<const transport> make_kernel_transport() {
  return std::make_shared<kernel_transport>();
}

}  // namespace hvsock::detail
