// control_server's connect job: route the request, queue `incoming` with
// one end of a new stream on the listener (within its backlog), reply to the
// connector with the other end, and step out of the data path. A
// connect_socket_request connects the client's own socket through the
// socket broker instead of a socketpair.
#include <sys/socket.h>
#include <sys/stat.h>

#include <fmt/format.h>

#include <cerrno>
#include <utility>

#include "daemon/control_server.hpp"
#include "sys/fd_passing.hpp"

namespace hvsock::daemon {
namespace wire = detail::wire;

void control_server::handle_connect(client& c, const wire::connect_request& request) {
  const endpoint target = wire::from_raw(request.target);
  const auto type = wire::socket_type_from_wire(request.socket_type);
  if (!type) return protocol_error(c, "connect_request with an unknown socket type");
  const partition* source = partitions_.find(c.partition);
  if (source == nullptr) {  // cannot happen: removal closes clients
    close_client(c.id);
    return;
  }
  auto decision = route(*source, target);
  if (!decision) return refuse(c, decision.error());
  unique_fd connector_end;
  const bool hybrid = decision->guest_port && hybrid_vms_.contains(decision->target_name);
  if (hybrid && *type == socket_type::seqpacket)
    return refuse_seqpacket_into_vm(c, *source, target, *decision);
  if (hybrid) return connect_into_hybrid_vm(c, *source, target, *decision, unique_fd());
  if (decision->guest_port) {
    unique_fd device_end;
    if (auto made = make_pair(*type, connector_end); !made) {
      count_refusal(source->name, target, made.error());
      return refuse(c, made.error());
    } else {
      device_end = std::move(*made);
    }
    return connect_into_guest(c, *source, target, *decision, *type, std::move(device_end),
                              std::move(connector_end));
  }
  const endpoint connector_local{source->id, service_id_from_port(next_ephemeral_port(c))};
  auto queued = hand_to_listener(*source, target, *decision, connector_local, *type,
                                 [&]() { return make_pair(*type, connector_end); });
  if (!queued) return refuse(c, queued.error());
  reply_connected(c, *source, target, connector_local, *decision, connector_end.get());
}

void control_server::handle_connect_socket(client& c, const wire::connect_socket_request& request,
                                           unique_fd socket) {
  const auto type = wire::socket_type_from_wire(request.socket_type);
  if (!type) return protocol_error(c, "connect_socket_request with an unknown socket type");
  const partition* source = partitions_.find(c.partition);
  if (source == nullptr) {  // cannot happen: removal closes clients
    close_client(c.id);
    return;
  }
  endpoint target = wire::from_raw(request.target);
  if (request.flags & wire::target_by_cid) {
    auto vm = vm_for_cid(*source, request.target_cid);
    if (!vm) {
      count_refusal(source->name, target, vm.error());
      return refuse(c, vm.error());
    }
    target.vm = *vm;
  }
  auto decision = route(*source, target);
  if (!decision) return refuse(c, decision.error());
  const std::uint32_t port =
      (request.flags & wire::local_port_given) ? request.local_port : next_ephemeral_port(c);
  const endpoint connector_local{source->id, service_id_from_port(port)};
  auto connect_socket = [&]() -> result<unique_fd> {
    auto b = socket_broker_for_clients(*type);
    if (!b) return b.error();
    return (*b)->connect(socket.get());
  };
  const bool hybrid = decision->guest_port && hybrid_vms_.contains(decision->target_name);
  if (hybrid && *type == socket_type::seqpacket)
    return refuse_seqpacket_into_vm(c, *source, target, *decision);
  if (hybrid) return connect_into_hybrid_vm(c, *source, target, *decision, std::move(socket));
  if (decision->guest_port) {
    auto device_end = connect_socket();
    if (!device_end) {
      count_refusal(source->name, target, device_end.error());
      return refuse(c, device_end.error());
    }
    return connect_into_guest(c, *source, target, *decision, *type, std::move(*device_end),
                              unique_fd());
  }
  auto queued =
      hand_to_listener(*source, target, *decision, connector_local, *type, connect_socket);
  if (!queued) return refuse(c, queued.error());
  reply_connected(c, *source, target, connector_local, *decision, -1);
}

result<route_decision> control_server::route(const partition& source, const endpoint& target) {
  auto decision = router_.route(source, target);
  if (!decision) count_refusal(source.name, target, decision.error());
  return decision;
}

result<void> control_server::hand_to_listener(
    const partition& source, const endpoint& target, const route_decision& decision,
    const endpoint& connector_local, socket_type type,
    const std::function<result<unique_fd>()>& open_stream) {
  auto refused = [&](failure why,
                     std::optional<refusal_reason> reason = std::nullopt) -> result<void> {
    count_refusal(source.name, target, why, reason);
    return why;
  };
  if (decision.guest_port)  // cannot happen: a guest reaches only its parent
    return refused(failure(errc::network_unreachable, "a QEMU guest cannot reach another guest"));
  auto found = clients_.find(decision.listener);
  if (found != clients_.end() && found->second.backlog != 0 &&
      found->second.pending >= found->second.backlog) {
    // The listener may have acknowledged connections that are still unread
    // on its control connection (an accept that returned before this
    // connect was made): take them in before judging the backlog full.
    drain_acks(decision.listener);
    found = clients_.find(decision.listener);
  }
  if (found == clients_.end())  // closing a listener unbinds it
    return refused(failure(errc::connection_refused, "the listener went away"));
  client& listener = found->second;
  if (listener.backlog == 0)
    return refused(failure(errc::connection_refused,
                           fmt::format("the socket bound to {} in \"{}\" is not listening",
                                       listener.bound.to_string(), decision.target_name)));
  if (listener.type != type)
    return refused(failure(errc::connection_refused,
                           fmt::format("the listener {} in \"{}\" takes {} connections, not {}",
                                       listener.bound.to_string(), decision.target_name,
                                       to_string(listener.type), to_string(type))),
                   refusal_reason::type_mismatch);
  if (listener.pending >= listener.backlog)
    return refused(
        failure(errc::backlog_full,
                fmt::format("the listener {} in \"{}\" has {} connections waiting "
                            "(its backlog)",
                            listener.bound.to_string(), decision.target_name, listener.pending)));

  auto listener_end = open_stream();
  if (!listener_end) return refused(listener_end.error());

  const partition* dest = partitions_.find(decision.target);
  auto incoming = wire::make<wire::incoming>(wire::message_type::incoming);
  incoming.local = wire::to_raw(decision.listener_local);
  incoming.peer = wire::to_raw(endpoint{decision.acceptor_peer, connector_local.service});
  // As Linux's vsock reports them: within one partition both sides have the
  // CID the connector used (1 for loopback, else its own).
  if (dest != nullptr && dest->id == source.id) {
    const std::uint32_t used = target.vm == vm_id_loopback ? 1 : source.cid;
    incoming.local_cid = incoming.peer_cid = used;
  } else {
    incoming.local_cid = dest != nullptr ? dest->cid : 0;
    incoming.peer_cid = source.cid;
  }
  auto queued = detail::send_message(listener.fd.get(), wire::as_bytes(incoming),
                                     listener_end->get(), MSG_DONTWAIT);
  if (!queued) {
    if (queued.error().code() == errc::would_block)
      return refused(failure(errc::backlog_full,
                             fmt::format("the listener {} in \"{}\" is not taking connections "
                                         "(its socket buffer is full)",
                                         listener.bound.to_string(), decision.target_name)));
    log_(log_level::info, fmt::format("{}: listener {} closed ({})", decision.target_name,
                                      listener.bound.to_string(), queued.error().message()));
    const std::string target_name = decision.target_name;
    close_client(listener.id);
    return refused(failure(errc::connection_refused,
                           fmt::format("the listener in \"{}\" went away", target_name)));
  }
  ++listener.pending;
  counters_.record_accepted(target.service, inode_of(listener_end->get()), 0, type);
  partition_counters_.record_connection(source.name, decision.target_name);
  if (options_.log_connections)
    log_(log_level::debug,
         fmt::format("{}: connect {}: to \"{}\" (listener {})", source.name, target.to_string(),
                     decision.target_name, decision.listener_local.to_string()));
  return {};
}

void control_server::reply_connected(client& c, const partition& source, const endpoint& target,
                                     const endpoint& connector_local,
                                     const route_decision& decision, int connector_end) {
  const partition* dest = partitions_.find(decision.target);
  const auto reply =
      wire::make_reply(connector_local, endpoint{decision.connector_peer, target.service},
                       source.cid, dest != nullptr ? dest->cid : 0);
  if (auto sent =
          detail::send_message(c.fd.get(), wire::as_bytes(reply), connector_end, MSG_DONTWAIT);
      !sent) {
    // The listener already has its end; it will read EOF when ours closes.
    log_(log_level::info,
         fmt::format("{}: connect {}: the connector went away before the reply ({})", c.partition,
                     target.to_string(), sent.error().message()));
  }
  close_client(c.id);
}

std::uint32_t control_server::next_ephemeral_port(const client& c) {
  auto sock = sockets_.find(c.partition);
  if (sock == sockets_.end()) return first_ephemeral_port;  // cannot happen
  std::uint32_t& next = sock->second.next_port;
  const std::uint32_t port = next;
  next = next == 0xffffffffu ? first_ephemeral_port : next + 1;
  return port;
}

result<socket_broker*> control_server::socket_broker_for_clients(socket_type type) {
  const bool seqpacket = type == socket_type::seqpacket;
  std::optional<socket_broker>& broker = seqpacket ? seqpacket_broker_ : socket_broker_;
  if (!broker) {
    auto opened = socket_broker::open(
        options_.runtime_dir + (seqpacket ? "/broker-seqpacket.sock" : "/broker.sock"), type);
    if (!opened) return opened.error();
    broker.emplace(std::move(*opened));
  }
  return &*broker;
}

void control_server::refuse_seqpacket_into_vm(client& c, const partition& source,
                                              const endpoint& target,
                                              const route_decision& decision) {
  const failure why(errc::connection_refused,
                    fmt::format("\"{}\" takes stream connections only: the hybrid vsock "
                                "protocol does not carry SOCK_SEQPACKET",
                                decision.target_name));
  count_refusal(source.name, target, why, refusal_reason::type_mismatch);
  refuse(c, why);
}

result<unique_fd> control_server::make_pair(socket_type type, unique_fd& other_end) {
  const bool seqpacket = type == socket_type::seqpacket;
  int ends[2];
  if (::socketpair(AF_UNIX, (seqpacket ? SOCK_SEQPACKET : SOCK_STREAM) | SOCK_CLOEXEC, 0, ends) < 0)
    return make_system_error(
        errno, fmt::format("the switch could not create a {} connection", to_string(type)));
  other_end.reset(ends[1]);
  unique_fd end(ends[0]);
  if (seqpacket) {
    // Linux doubles the value and refuses a message over that less 32 bytes.
    const int wanted = (seqpacket_message_size + 4096) / 2;
    for (int fd : {end.get(), other_end.get()}) {
      if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &wanted, sizeof wanted) < 0)
        (void)::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &wanted, sizeof wanted);
    }
  }
  return end;
}

ino_t control_server::inode_of(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 ? st.st_ino : 0;
}

}  // namespace hvsock::daemon
