// control_server's name lookups: a program inside a partition turns a
// service's ElementName or a partition's name into its GUID through its own
// control socket, because the management socket (which lists everything) is
// not reachable from inside a partition. A partition name is answered only
// when the caller's partition may reach that partition; otherwise the reply
// carries the router's reason, the same one a connect would get.
#include <fmt/format.h>

#include <string_view>

#include "daemon/control_server.hpp"
#include "sys/fd_passing.hpp"

namespace hvsock::daemon {

namespace wire = detail::wire;

namespace {

result<endpoint> look_up(const partition& source, const wire::lookup_request& request,
                         const partition_tree& partitions, const service_registry& services,
                         const router& routes) {
  if (request.name_length == 0 || request.name_length > wire::max_lookup_name_length)
    return failure(errc::invalid_argument,
                   fmt::format("lookup: a name of {} bytes (1..{} allowed)", request.name_length,
                               wire::max_lookup_name_length));
  const std::string_view name(request.name, request.name_length);
  switch (static_cast<wire::lookup_kind>(request.kind)) {
    case wire::lookup_kind::service:
      if (const service_entry* s = services.find_by_name(name)) return endpoint{vm_id{}, s->id};
      return failure(errc::service_not_registered,
                     fmt::format("no service named \"{}\" is registered", name));
    case wire::lookup_kind::partition: {
      // A name, or a VmId in text form.
      const partition* p = partitions.find(name);
      if (p == nullptr)
        if (auto id = guid::parse(name)) p = partitions.find(*id);
      if (p == nullptr)
        return failure(errc::unknown_partition, fmt::format("no partition named \"{}\"", name));
      auto reachable = routes.resolve_target(source, p->id);
      if (!reachable) return reachable.error();
      // vm: its VmId; service: how the switch names it to the caller
      // (LOOPBACK, PARENT or its VmId), as accept() will report it.
      return endpoint{p->id, router::name_for(source, *p)};
    }
  }
  return failure(errc::invalid_argument,
                 fmt::format("lookup: unknown kind {} (1: service, 2: partition)", request.kind));
}

}  // namespace

void control_server::handle_lookup(client& c, const wire::lookup_request& request) {
  const partition* source = partitions_.find(c.partition);
  if (source == nullptr) {
    close_client(c.id);
    return;
  }
  auto found = look_up(*source, request, partitions_, services_, router_);
  const auto reply = found ? wire::make_reply(endpoint{}, *found, source->cid, 0)
                           : wire::make_reply(found.error());
  (void)detail::send_message(c.fd.get(), wire::as_bytes(reply), -1, MSG_DONTWAIT);
  close_client(c.id);
}

}  // namespace hvsock::daemon
