// router: routing, permission and listener matching rules.
#include "daemon/router.hpp"

#include <fmt/format.h>

#include <array>
#include <optional>

#include <hvsock/listener.hpp>

namespace hvsock::daemon {
namespace {

std::string describe(const partition& p) {
  switch (p.kind) {
    case partition_kind::host: return "the host";
    case partition_kind::vm: return fmt::format("VM \"{}\"", p.name);
    case partition_kind::container: return fmt::format("container \"{}\"", p.name);
  }
  return fmt::format("partition \"{}\"", p.name);
}

std::string describe(const service_entry& s) {
  return fmt::format("service \"{}\" ({})", s.name, s.id.to_string());
}

std::string describe_vm(const vm_id& id) {
  if (auto known = classify_vm_id(id)) return std::string(well_known_name(*known));
  return id.to_string();
}

}  // namespace

router::router(const partition_tree& partitions, const service_registry& services)
    : partitions_(partitions), services_(services) {}

vm_id router::name_for(const partition& self, const partition& other) {
  if (self.id == other.id) return vm_id_loopback;
  if (self.parent == other.id) return vm_id_parent;
  return other.id;
}

result<const partition*> router::resolve_target(const partition& source,
                                                const vm_id& target) const {
  if (auto known = classify_vm_id(target)) {
    switch (*known) {
      case well_known_vm_id::broadcast:
        return failure(errc::broadcast_not_allowed,
                       "the broadcast VmId is defined but has no meaning; connect to a partition");
      case well_known_vm_id::loopback: return &source;
      case well_known_vm_id::parent:
        if (const partition* parent = partitions_.parent_of(source)) return parent;
        return failure(errc::parent_on_host, "the host partition has no parent to connect to");
      case well_known_vm_id::silohost:
        if (source.kind == partition_kind::container) return partitions_.parent_of(source);
        return failure(
            errc::network_unreachable,
            fmt::format("only a container has a silo host, and {} is not one", describe(source)));
      case well_known_vm_id::wildcard:
      case well_known_vm_id::children:
        return failure(errc::invalid_argument,
                       fmt::format("{} is for listeners; connect needs a partition (parent, "
                                   "loopback, a child's VmId, ...)",
                                   well_known_name(*known)));
    }
  }
  if (target == source.id) return &source;
  const partition* p = partitions_.find(target);
  if (p == nullptr)
    return failure(errc::unknown_partition,
                   fmt::format("no partition has VmId {}", target.to_string()));
  if (partition_tree::is_child_of(*p, source) || partition_tree::is_child_of(source, *p)) return p;
  return failure(errc::network_unreachable,
                 fmt::format("{} cannot reach {}: only its parent, its children and itself are "
                             "reachable",
                             describe(source), describe(*p)));
}

result<void> router::check_permission(const partition& source, const partition& target,
                                      const service_id& service) const {
  const service_entry* s = services_.find(service);
  if (s == nullptr)
    return failure(errc::service_not_registered,
                   fmt::format("service {} is not registered", service.to_string()));
  if (!s->enabled)
    return failure(errc::service_disabled, fmt::format("{} is disabled", describe(*s)));
  for (const partition* p : {&source, &target}) {
    if (s->disabled_for.contains(p->id))
      return failure(errc::service_disabled,
                     fmt::format("{} is disabled for {}", describe(*s), describe(*p)));
  }
  return {};
}

result<route_decision> router::route(const partition& source, const endpoint& target) const {
  auto resolved = resolve_target(source, target.vm);
  if (!resolved) return resolved.error();
  const partition& dest = **resolved;
  if (auto allowed = check_permission(source, dest, target.service); !allowed)
    return allowed.error();
  if (dest.has_own_kernel() && dest.id != source.id) {
    auto port = port_from_service_id(target.service);
    if (!port)
      return failure(
          errc::no_vsock_port,
          fmt::format("{} has its own kernel, reached by vsock port, and {} is not of the "
                      "vsock form P-facb-11e6-bd58-64006a7986d3",
                      describe(dest), describe(*services_.find(target.service))));
    return route_decision{dest.id,
                          dest.name,
                          0,
                          endpoint{vm_id_parent, target.service},
                          name_for(dest, source),
                          name_for(source, dest),
                          *port};
  }

  // Most specific first: the connector's own VmId, then its relation to the
  // target, then anyone.
  std::array<std::optional<vm_id>, 4> candidates{source.id};
  if (dest.id == source.id) {
    candidates[1] = vm_id_loopback;
  } else if (partition_tree::is_child_of(dest, source)) {
    candidates[1] = vm_id_parent;
    // A container's silo host is its parent; SILOHOST binds there.
    if (dest.kind == partition_kind::container) candidates[2] = vm_id_silohost;
  } else {
    candidates[1] = vm_id_children;
  }
  candidates[3] = vm_id_wildcard;

  for (const auto& bound : candidates) {
    if (!bound) continue;
    auto it = bindings_.find(binding_key{dest.id, target.service, *bound});
    if (it == bindings_.end()) continue;
    return route_decision{dest.id,
                          dest.name,
                          it->second,
                          endpoint{*bound, target.service},
                          name_for(dest, source),
                          name_for(source, dest),
                          std::nullopt};
  }
  return failure(errc::connection_refused,
                 fmt::format("no listener for {} in {} accepts connections from {}",
                             describe(*services_.find(target.service)), describe(dest),
                             dest.id == source.id ? std::string("itself") : describe(source)));
}

result<void> router::check_bind(const partition& p, const endpoint& local,
                                std::int64_t backlog) const {
  if (auto ok = check_backlog(backlog); !ok) return ok;
  if (auto known = classify_vm_id(local.vm)) {
    switch (*known) {
      case well_known_vm_id::broadcast:
        return failure(errc::broadcast_not_allowed,
                       "the broadcast VmId is defined but has no meaning; bind wildcard, "
                       "children, parent, loopback or a partition's VmId");
      case well_known_vm_id::parent:
        if (p.kind == partition_kind::host)
          return failure(errc::parent_on_host,
                         "the host partition has no parent, so it cannot listen on parent");
        break;
      case well_known_vm_id::silohost:
        if (p.kind != partition_kind::container)
          return failure(errc::invalid_argument,
                         fmt::format("silohost can only be bound inside a container, and {} is "
                                     "not one",
                                     describe(p)));
        break;
      case well_known_vm_id::wildcard:
      case well_known_vm_id::children:
      case well_known_vm_id::loopback: break;
    }
  } else if (partitions_.find(local.vm) == nullptr) {
    return failure(errc::unknown_partition,
                   fmt::format("no partition has VmId {}", local.vm.to_string()));
  }
  if (bindings_.contains(binding_key{p.id, local.service, local.vm}))
    return failure(errc::address_in_use,
                   fmt::format("{}:{} is already bound in {}", describe_vm(local.vm),
                               local.service.to_string(), describe(p)));
  return {};
}

result<void> router::check_backlog(std::int64_t backlog) {
  if (backlog < 0 || backlog > max_backlog)
    return failure(errc::invalid_argument,
                   fmt::format("backlog {} is outside 0..{}", backlog, max_backlog));
  return {};
}

result<void> router::bind(const partition& p, const endpoint& local, std::int64_t backlog,
                          listener_handle handle) {
  if (auto ok = check_bind(p, local, backlog); !ok) return ok;
  const binding_key key{p.id, local.service, local.vm};
  bindings_.emplace(key, handle);
  by_handle_.emplace(handle, key);
  return {};
}

void router::unbind(listener_handle handle) {
  auto it = by_handle_.find(handle);
  if (it == by_handle_.end()) return;
  bindings_.erase(it->second);
  by_handle_.erase(it);
}

}  // namespace hvsock::daemon
