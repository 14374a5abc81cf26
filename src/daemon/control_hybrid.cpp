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
      *decision->guest_port, std::move(stream), socket_type::stream,
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

namespace hvsock::daemon {

// --- Firecracker / Cloud Hypervisor VMs --------------------------------------

result<void> control_server::open_hybrid_vm(const partition& p) {
  if (hybrid_vms_.contains(p.name)) return {};
  const std::string name = p.name;
  auto vm = std::make_unique<hybrid_vm>(
      loop_, gate_, name, p.hybrid_vsock, options_.sockets,
      [this, name](std::uint32_t port, unique_fd stream) {
        connect_from_hybrid_vm(name, port, std::move(stream));
      },
      log_);
  vm->set_ports(hybrid_vm_ports(p));
  hybrid_vms_.emplace(name, std::move(vm));
  return {};
}

std::set<std::uint32_t> control_server::hybrid_vm_ports(const partition& p) const {
  std::set<std::uint32_t> ports;
  const partition& host = partitions_.host();
  for (const service_entry* s : services_.list()) {
    auto port = port_from_service_id(s->id);
    if (port && router_.check_permission(p, host, s->id)) ports.insert(*port);
  }
  return ports;
}

void control_server::services_changed() {
  for (auto& [name, vm] : hybrid_vms_)
    if (const partition* p = partitions_.find(name)) vm->set_ports(hybrid_vm_ports(*p));
}

bool control_server::vmm_socket_present(std::string_view name) const {
  auto it = hybrid_vms_.find(name);
  return it != hybrid_vms_.end() && it->second->vmm_socket_present();
}

void control_server::connect_into_hybrid_vm(client& c, const partition& source,
                                            const endpoint& target, const route_decision& decision,
                                            unique_fd socket) {
  auto vm = hybrid_vms_.find(decision.target_name);
  if (vm == hybrid_vms_.end()) {  // cannot happen: the caller checked
    const failure why(errc::connection_refused,
                      fmt::format("VM \"{}\" has no hybrid vsock socket", decision.target_name));
    count_refusal(source.name, target, why);
    return refuse(c, why);
  }
  const bool own_socket = static_cast<bool>(socket);
  c.waiting_for_guest = true;
  if (options_.log_connections)
    log_(log_level::debug, fmt::format("{}: connect {}: asking VM \"{}\" through {} (port {})",
                                       source.name, target.to_string(), decision.target_name,
                                       vm->second->vmm_socket(), *decision.guest_port));
  vm->second->connect(*decision.guest_port, std::move(socket),
                      [this, id = c.id, source_name = source.name, target, decision, own_socket](
                          result<std::uint32_t> host_port, unique_fd stream) {
                        auto it = clients_.find(id);
                        if (!host_port) {
                          count_refusal(source_name, target, host_port.error());
                          if (it != clients_.end()) refuse(it->second, host_port.error());
                          return;
                        }
                        if (it == clients_.end())
                          return;  // the connector gave up; the guest reads EOF
                        const partition* from = partitions_.find(source_name);
                        if (from == nullptr) {
                          close_client(id);
                          return;
                        }
                        counters_.record_accepted(target.service, inode_of(stream.get()), 0);
                        partition_counters_.record_connection(from->name, decision.target_name);
                        reply_connected(it->second, *from, target,
                                        endpoint{from->id, service_id_from_port(*host_port)},
                                        decision, own_socket ? -1 : stream.get());
                      });
}

void control_server::connect_from_hybrid_vm(const std::string& vm_name, std::uint32_t port,
                                            unique_fd stream) {
  const partition* source = partitions_.find(vm_name);
  if (source == nullptr) return;  // cannot happen: removal closes its listeners
  const endpoint target{vm_id_parent, service_id_from_port(port)};
  auto decision = route(*source, target);  // counts and logs a refusal
  if (!decision) return;                   // closing is the refusal the guest sees
  // The VMM does not say which port the guest connected from.
  const std::uint32_t peer_port = next_hybrid_peer_port_;
  next_hybrid_peer_port_ =
      next_hybrid_peer_port_ == 0xffffffffu ? first_ephemeral_port : next_hybrid_peer_port_ + 1;
  (void)hand_to_listener(*source, target, *decision,
                         endpoint{source->id, service_id_from_port(peer_port)}, socket_type::stream,
                         [&]() -> result<unique_fd> { return std::move(stream); });
}

}  // namespace hvsock::daemon
