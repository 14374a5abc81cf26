// control_server's bind and listen jobs and the backlog accounting: a bound
// connection becomes the listener, each `incoming` sent to it counts as
// pending until its `accepted` comes back, and drain_acks takes in a
// listener's queued acks (and its close) when a decision depends on them.
#include <sys/socket.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cerrno>

#include "daemon/control_server.hpp"
#include "sys/fd_passing.hpp"

namespace hvsock::daemon {
namespace wire = detail::wire;

namespace {

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

}  // namespace

void control_server::handle_bind(client& c, const wire::bind_request& request) {
  const endpoint local = wire::from_raw(request.local);
  const auto type = wire::socket_type_from_wire(request.socket_type);
  if (!type) return protocol_error(c, "bind_request with an unknown socket type");
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
      drain_acks(*holder);
      bound = router_.bind(*p, local, request.backlog, c.id);
    }
  }
  if (!bound) {
    log_refusal(c.partition, fmt::format("{}: listen {}: refused: {}", c.partition,
                                         local.to_string(), bound.error().message()));
    const auto reply = wire::make_reply(bound.error());
    (void)detail::send_message(c.fd.get(), wire::as_bytes(reply), -1, MSG_DONTWAIT);
    close_client(c.id);
    return;
  }
  c.listening = true;
  c.type = *type;
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
    log_(log_level::info,
         fmt::format("{}: bound {}{} (not listening yet)", c.partition, c.bound.to_string(), name));
  else
    log_(log_level::info,
         fmt::format("{}: listening on {}{} ({}backlog {})", c.partition, c.bound.to_string(), name,
                     c.type == socket_type::seqpacket ? "seqpacket, " : "", c.backlog));
}

void control_server::handle_listener_message(client& c, wire::message_type type,
                                             std::span<const std::byte> data) {
  if (type == wire::message_type::listen_request) {
    if (auto m = wire::decode<wire::listen_request>(data, type)) return handle_listen(c, *m);
    protocol_error(c, fmt::format("listen_request of {} bytes, expected {}", data.size(),
                                  sizeof(wire::listen_request)));
    return;
  }
  take_ack(c, data);
}

void control_server::take_ack(client& c, std::span<const std::byte> data) {
  if (!wire::decode<wire::accepted>(data, wire::message_type::accepted)) {
    protocol_error(
        c, fmt::format("accepted of {} bytes, expected {}", data.size(), sizeof(wire::accepted)));
    return;
  }
  if (c.pending == 0) {
    protocol_error(c, "accepted without a pending connection");
    return;
  }
  --c.pending;
}

void control_server::drain_acks(std::uint64_t listener_id) {
  // Each ack taken lowers `pending`, and an ack with nothing pending closes
  // the listener, so this reads at most pending + 1 messages.
  for (;;) {
    auto it = clients_.find(listener_id);
    if (it == clients_.end() || !it->second.listening) return;
    client& listener = it->second;
    // Look before taking: only an ack, an error or EOF is this function's to
    // read; any other message stays queued for on_client, in order.
    wire::header head{};
    const ssize_t peeked = ::recv(listener.fd.get(), &head, sizeof head, MSG_PEEK | MSG_DONTWAIT);
    if (peeked < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (peeked > 0 &&
        wire::peek_type(
            std::as_bytes(std::span(&head, 1)).first(static_cast<std::size_t>(peeked))) !=
            wire::message_type::accepted)
      return;
    std::array<std::byte, wire::max_message_size + 1> buffer{};
    auto got = receive(listener, buffer);  // closes the listener on EOF or an error
    if (!got) return;
    if (got->fd) {
      protocol_error(listener, "accepted with a file descriptor");
      return;
    }
    take_ack(listener, std::span<const std::byte>(buffer.data(), got->size));
  }
}

}  // namespace hvsock::daemon
