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
    case wire::message_type::connect_socket_request: return "connect_socket_request";
    case wire::message_type::listen_request: return "listen_request";
    case wire::message_type::lookup_request: return "lookup_request";
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
        unique_fd device_end;
        auto queued = hand_to_listener(*source, target, *decision,
                                       endpoint{source->id, service_id_from_port(src_port)},
                                       [&]() { return make_stream_pair(device_end); });
        if (!queued) return queued.error();
        return device_end;
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
    if (got->fd_count > 1) {
      protocol_error(c, fmt::format("a client message carried {} file descriptors", got->fd_count));
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
    handle_message(c, std::span<const std::byte>(buffer_.data(), got->size), std::move(got->fd));
  }
}

void control_server::handle_message(client& c, std::span<const std::byte> data,
                                    unique_fd attached) {
  const auto type = wire::peek_type(data);
  if (!type) {
    protocol_error(c, fmt::format("a {}-byte message without a valid header", data.size()));
    return;
  }
  auto wrong_size = [&](std::size_t expected) {
    protocol_error(
        c, fmt::format("{} of {} bytes, expected {}", type_name(*type), data.size(), expected));
  };
  // Only a connect_socket_request carries an fd, and it must.
  if (attached.valid() != (*type == wire::message_type::connect_socket_request)) {
    protocol_error(c, fmt::format("{} {} a file descriptor", type_name(*type),
                                  attached.valid() ? "with" : "without"));
    return;
  }
  if (c.waiting_for_guest) {
    protocol_error(c, fmt::format("{} while its connect waits for the guest", type_name(*type)));
    return;
  }
  if (c.listening) {
    if (*type == wire::message_type::listen_request) {
      if (auto m = wire::decode<wire::listen_request>(data, *type)) return handle_listen(c, *m);
      return wrong_size(sizeof(wire::listen_request));
    }
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
    case wire::message_type::connect_socket_request:
      if (auto m = wire::decode<wire::connect_socket_request>(data, *type))
        return handle_connect_socket(c, *m, std::move(attached));
      return wrong_size(sizeof(wire::connect_socket_request));
    case wire::message_type::bind_request:
      if (auto m = wire::decode<wire::bind_request>(data, *type)) return handle_bind(c, *m);
      return wrong_size(sizeof(wire::bind_request));
    case wire::message_type::lookup_request:
      if (auto m = wire::decode<wire::lookup_request>(data, *type)) return handle_lookup(c, *m);
      return wrong_size(sizeof(wire::lookup_request));
    default:
      protocol_error(c, fmt::format("unexpected {} on a new control connection", type_name(*type)));
  }
}

void control_server::handle_connect(client& c, const wire::connect_request& request) {
  const endpoint target = wire::from_raw(request.target);
  const partition* source = partitions_.find(c.partition);
  if (source == nullptr) {  // cannot happen: removal closes clients
    close_client(c.id);
    return;
  }
  auto decision = route(*source, target);
  if (!decision) return refuse(c, decision.error());
  unique_fd connector_end;
  if (decision->guest_port) {
    unique_fd device_end;
    if (auto made = make_stream_pair(connector_end); !made) {
      count_refusal(source->name, target, made.error());
      return refuse(c, made.error());
    } else {
      device_end = std::move(*made);
    }
    return connect_into_guest(c, *source, target, *decision, std::move(device_end),
                              std::move(connector_end));
  }
  const endpoint connector_local{source->id, service_id_from_port(next_ephemeral_port(c))};
  auto queued = hand_to_listener(*source, target, *decision, connector_local,
                                 [&]() { return make_stream_pair(connector_end); });
  if (!queued) return refuse(c, queued.error());
  reply_connected(c, *source, target, connector_local, *decision, connector_end.get());
}

void control_server::handle_connect_socket(client& c, const wire::connect_socket_request& request,
                                           unique_fd socket) {
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
    auto b = socket_broker_for_clients();
    if (!b) return b.error();
    return (*b)->connect(socket.get());
  };
  if (decision->guest_port) {
    auto device_end = connect_socket();
    if (!device_end) {
      count_refusal(source->name, target, device_end.error());
      return refuse(c, device_end.error());
    }
    return connect_into_guest(c, *source, target, *decision, std::move(*device_end), unique_fd());
  }
  auto queued = hand_to_listener(*source, target, *decision, connector_local, connect_socket);
  if (!queued) return refuse(c, queued.error());
  reply_connected(c, *source, target, connector_local, *decision, -1);
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
    log_(fmt::format("{}: connect {}: the connector went away before the reply ({})", c.partition,
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

result<socket_broker*> control_server::socket_broker_for_clients() {
  if (!socket_broker_) {
    auto opened = socket_broker::open(options_.runtime_dir + "/broker.sock");
    if (!opened) return opened.error();
    socket_broker_.emplace(std::move(*opened));
  }
  return &*socket_broker_;
}

result<unique_fd> control_server::make_stream_pair(unique_fd& other_end) {
  int ends[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends) < 0)
    return make_system_error(errno, "the switch could not create a stream");
  other_end.reset(ends[1]);
  return unique_fd(ends[0]);
}

result<route_decision> control_server::route(const partition& source, const endpoint& target) {
  auto decision = router_.route(source, target);
  if (!decision) count_refusal(source.name, target, decision.error());
  return decision;
}

void control_server::connect_into_guest(client& c, const partition& source, const endpoint& target,
                                        const route_decision& decision, unique_fd device_end,
                                        unique_fd connector_end) {
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
    log_(fmt::format("{}: connect {}: asking VM \"{}\" (guest port {})", source.name,
                     target.to_string(), decision.target_name, *decision.guest_port));
  // The answer may come at once (no QEMU attached, too many connections);
  // `c` must not be used after this call.
  guest->second->connect(
      *decision.guest_port, std::move(device_end),
      [this, id = c.id, source_name = source.name, target, decision,
       inodes](result<std::uint32_t> host_port) {
        if (!host_port)  // the device's message names the port, not the VM
          host_port = failure(
              host_port.error().code(),
              fmt::format("VM \"{}\": {}", decision.target_name, host_port.error().message()));
        on_guest_answer(id, source_name, target, decision, std::move(host_port), inodes);
      });
}

void control_server::on_guest_answer(std::uint64_t client_id, const std::string& source_name,
                                     const endpoint& target, const route_decision& decision,
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
  const unique_fd reply_fd = std::move(c.reply_fd);
  reply_connected(c, *source, target, endpoint{source->id, service_id_from_port(*host_port)},
                  decision, reply_fd ? reply_fd.get() : -1);
}

result<void> control_server::hand_to_listener(
    const partition& source, const endpoint& target, const route_decision& decision,
    const endpoint& connector_local, const std::function<result<unique_fd>()>& open_stream) {
  auto refused = [&](failure why) -> result<void> {
    count_refusal(source.name, target, why);
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
    on_client(decision.listener);
    found = clients_.find(decision.listener);
  }
  if (found == clients_.end())  // closing a listener unbinds it
    return refused(failure(errc::connection_refused, "the listener went away"));
  client& listener = found->second;
  if (listener.backlog == 0)
    return refused(failure(errc::connection_refused,
                           fmt::format("the socket bound to {} in \"{}\" is not listening",
                                       listener.bound.to_string(), decision.target_name)));
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
    log_(fmt::format("{}: listener {} closed ({})", decision.target_name,
                     listener.bound.to_string(), queued.error().message()));
    const std::string target_name = decision.target_name;
    close_client(listener.id);
    return refused(failure(errc::connection_refused,
                           fmt::format("the listener in \"{}\" went away", target_name)));
  }
  ++listener.pending;
  counters_.record_accepted(target.service, inode_of(listener_end->get()), 0);
  if (options_.log_connections)
    log_(fmt::format("{}: connect {}: to \"{}\" (listener {})", source.name, target.to_string(),
                     decision.target_name, decision.listener_local.to_string()));
  return {};
}

void control_server::handle_bind(client& c, const wire::bind_request& request) {
  const endpoint local = wire::from_raw(request.local);
  const partition* p = partitions_.find(c.partition);
  if (p == nullptr) {
    close_client(c.id);
    return;
  }
  auto bound = router_.bind(*p, local, request.backlog, c.id);
  if (!bound && bound.error().code() == make_error_code(errc::address_in_use)) {
    // The holder may have closed its connection already, unseen yet (a
    // socket closed and its address bound again at once): take that in first.
    if (auto holder = router_.holder(*p, local); holder && *holder != c.id) {
      on_client(*holder);
      bound = router_.bind(*p, local, request.backlog, c.id);
    }
  }
  if (!bound) {
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
  const auto reply = wire::make_reply(local, endpoint{}, p->cid, 0);
  if (auto sent = detail::send_message(c.fd.get(), wire::as_bytes(reply), -1, MSG_DONTWAIT);
      !sent) {
    close_client(c.id);
    return;
  }
  log_listening(c);
}

void control_server::handle_listen(client& c, const wire::listen_request& request) {
  // As listen(2) again on a listening socket: a new backlog.
  if (auto ok = router_.check_backlog(request.backlog); !ok) {
    const auto reply = wire::make_reply(ok.error());
    (void)detail::send_message(c.fd.get(), wire::as_bytes(reply), -1, MSG_DONTWAIT);
    return;
  }
  c.backlog = request.backlog;
  size_send_buffer(c.fd.get(), c.backlog);
  const partition* p = partitions_.find(c.partition);
  const auto reply = wire::make_reply(c.bound, endpoint{}, p != nullptr ? p->cid : 0, 0);
  if (auto sent = detail::send_message(c.fd.get(), wire::as_bytes(reply), -1, MSG_DONTWAIT);
      !sent) {
    close_client(c.id);
    return;
  }
  log_listening(c);
}

void control_server::log_listening(const client& c) {
  const service_entry* s = services_.find(c.bound.service);
  const std::string name =
      s != nullptr ? fmt::format(" \"{}\"", s->name) : std::string(" (unregistered)");
  if (c.backlog == 0)
    log_(fmt::format("{}: bound {}{} (not listening yet)", c.partition, c.bound.to_string(), name));
  else
    log_(fmt::format("{}: listening on {}{} (backlog {})", c.partition, c.bound.to_string(), name,
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
