// control_server: accepting control clients, the connect and bind jobs, and
// the discipline that keeps one bad client from affecting the rest.
#include "daemon/control_server.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "protocol/runtime_paths.hpp"
#include "sys/fd_passing.hpp"

namespace hvsock::daemon {
namespace wire = detail::wire;

namespace {

// Bounds the work done for one socket per wake-up, so a busy client cannot
// starve the others.
constexpr int accepts_per_wakeup = 64;
constexpr int messages_per_wakeup = 32;

std::string_view type_name(wire::message_type type) {
  switch (type) {
    case wire::message_type::connect_request: return "connect_request";
    case wire::message_type::bind_request: return "bind_request";
    case wire::message_type::accepted: return "accepted";
    case wire::message_type::reply: return "reply";
    case wire::message_type::incoming: return "incoming";
  }
  return "unknown";
}

// Every queued `incoming` (with its fd) is charged to the daemon's send
// buffer for the listener connection; make room for a full backlog so that
// the backlog, not the default buffer size, is what limits a listener.
void size_send_buffer(int fd, std::uint32_t backlog) {
  constexpr int per_message = 2048;  // generous skb truesize for a small message
  const int wanted = static_cast<int>(std::min<std::uint32_t>(backlog, 1u << 16)) * per_message;
  int current = 0;
  socklen_t len = sizeof current;
  if (::getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &current, &len) == 0 && current >= wanted) return;
  // SO_SNDBUFFORCE ignores wmem_max but needs CAP_NET_ADMIN; fall back quietly.
  if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &wanted, sizeof wanted) < 0)
    (void)::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &wanted, sizeof wanted);
}

ino_t inode_of(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 ? st.st_ino : 0;
}

}  // namespace

control_server::control_server(event_loop& loop, client_budget& budget,
                               const partition_tree& partitions, const service_registry& services,
                               router& routes, service_counters& counters, options opts,
                               log_function log)
    : loop_(loop),
      budget_(budget),
      partitions_(partitions),
      services_(services),
      router_(routes),
      counters_(counters),
      options_(std::move(opts)),
      log_(std::move(log)) {}

control_server::~control_server() { close_all(); }

std::string control_server::socket_path(std::string_view partition_name) const {
  return detail::partition_socket_path(options_.runtime_dir, partition_name);
}

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
      [this, name](std::uint32_t dst_port, std::uint32_t src_port) -> result<unique_fd> {
        // The guest's kernel addressed CID 2, its parent; its own port is
        // the connector's service.
        const partition* source = partitions_.find(name);
        if (source == nullptr) return failure(errc::unknown_partition, name);
        const endpoint target{vm_id_parent, service_id_from_port(dst_port)};
        auto decision = route(*source, target);
        if (!decision) return decision.error();
        return hand_to_listener(*source, target, *decision,
                                endpoint{source->id, service_id_from_port(src_port)});
      },
      log_);
  if (!guest) return guest.error().with_context(fmt::format("QEMU partition \"{}\"", name));
  guests_.emplace(name, std::move(*guest));
  return {};
}

result<void> control_server::open_partition(const partition& p) {
  if (p.qemu) return open_guest(p);
  if (sockets_.contains(p.name)) return {};
  partition_socket s;
  s.path = socket_path(p.name);
  auto fd = listen_unix(s.path, SOCK_SEQPACKET, options_.sockets);
  if (!fd) return fd.error().with_context(fmt::format("control socket of \"{}\"", p.name));
  s.fd = std::move(*fd);
  std::string name = p.name;
  auto watched =
      loop_.watch(s.fd.get(), EPOLLIN, [this, name](std::uint32_t) { on_partition_socket(name); });
  if (!watched) {
    ::unlink(s.path.c_str());
    return watched.error();
  }
  s.watch = *watched;
  sockets_.emplace(std::move(name), std::move(s));
  return {};
}

void control_server::close_partition(std::string_view name) {
  if (auto g = guests_.find(name); g != guests_.end()) guests_.erase(g);
  auto it = sockets_.find(name);
  if (it == sockets_.end()) return;
  const std::vector<std::uint64_t> members(it->second.clients.begin(), it->second.clients.end());
  for (std::uint64_t id : members) close_client(id);
  loop_.unwatch(it->second.watch);
  ::unlink(it->second.path.c_str());
  sockets_.erase(it);
}

void control_server::close_all() {
  guests_.clear();
  while (!sockets_.empty()) close_partition(sockets_.begin()->first);
}

void control_server::on_partition_socket(const std::string& name) {
  for (int i = 0; i < accepts_per_wakeup; ++i) {
    auto it = sockets_.find(name);
    if (it == sockets_.end()) return;
    auto accepted = loop_.accept(it->second.fd.get());
    if (!accepted) {
      if (accepted.error().code() != errc::would_block)
        log_(fmt::format("{}: {}", name, accepted.error().message()));
      return;
    }
    if (!budget_.try_acquire()) {
      // Closing the connection is the refusal: the client sees EOF.
      if (!std::exchange(limit_logged_, true))
        log_(fmt::format("client limit ({}) reached; refusing new clients until some leave",
                         budget_.max()));
      continue;
    }
    limit_logged_ = false;
    const std::uint64_t id = next_client_id_++;
    client c;
    c.id = id;
    c.partition = name;
    c.fd = std::move(*accepted);
    auto watched = loop_.watch(c.fd.get(), EPOLLIN, [this, id](std::uint32_t) { on_client(id); });
    if (!watched) {
      budget_.release();
      log_(fmt::format("{}: {}", name, watched.error().message()));
      continue;
    }
    c.watch = *watched;
    it->second.clients.insert(id);
    clients_.emplace(id, std::move(c));
    // A client sends its request right after connecting, so it is usually
    // here already: serving it now saves an epoll round trip per connect.
    on_client(id);
  }
}

void control_server::on_client(std::uint64_t id) {
  for (int i = 0; i < messages_per_wakeup; ++i) {
    auto it = clients_.find(id);
    if (it == clients_.end()) return;  // closed by the previous message
    client& c = it->second;
    // Every fd that arrives is owned by `got` at once, and closed with it.
    auto got = detail::receive_message(c.fd.get(), buffer_, MSG_DONTWAIT);
    if (!got) {
      if (got.error().code() == errc::would_block) return;
      if (c.listening)
        log_(fmt::format("{}: listener {} closed ({})", c.partition, c.bound.to_string(),
                         got.error().message()));
      close_client(id);
      return;
    }
    if (got->fd_count > 0) {
      protocol_error(c, "a client message carried a file descriptor");
      return;
    }
    if (got->truncated) {
      protocol_error(c, fmt::format("a message longer than {} bytes", wire::max_message_size));
      return;
    }
    if (got->control_truncated) {
      protocol_error(c, "truncated control data");
      return;
    }
    if (got->size == 0) {  // EOF (a SEQPACKET peer may not send empty messages to us)
      if (c.listening)
        log_(fmt::format("{}: listener {} closed", c.partition, c.bound.to_string()));
      close_client(id);
      return;
    }
    handle_message(c, std::span<const std::byte>(buffer_.data(), got->size));
  }
}

void control_server::handle_message(client& c, std::span<const std::byte> data) {
  const auto type = wire::peek_type(data);
  if (!type) {
    protocol_error(c, fmt::format("a {}-byte message without a valid header", data.size()));
    return;
  }
  auto wrong_size = [&](std::size_t expected) {
    protocol_error(
        c, fmt::format("{} of {} bytes, expected {}", type_name(*type), data.size(), expected));
  };
  if (c.awaiting_guest) {
    protocol_error(c, fmt::format("{} while its connect waits for the guest", type_name(*type)));
    return;
  }
  if (c.listening) {
    if (*type != wire::message_type::accepted) {
      protocol_error(c, fmt::format("unexpected {} on a listener connection", type_name(*type)));
      return;
    }
    if (!wire::decode<wire::accepted>(data, *type)) return wrong_size(sizeof(wire::accepted));
    if (c.pending == 0) {
      protocol_error(c, "accepted without a pending connection");
      return;
    }
    --c.pending;
    return;
  }
  switch (*type) {
    case wire::message_type::connect_request:
      if (auto m = wire::decode<wire::connect_request>(data, *type)) return handle_connect(c, *m);
      return wrong_size(sizeof(wire::connect_request));
    case wire::message_type::bind_request:
      if (auto m = wire::decode<wire::bind_request>(data, *type)) return handle_bind(c, *m);
      return wrong_size(sizeof(wire::bind_request));
    default:
      protocol_error(c, fmt::format("unexpected {} on a new control connection", type_name(*type)));
  }
}

void control_server::handle_connect(client& c, const wire::connect_request& request) {
  const endpoint target = wire::from_raw(request.target);
  const partition* source = partitions_.find(c.partition);
  auto sock = sockets_.find(c.partition);
  if (source == nullptr || sock == sockets_.end()) {  // cannot happen: removal closes clients
    close_client(c.id);
    return;
  }
  auto decision = route(*source, target);
  if (!decision) return refuse(c, decision.error());
  if (decision->guest_port) return connect_into_guest(c, *source, target, *decision);

  std::uint32_t& next_port = sock->second.next_port;
  const std::uint32_t port = next_port;
  next_port = next_port == 0xffffffffu ? first_ephemeral_port : next_port + 1;
  const endpoint connector_local{source->id, service_id_from_port(port)};

  auto connector_end = hand_to_listener(*source, target, *decision, connector_local);
  if (!connector_end) return refuse(c, connector_end.error());
  const auto reply =
      wire::make_reply(connector_local, endpoint{decision->connector_peer, target.service});
  if (auto sent = detail::send_message(c.fd.get(), wire::as_bytes(reply), connector_end->get(),
                                       MSG_DONTWAIT);
      !sent) {
    // The listener already has its end; it will read EOF when ours closes.
    log_(fmt::format("{}: connect {}: the connector went away before the reply ({})", c.partition,
                     target.to_string(), sent.error().message()));
  }
  close_client(c.id);
}

result<route_decision> control_server::route(const partition& source, const endpoint& target) {
  auto decision = router_.route(source, target);
  if (!decision) count_refusal(source.name, target, decision.error());
  return decision;
}

void control_server::connect_into_guest(client& c, const partition& source, const endpoint& target,
                                        const route_decision& decision) {
  auto refused = [&](failure why) {
    count_refusal(source.name, target, why);
    refuse(c, why);
  };
  auto guest = guests_.find(decision.target_name);
  if (guest == guests_.end())  // cannot happen: QEMU partitions always have one
    return refused(failure(errc::connection_refused,
                           fmt::format("VM \"{}\" has no vsock device", decision.target_name)));
  int ends[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) < 0)
    return refused(make_system_error(errno, "the switch could not create a stream"));
  unique_fd device_end(ends[0]);
  c.awaiting_guest.reset(ends[1]);
  const std::array<ino_t, 2> inodes{inode_of(ends[0]), inode_of(ends[1])};
  if (options_.log_connections)
    log_(fmt::format("{}: connect {}: asking VM \"{}\" (guest port {})", source.name,
                     target.to_string(), decision.target_name, *decision.guest_port));
  // The answer may come at once (no QEMU attached, too many connections);
  // `c` must not be used after this call.
  guest->second->connect(
      *decision.guest_port, std::move(device_end),
      [this, id = c.id, source_name = source.name, target, peer = decision.connector_peer, inodes,
       vm = decision.target_name](result<std::uint32_t> host_port) {
        if (!host_port)  // the device's message names the port, not the VM
          host_port = failure(host_port.error().code(),
                              fmt::format("VM \"{}\": {}", vm, host_port.error().message()));
        on_guest_answer(id, source_name, target, peer, std::move(host_port), inodes);
      });
}

void control_server::on_guest_answer(std::uint64_t client_id, const std::string& source_name,
                                     const endpoint& target, const vm_id& peer,
                                     result<std::uint32_t> host_port, std::array<ino_t, 2> inodes) {
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
  counters_.record_accepted(target.service, inodes[0], inodes[1]);
  const endpoint connector_local{source->id, service_id_from_port(*host_port)};
  const auto reply = wire::make_reply(connector_local, endpoint{peer, target.service});
  if (auto sent = detail::send_message(c.fd.get(), wire::as_bytes(reply), c.awaiting_guest.get(),
                                       MSG_DONTWAIT);
      !sent)
    log_(fmt::format("{}: connect {}: the connector went away before the reply ({})", source_name,
                     target.to_string(), sent.error().message()));
  close_client(client_id);
}

result<unique_fd> control_server::hand_to_listener(const partition& source, const endpoint& target,
                                                   const route_decision& decision,
                                                   const endpoint& connector_local) {
  auto refused = [&](failure why) -> result<unique_fd> {
    count_refusal(source.name, target, why);
    return why;
  };
  if (decision.guest_port)  // cannot happen: a guest reaches only its parent
    return refused(failure(errc::network_unreachable, "a QEMU guest cannot reach another guest"));
  auto found = clients_.find(decision.listener);
  if (found == clients_.end())  // cannot happen: closing a listener unbinds it
    return refused(failure(errc::connection_refused, "the listener went away"));
  client& listener = found->second;
  if (listener.pending >= listener.backlog)
    return refused(
        failure(errc::backlog_full,
                fmt::format("the listener {} in \"{}\" has {} connections waiting "
                            "(its backlog)",
                            listener.bound.to_string(), decision.target_name, listener.pending)));

  int ends[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) < 0)
    return refused(make_system_error(errno, "the switch could not create a stream"));
  unique_fd listener_end(ends[0]);
  unique_fd connector_end(ends[1]);

  auto incoming = wire::make<wire::incoming>(wire::message_type::incoming);
  incoming.local = wire::to_raw(decision.listener_local);
  incoming.peer = wire::to_raw(endpoint{decision.acceptor_peer, connector_local.service});
  auto queued = detail::send_message(listener.fd.get(), wire::as_bytes(incoming),
                                     listener_end.get(), MSG_DONTWAIT);
  if (!queued) {
    if (queued.error().code() == errc::would_block)
      return refused(failure(errc::backlog_full,
                             fmt::format("the listener {} in \"{}\" is not taking connections "
                                         "(its socket buffer is full)",
                                         listener.bound.to_string(), decision.target_name)));
    log_(fmt::format("{}: listener {} closed ({})", decision.target_name,
                     listener.bound.to_string(), queued.error().message()));
    const std::string target_name = decision.target_name;
    close_client(listener.id);
    return refused(failure(errc::connection_refused,
                           fmt::format("the listener in \"{}\" went away", target_name)));
  }
  ++listener.pending;
  counters_.record_accepted(target.service, inode_of(listener_end.get()),
                            inode_of(connector_end.get()));
  if (options_.log_connections)
    log_(fmt::format("{}: connect {}: to \"{}\" (listener {})", source.name, target.to_string(),
                     decision.target_name, decision.listener_local.to_string()));
  return connector_end;
}

void control_server::handle_bind(client& c, const wire::bind_request& request) {
  const endpoint local = wire::from_raw(request.local);
  const partition* p = partitions_.find(c.partition);
  if (p == nullptr) {
    close_client(c.id);
    return;
  }
  if (auto bound = router_.bind(*p, local, request.backlog, c.id); !bound) {
    log_(fmt::format("{}: listen {}: refused: {}", c.partition, local.to_string(),
                     bound.error().message()));
    const auto reply = wire::make_reply(bound.error());
    (void)detail::send_message(c.fd.get(), wire::as_bytes(reply), -1, MSG_DONTWAIT);
    close_client(c.id);
    return;
  }
  c.listening = true;
  c.bound = local;
  c.backlog = request.backlog;
  size_send_buffer(c.fd.get(), c.backlog);
  const auto reply = wire::make_reply(local, endpoint{});
  if (auto sent = detail::send_message(c.fd.get(), wire::as_bytes(reply), -1, MSG_DONTWAIT);
      !sent) {
    close_client(c.id);
    return;
  }
  const service_entry* s = services_.find(local.service);
  log_(fmt::format("{}: listening on {}{} (backlog {})", c.partition, local.to_string(),
                   s != nullptr ? fmt::format(" \"{}\"", s->name) : std::string(" (unregistered)"),
                   c.backlog));
}

void control_server::count_refusal(const std::string& partition, const endpoint& target,
                                   const failure& why) {
  if (services_.find(target.service) != nullptr)
    counters_.record_refused(target.service, refusal_reason_for(why.code()));
  else
    counters_.record_unregistered_refused();
  log_(fmt::format("{}: connect {}: refused: {}", partition, target.to_string(), why.message()));
}

void control_server::refuse(client& c, const failure& why) {
  const auto reply = wire::make_reply(why);
  (void)detail::send_message(c.fd.get(), wire::as_bytes(reply), -1, MSG_DONTWAIT);
  close_client(c.id);
}

void control_server::protocol_error(client& c, const std::string& what) {
  log_(fmt::format("{}: closing a control client: protocol error: {}", c.partition, what));
  close_client(c.id);
}

void control_server::close_client(std::uint64_t id) {
  auto it = clients_.find(id);
  if (it == clients_.end()) return;
  client& c = it->second;
  if (c.listening) router_.unbind(c.id);
  loop_.unwatch(c.watch);
  if (auto s = sockets_.find(c.partition); s != sockets_.end()) s->second.clients.erase(id);
  budget_.release();
  clients_.erase(it);  // closes the fd
}

}  // namespace hvsock::daemon
