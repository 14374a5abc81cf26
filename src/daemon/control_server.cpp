// control_server: the partitions' control sockets, the client table, reading
// and dispatching messages, and the discipline that keeps one bad client
// from affecting the rest. The jobs themselves are in control_connect.cpp,
// control_listen.cpp, control_guest_bridge.cpp and control_lookup.cpp.
#include "daemon/control_server.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <utility>
#include <vector>

#include "daemon/private_directory.hpp"
#include "protocol/runtime_paths.hpp"

namespace hvsock::daemon {
namespace wire = detail::wire;

namespace {

// Bounds the work done for one client per wake-up, so a busy client cannot
// starve the others.
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

}  // namespace

control_server::control_server(event_loop& loop, client_budget& budget,
                               const partition_tree& partitions, const service_registry& services,
                               router& routes, service_counters& counters, options opts,
                               log_function log)
    : loop_(loop),
      gate_(budget,
            fmt::format("client limit ({}) reached; refusing new control clients until some "
                        "leave ({} kept for the management socket)",
                        budget.max(), opts.management_reserve),
            log, nullptr, opts.management_reserve),
      partitions_(partitions),
      services_(services),
      router_(routes),
      counters_(counters),
      options_(std::move(opts)),
      log_(log),
      refusal_log_("refusals suppressed", log_level::info, log),
      silent_log_("silent control clients closed", log_level::warning, std::move(log)) {}

control_server::~control_server() {
  close_all();
  loop_.cancel_timer(log_flush_timer_);
}

std::string control_server::socket_path(std::string_view partition_name) const {
  return detail::partition_socket_path(options_.runtime_dir, partition_name);
}

result<void> control_server::open_partition(const partition& p) {
  if (p.qemu) return open_guest(p);
  if (!p.hybrid_vsock.empty()) return open_hybrid_vm(p);
  if (sockets_.contains(p.name)) return {};
  const std::string name = p.name;
  // The socket's own directory stays when the daemon stops: an isolated
  // partition holds it bind-mounted, and sees the next daemon's socket.
  const std::string dir = detail::partition_dir(options_.runtime_dir, name);
  const bool shared = (options_.sockets.mode & 077) != 0 || options_.sockets.owner_uid ||
                      options_.sockets.owner_gid;
  if (auto made = make_directory(dir, shared ? 0755 : 0700); !made)
    return made.error().with_context(fmt::format("control socket of \"{}\"", name));
  if (auto mine = check_private_directory(dir, "partition directory"); !mine) return mine.error();
  partition_socket s;
  s.budget = std::make_unique<client_budget>(options_.max_clients_per_partition);
  s.gate = std::make_unique<client_gate>(
      *s.budget,
      fmt::format("{}: client limit of the partition ({}) reached; refusing its new clients "
                  "until some leave",
                  name, options_.max_clients_per_partition),
      log_, &gate_);
  auto listener = socket_listener::open(
      loop_, *s.gate, socket_path(name), SOCK_SEQPACKET, options_.sockets, name, log_,
      [this, name](unique_fd fd) { return add_client(name, std::move(fd)); });
  if (!listener)
    return listener.error().with_context(fmt::format("control socket of \"{}\"", name));
  s.listener = std::move(*listener);
  sockets_.emplace(name, std::move(s));
  return {};
}

void control_server::close_partition(std::string_view name) {
  const bool had_socket = sockets_.contains(name);
  close_socket(name);
  partition_counters_.forget(name);
  // Gone for good: its directory goes too (empty once the socket is removed).
  if (had_socket) ::rmdir(detail::partition_dir(options_.runtime_dir, name).c_str());
}

void control_server::close_socket(std::string_view name) {
  if (auto r = replugs_.find(name); r != replugs_.end()) replugs_.erase(r);
  if (auto h = hybrids_.find(name); h != hybrids_.end()) hybrids_.erase(h);
  if (auto v = hybrid_vms_.find(name); v != hybrid_vms_.end()) hybrid_vms_.erase(v);
  if (auto g = guests_.find(name); g != guests_.end()) guests_.erase(g);
  auto it = sockets_.find(name);
  if (it == sockets_.end()) return;
  const std::vector<std::uint64_t> members(it->second.clients.begin(), it->second.clients.end());
  for (std::uint64_t id : members) close_client(id);
  sockets_.erase(it);  // the listener removes the socket file
}

void control_server::close_all() {
  replugs_.clear();
  hybrids_.clear();
  hybrid_vms_.clear();
  guests_.clear();
  // The partitions' directories stay (runtime_paths.hpp).
  while (!sockets_.empty()) close_socket(sockets_.begin()->first);
}

result<void> control_server::add_client(const std::string& partition, unique_fd fd) {
  auto sock = sockets_.find(partition);
  if (sock == sockets_.end())  // cannot happen: the listener goes with the partition
    return failure(errc::unknown_partition, partition);
  const std::uint64_t id = next_client_id_++;
  client c;
  c.id = id;
  c.partition = partition;
  c.fd = std::move(fd);
  auto watched = loop_.watch(c.fd.get(), EPOLLIN, [this, id](std::uint32_t) { on_client(id); });
  if (!watched) return watched.error();
  c.watch = *watched;
  auto timer =
      loop_.add_timer(options_.first_message_timeout, [this, id] { on_silent_client(id); });
  if (!timer) {
    loop_.unwatch(c.watch);
    return timer.error();
  }
  c.first_message_timer = *timer;
  sock->second.clients.insert(id);
  clients_.emplace(id, std::move(c));
  // A client sends its request right after connecting, so it is usually
  // here already: serving it now saves an epoll round trip per connect.
  on_client(id);
  return {};
}

void control_server::on_client(std::uint64_t id) {
  for (int i = 0; i < messages_per_wakeup; ++i) {
    auto it = clients_.find(id);
    if (it == clients_.end()) return;  // closed by the previous message
    // Every fd that arrives is owned by `got` at once, and closed with it.
    auto got = receive(it->second, buffer_);
    if (!got) return;
    handle_message(it->second, std::span<const std::byte>(buffer_.data(), got->size),
                   std::move(got->fd));
  }
}

std::optional<detail::received_message> control_server::receive(client& c,
                                                                std::span<std::byte> buffer) {
  auto got = detail::receive_message(c.fd.get(), buffer, MSG_DONTWAIT);
  if (!got) {
    if (got.error().code() == errc::would_block) return std::nullopt;
    if (c.listening)
      log_(log_level::info, fmt::format("{}: listener {} closed ({})", c.partition,
                                        c.bound.to_string(), got.error().message()));
    close_client(c.id);
    return std::nullopt;
  }
  if (got->fd_count > 1) {
    protocol_error(c, fmt::format("a client message carried {} file descriptors", got->fd_count));
    return std::nullopt;
  }
  if (got->truncated) {
    protocol_error(c, fmt::format("a message longer than {} bytes", wire::max_message_size));
    return std::nullopt;
  }
  if (got->control_truncated) {
    protocol_error(c, "truncated control data");
    return std::nullopt;
  }
  if (got->size == 0) {  // EOF (a SEQPACKET peer may not send empty messages to us)
    if (c.listening)
      log_(log_level::info,
           fmt::format("{}: listener {} closed", c.partition, c.bound.to_string()));
    close_client(c.id);
    return std::nullopt;
  }
  return std::move(*got);
}

void control_server::handle_message(client& c, std::span<const std::byte> data,
                                    unique_fd attached) {
  loop_.cancel_timer(std::exchange(c.first_message_timer, 0));
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
    if (*type != wire::message_type::listen_request && *type != wire::message_type::accepted) {
      protocol_error(c, fmt::format("unexpected {} on a listener connection", type_name(*type)));
      return;
    }
    return handle_listener_message(c, *type, data);
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

void control_server::count_refusal(const std::string& partition, const endpoint& target,
                                   const failure& why, std::optional<refusal_reason> reason) {
  if (services_.find(target.service) != nullptr)
    counters_.record_refused(target.service, reason.value_or(refusal_reason_for(why.code())));
  else
    counters_.record_unregistered_refused();
  log_refusal(partition, fmt::format("{}: connect {}: refused: {}", partition, target.to_string(),
                                     why.message()));
}

void control_server::log_refusal(const std::string& partition, const std::string& line) {
  if (!refusal_log_.log(partition, line)) schedule_log_flush();
}

void control_server::schedule_log_flush() {
  if (log_flush_timer_ != 0) return;
  std::optional<log_limiter::clock::time_point> when = refusal_log_.next_flush();
  if (auto silent = silent_log_.next_flush(); silent && (!when || *silent < *when)) when = silent;
  if (!when) return;
  auto timer = loop_.add_timer(*when - log_limiter::clock::now(), [this] {
    log_flush_timer_ = 0;
    refusal_log_.flush();
    silent_log_.flush();
    schedule_log_flush();
  });
  // Without a timer the summary waits for the partition's next line.
  if (timer) log_flush_timer_ = *timer;
}

void control_server::on_silent_client(std::uint64_t id) {
  auto it = clients_.find(id);
  if (it == clients_.end()) return;
  it->second.first_message_timer = 0;  // fired
  const std::string partition = it->second.partition;
  close_client(id);
  if (!silent_log_.log(partition,
                       fmt::format("{}: closed a control client that sent nothing for {} ms",
                                   partition, options_.first_message_timeout.count())))
    schedule_log_flush();
}

void control_server::refuse(client& c, const failure& why) {
  const auto reply = wire::make_reply(why);
  (void)detail::send_message(c.fd.get(), wire::as_bytes(reply), -1, MSG_DONTWAIT);
  close_client(c.id);
}

void control_server::protocol_error(client& c, const std::string& what) {
  log_(log_level::warning,
       fmt::format("{}: closing a control client: protocol error: {}", c.partition, what));
  close_client(c.id);
}

void control_server::close_client(std::uint64_t id) {
  auto it = clients_.find(id);
  if (it == clients_.end()) return;
  client& c = it->second;
  if (c.listening) router_.unbind(c.id);
  loop_.unwatch(c.watch);
  loop_.cancel_timer(c.first_message_timer);
  // Admitted through its partition's gate, which releases the daemon-wide one.
  if (auto s = sockets_.find(c.partition); s != sockets_.end()) {
    s->second.clients.erase(id);
    s->second.gate->release();
  } else {
    gate_.release();
  }
  clients_.erase(it);  // closes the fd
}

}  // namespace hvsock::daemon
