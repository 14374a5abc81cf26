// The transport interface: how libhvsock's stream and listener reach peers.
// `emulated` talks to hvsockd over a partition's control socket; later
// transports (kernel AF_VSOCK, hybrid, winsock) implement the same calls.
// Transports are immutable after construction and safe to share across
// threads.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <hvsock/listener.hpp>
#include <hvsock/socket_type.hpp>
#include <hvsock/stream.hpp>

namespace hvsock::detail {

class transport : public std::enable_shared_from_this<transport> {
 public:
  virtual ~transport() = default;
  virtual std::string_view name() const = 0;
  // A seqpacket connection comes back in a stream object too: the fd is what
  // matters, and message_socket takes it over.
  virtual result<stream> connect(const endpoint& target, std::chrono::milliseconds timeout,
                                 socket_type type) const = 0;
  virtual result<listener> listen(const endpoint& local, int backlog, socket_type type) const = 0;
  // Takes the next connection from a listener this transport made, of the
  // listener's type.
  virtual result<stream> accept(int listener_fd, const endpoint& listener_local,
                                std::optional<std::chrono::milliseconds> timeout) const = 0;
};

// The emulated transport through the control socket at `control_socket`.
std::shared_ptr<const transport> make_emulated_transport(std::string control_socket);
// The kernel AF_VSOCK transport, for code running inside a real guest.
std::shared_ptr<const transport> make_kernel_transport();

inline constexpr const char* env_transport = "HVSOCK_TRANSPORT";

// The transport for a call:
//   1. a given control socket: emulated, through it;
//   2. HVSOCK_TRANSPORT=emulated or =kernel: that one (anything else is
//      errc::invalid_argument);
//   3. otherwise emulated, unless no hvsockd socket is configured or present
//      and this machine is a virtio-vsock guest (a device is bound to the
//      vmw_vsock_virtio_transport driver): then kernel.
result<std::shared_ptr<const transport>> select_transport(const std::string& control_socket);

}  // namespace hvsock::detail
