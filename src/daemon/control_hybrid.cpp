// control_server's hybrid vsock side (docs/hybrid-vsock.md): every QEMU
// partition also has a Unix socket speaking Firecracker's "CONNECT <port>"
// protocol, where a host process is the host partition connecting into the
// guest under the usual rules; and a guest's connect to a host port no
// hvsock listener takes reaches a Unix listener at <hybrid socket>_<port>.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <utility>

#include "daemon/control_server.hpp"
#include "protocol/hybrid_vsock.hpp"
#include "protocol/runtime_paths.hpp"

namespace hvsock::daemon {

std::string control_server::hybrid_socket_path(std::string_view partition_name) const {
  return detail::hybrid_socket_path(options_.runtime_dir, partition_name);
}

result<void> control_server::open_hybrid(const partition& p) {
  const std::string name = p.name;
  const std::string path = hybrid_socket_path(name);
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  auto listener = hybrid_vsock_listener::open(
      loop_, gate_, path, options_.sockets, fmt::format("{}: hybrid vsock socket", name),
      [this, name](std::uint32_t port, unique_fd stream) {
        connect_from_hybrid(name, port, std::move(stream));
      },
      [this, name](const std::string& why) {
        log_refusal(partitions_.host().name,
                    fmt::format("{}: hybrid vsock socket of \"{}\": closed a connection: {}",
                                partitions_.host().name, name, why));
      },
      log_);
  if (!listener) return listener.error();
  hybrids_.emplace(name, std::move(*listener));
  return {};
}

void control_server::connect_from_hybrid(const std::string& vm_name, std::uint32_t port,
                                         unique_fd stream) {
  const partition& host = partitions_.host();
  const partition* vm = partitions_.find(vm_name);
  auto guest = guests_.find(vm_name);
  if (vm == nullptr || guest == guests_.end()) return;  // cannot happen: removal closes it
  const endpoint target{vm->id, service_id_from_port(port)};
  auto decision = route(host, target);  // counts and logs a refusal
  if (!decision) return;                // closing the stream is the refusal
  if (!decision->guest_port) return;    // cannot happen: a QEMU guest's port
  // The OK line goes in before the device moves any of the guest's bytes:
  // through a second fd of the stream, written in the answer's callback.
  auto reply = std::make_shared<unique_fd>(::fcntl(stream.get(), F_DUPFD_CLOEXEC, 0));
  if (!*reply) {
    count_refusal(host.name, target, make_system_error(errno, "dup"));
    return;
  }
  const ino_t inode = inode_of(stream.get());
  if (options_.log_connections)
    log_(log_level::debug,
         fmt::format("{}: hybrid vsock CONNECT {}: asking VM \"{}\"", host.name, port, vm_name));
  guest->second->connect(
      *decision->guest_port, std::move(stream),
      [this, reply, host_name = host.name, target, vm_name,
       inode](result<std::uint32_t> host_port) {
        if (!host_port) {
          reply->reset();
          count_refusal(
              host_name, target,
              failure(host_port.error().code(),
                      fmt::format("VM \"{}\": {}", vm_name, host_port.error().message())));
          return;
        }
        const std::string ok = detail::hybrid_ok_line(*host_port);
        // A fresh stream's send buffer is empty: the line always fits.
        (void)::send(reply->get(), ok.data(), ok.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        reply->reset();
        counters_.record_accepted(target.service, inode, 0);
        partition_counters_.record_connection(host_name, vm_name);
      });
}

result<unique_fd> control_server::connect_hybrid_host_listener(const std::string& guest_name,
                                                               std::uint32_t port) {
  const std::string path = fmt::format("{}_{}", hybrid_socket_path(guest_name), port);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path)
    return failure(errc::invalid_argument, fmt::format("{}: path too long", path));
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return make_system_error(errno, "socket");
  // A Unix connect completes at once or fails: EAGAIN is a full backlog.
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) < 0)
    return make_system_error(errno, fmt::format("connect {}", path));
  return fd;
}

}  // namespace hvsock::daemon
