// control_server's bridge to QEMU guests: a QEMU partition has no control
// socket but a vhost-user-vsock device (qemu_guest). Connects from the guest
// kernel (to CID 2, its parent) are routed and handed to a listener like any
// other; connects into the guest wait for the guest kernel's answer before
// the connector gets its reply. Also: vsock CIDs named by connect_socket
// requests.
#include <fmt/format.h>

#include <utility>

#include "daemon/control_server.hpp"
#include "protocol/runtime_paths.hpp"

namespace hvsock::daemon {
namespace wire = detail::wire;

std::string control_server::vhost_user_socket_path(std::string_view partition_name) const {
  return detail::vhost_user_socket_path(options_.runtime_dir, partition_name);
}

bool control_server::guest_attached(std::string_view partition_name) const {
  auto it = guests_.find(partition_name);
  return it != guests_.end() && it->second->attached();
}

result<void> control_server::open_guest(const partition& p) {
  if (guests_.contains(p.name)) return {};
  const std::string name = p.name;
  auto guest = qemu_guest::open(
      loop_, name, p.cid, vhost_user_socket_path(name), options_.sockets,
      [this, name](std::uint32_t dst_port, std::uint32_t src_port, socket_type type) {
        return connect_from_guest(name, dst_port, src_port, type);
      },
      log_);
  if (!guest) return guest.error().with_context(fmt::format("QEMU partition \"{}\"", name));
  guests_.emplace(name, std::move(*guest));
  if (auto hybrid = open_hybrid(p); !hybrid) {
    guests_.erase(name);
    return hybrid.error().with_context(fmt::format("QEMU partition \"{}\"", name));
  }
  start_replug(p);
  return {};
}

result<unique_fd> control_server::connect_from_guest(const std::string& guest_name,
                                                     std::uint32_t dst_port, std::uint32_t src_port,
                                                     socket_type type) {
  // The guest's kernel addressed CID 2, its parent; its own port is the
  // connector's service.
  const partition* source = partitions_.find(guest_name);
  if (source == nullptr) return failure(errc::unknown_partition, guest_name);
  const endpoint target{vm_id_parent, service_id_from_port(dst_port)};
  auto decision = router_.route(*source, target);
  // No hvsock listener: a host program may listen beside the hybrid socket,
  // as Firecracker's host side does.
  if (!decision && decision.error().code() == errc::connection_refused &&
      type == socket_type::stream && source->parent == partitions_.host().id) {
    auto unix_listener = connect_hybrid_host_listener(guest_name, dst_port);
    if (unix_listener) {
      counters_.record_accepted(target.service, inode_of(unix_listener->get()), 0);
      partition_counters_.record_connection(source->name, partitions_.host().name);
      return unix_listener;
    }
  }
  if (!decision) {
    count_refusal(source->name, target, decision.error());
    return decision.error();
  }
  unique_fd device_end;
  auto queued = hand_to_listener(*source, target, *decision,
                                 endpoint{source->id, service_id_from_port(src_port)}, type,
                                 [&]() { return make_pair(type, device_end); });
  if (!queued) return queued.error();
  return device_end;
}

void control_server::start_replug(const partition& p) {
  const std::string name = p.name;
  replugs_.erase(name);
  if (p.qmp_socket.empty()) return;
  auto replug = std::make_unique<qemu_replug>(
      loop_, qemu_replug::target{name, vhost_user_socket_path(name), p.qmp_socket},
      [this, name] { return guest_attached(name); }, log_);
  // A QEMU may be running already: at hvsockd's start-up, one that was
  // attached to the hvsockd before; on vm.create or vm.set, one whose
  // partition just got its QMP socket. Without one, the attempt ends at
  // once with a log line.
  replug->start();
  replugs_.emplace(name, std::move(replug));
}

void control_server::qmp_socket_changed(const partition& p) {
  if (guests_.contains(p.name)) start_replug(p);
}

void control_server::reattach_qemu_guests() {
  for (const auto& [name, guest] : guests_) {
    if (guest->attached() || replugs_.contains(name)) continue;  // open_guest started those
    log_(log_level::warning,
         fmt::format("{}: no QMP socket recorded for this QEMU guest, so hvsockd cannot "
                     "reattach a QEMU still running from before this start: restart that QEMU "
                     "(or create the VM with --qmp)",
                     name));
  }
}

void control_server::connect_into_guest(client& c, const partition& source, const endpoint& target,
                                        const route_decision& decision, socket_type type,
                                        unique_fd device_end, unique_fd connector_end) {
  auto guest = guests_.find(decision.target_name);
  if (guest == guests_.end()) {  // cannot happen: QEMU partitions always have one
    const failure why(errc::connection_refused,
                      fmt::format("VM \"{}\" has no vsock device", decision.target_name));
    count_refusal(source.name, target, why);
    return refuse(c, why);
  }
  const std::array<ino_t, 2> inodes{inode_of(device_end.get()),
                                    connector_end ? inode_of(connector_end.get()) : 0};
  c.waiting_for_guest = true;
  c.reply_fd = std::move(connector_end);
  if (options_.log_connections)
    log_(log_level::debug,
         fmt::format("{}: connect {}: asking VM \"{}\" (guest port {})", source.name,
                     target.to_string(), decision.target_name, *decision.guest_port));
  // The answer may come at once (no QEMU attached, too many connections);
  // `c` must not be used after this call.
  guest->second->connect(
      *decision.guest_port, std::move(device_end), type,
      [this, id = c.id, source_name = source.name, target, decision, type,
       inodes](result<std::uint32_t> host_port) {
        if (!host_port)  // the device's message names the port, not the VM
          host_port = failure(
              host_port.error().code(),
              fmt::format("VM \"{}\": {}", decision.target_name, host_port.error().message()));
        on_guest_answer(id, source_name, target, decision, type, std::move(host_port), inodes);
      });
}

void control_server::on_guest_answer(std::uint64_t client_id, const std::string& source_name,
                                     const endpoint& target, const route_decision& decision,
                                     socket_type type, result<std::uint32_t> host_port,
                                     std::array<ino_t, 2> inodes) {
  auto it = clients_.find(client_id);
  if (!host_port) {
    count_refusal(source_name, target, host_port.error());
    if (it != clients_.end()) refuse(it->second, host_port.error());
    return;
  }
  // A connector that gave up waiting closed its end; the guest reads EOF.
  if (it == clients_.end()) return;
  client& c = it->second;
  const partition* source = partitions_.find(source_name);
  if (source == nullptr) {
    close_client(client_id);
    return;
  }
  counters_.record_accepted(target.service, inodes[0], inodes[1], type);
  partition_counters_.record_connection(source->name, decision.target_name);
  const unique_fd reply_fd = std::move(c.reply_fd);
  reply_connected(c, *source, target, endpoint{source->id, service_id_from_port(*host_port)},
                  decision, reply_fd ? reply_fd.get() : -1);
}

result<vm_id> control_server::vm_for_cid(const partition& source, std::uint32_t cid) const {
  constexpr std::uint32_t cid_local = 1, cid_any = 0xffffffffu;
  // A partition's own CID names it by VmId, so that hand_to_listener can
  // tell it from CID 1 and report the CID the connector used.
  if (cid == cid_local) return vm_id_loopback;
  if (cid == source.cid) return source.id;
  if (cid == cid_any)
    return failure(errc::invalid_argument, "CID -1 (any) is for binding; connect needs a CID");
  const partition* p = partitions_.find_by_cid(cid);
  if (p == nullptr)
    return failure(errc::unknown_partition, fmt::format("no partition has CID {}", cid));
  return p->id;
}

}  // namespace hvsock::daemon
