// router: the switch's rules, as pure logic (no I/O): which partition a
// connect reaches, whether the registry allows it, which listener takes it
// and how each side names the other; and which binds are allowed.
//
// Connect from partition C to (T, S):
//   1. target: BROADCAST -> broadcast_not_allowed; LOOPBACK or C's own VmId
//      -> C; PARENT -> C's parent (parent_on_host on the host); SILOHOST ->
//      a container's parent (network_unreachable elsewhere); a child's VmId
//      -> that child; the parent's VmId -> the parent; WILDCARD/CHILDREN ->
//      invalid_argument (they are for listeners); any other partition ->
//      network_unreachable; an unknown VmId -> unknown_partition.
//   2. permission: S unregistered -> service_not_registered; disabled
//      globally, for C or for the target -> service_disabled.
//   3. a QEMU guest target (other than C itself) has its listeners in its
//      own kernel: S must be a vsock-template service (else no_vsock_port)
//      and the connection goes to port(S) there. Otherwise, the listener in
//      target P bound to S: C's own VmId, then the relation (LOOPBACK if
//      C == P; PARENT or SILOHOST if C is P's parent; CHILDREN if C is P's
//      child), then WILDCARD; none -> connection_refused.
// Each side names the other by relation: PARENT for the parent, LOOPBACK
// for itself, the VmId for a child.
//
// The router also keeps the table of bound listeners, keyed by (partition,
// service, bound VmId), each identified by an opaque handle the caller picks.
//
// Thread safety: none. Holds references to the tree and registry, which must
// outlive it (assigning new contents to them is fine).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>

#include <hvsock/endpoint.hpp>
#include <hvsock/result.hpp>

#include "daemon/partition_tree.hpp"
#include "daemon/service_registry.hpp"

namespace hvsock::daemon {

using listener_handle = std::uint64_t;

struct route_decision {
  vm_id target;              // the partition the connection goes to
  std::string target_name;   // its name, for logs
  listener_handle listener;  // the listener that takes it
  endpoint listener_local;   // {the VmId it bound, S}
  vm_id acceptor_peer;       // how the target names C
  vm_id connector_peer;      // how C names the target
  // Set when the target is a QEMU guest: its own kernel has the listeners,
  // so the connection goes to this vsock port there (listener is then 0).
  std::optional<std::uint32_t> guest_port;
};

class router {
 public:
  router(const partition_tree& partitions, const service_registry& services);

  // Step 1 alone. Messages name the target and the partitions involved.
  result<const partition*> resolve_target(const partition& source, const vm_id& target) const;
  // Step 2 alone.
  result<void> check_permission(const partition& source, const partition& target,
                                const service_id& service) const;
  // All three steps. Error messages say why without repeating the endpoint
  // (the client prefixes "connect <endpoint>: ").
  result<route_decision> route(const partition& source, const endpoint& target) const;

  // Whether `p` may bind `local` with `backlog`: broadcast_not_allowed,
  // parent_on_host, invalid_argument (SILOHOST outside a container, backlog
  // outside 0..max_backlog; 0 reserves the address without listening),
  // unknown_partition (a VmId no partition has), address_in_use.
  result<void> check_bind(const partition& p, const endpoint& local, std::int64_t backlog) const;
  // check_bind, then records the listener under `handle` (unique per listener).
  result<void> bind(const partition& p, const endpoint& local, std::int64_t backlog,
                    listener_handle handle);
  // invalid_argument unless 0 <= backlog <= max_backlog.
  static result<void> check_backlog(std::int64_t backlog);
  // Forgets the listener; unknown handles are ignored.
  void unbind(listener_handle handle);
  std::size_t listener_count() const { return by_handle_.size(); }
  // The listener holding `local` in `p`, if any.
  std::optional<listener_handle> holder(const partition& p, const endpoint& local) const {
    auto it = bindings_.find(binding_key{p.id, local.service, local.vm});
    if (it == bindings_.end()) return std::nullopt;
    return it->second;
  }

  // How partition `self` names `other` (its parent, itself or a child).
  static vm_id name_for(const partition& self, const partition& other);

 private:
  struct binding_key {
    vm_id partition;
    service_id service;
    vm_id bound;
    friend auto operator<=>(const binding_key&, const binding_key&) = default;
  };

  const partition_tree& partitions_;
  const service_registry& services_;
  std::map<binding_key, listener_handle> bindings_;
  std::unordered_map<listener_handle, binding_key> by_handle_;
};

}  // namespace hvsock::daemon
