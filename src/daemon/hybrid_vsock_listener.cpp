#include "daemon/hybrid_vsock_listener.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <utility>

#include "protocol/hybrid_vsock.hpp"

namespace hvsock::daemon {

hybrid_vsock_listener::hybrid_vsock_listener(event_loop& loop, client_gate& gate,
                                             connect_function on_connect,
                                             refusal_function on_refused, limits lim)
    : loop_(loop),
      gate_(gate),
      on_connect_(std::move(on_connect)),
      on_refused_(std::move(on_refused)),
      limits_(lim) {}

result<std::unique_ptr<hybrid_vsock_listener>> hybrid_vsock_listener::open(
    event_loop& loop, client_gate& gate, const std::string& path,
    const socket_file_options& sockets, std::string name, connect_function on_connect,
    refusal_function on_refused, log_function log, limits lim) {
  std::unique_ptr<hybrid_vsock_listener> h(
      new hybrid_vsock_listener(loop, gate, std::move(on_connect), std::move(on_refused), lim));
  auto listener = socket_listener::open(
      loop, gate, path, SOCK_STREAM, sockets, std::move(name), std::move(log),
      [p = h.get()](unique_fd client) { return p->admit(std::move(client)); });
  if (!listener) return listener.error();
  h->listener_ = std::move(*listener);
  return h;
}

hybrid_vsock_listener::~hybrid_vsock_listener() {
  listener_.reset();
  while (!pending_.empty()) (void)finish(pending_.begin()->first);
}

result<void> hybrid_vsock_listener::admit(unique_fd client) {
  const std::uint64_t id = next_id_++;
  handshake h;
  h.fd = std::move(client);
  auto watched = loop_.watch(h.fd.get(), EPOLLIN, [this, id](std::uint32_t) { on_readable(id); });
  if (!watched) return watched.error();
  h.watch = *watched;
  auto timer = loop_.add_timer(limits_.handshake_timeout, [this, id] {
    if (auto it = pending_.find(id); it != pending_.end()) {
      it->second.timer = 0;  // fired: nothing to cancel
      refuse(id, fmt::format("no CONNECT line within {} ms", limits_.handshake_timeout.count()));
    }
  });
  if (!timer) {
    loop_.unwatch(h.watch);
    return timer.error();
  }
  h.timer = *timer;
  pending_.emplace(id, std::move(h));
  on_readable(id);  // the line is often there already
  return {};
}

void hybrid_vsock_listener::on_readable(std::uint64_t id) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  handshake& h = it->second;
  auto whole = detail::read_hybrid_line(h.fd.get(), h.line);
  if (!whole) return refuse(id, whole.error().message());
  if (!*whole) return;
  const auto port = detail::parse_hybrid_connect(h.line);
  if (!port) {
    // Printable, bounded: the line is at most hybrid_max_line bytes.
    std::string shown = h.line;
    std::replace_if(
        shown.begin(), shown.end(), [](char c) { return c < 0x20 || c > 0x7e; }, '?');
    return refuse(id, fmt::format("expected \"CONNECT <port>\", got \"{}\"", shown));
  }
  unique_fd stream = finish(id);
  on_connect_(*port, std::move(stream));
}

unique_fd hybrid_vsock_listener::finish(std::uint64_t id) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return {};
  loop_.unwatch(it->second.watch);
  if (it->second.timer != 0) loop_.cancel_timer(it->second.timer);
  unique_fd fd = std::move(it->second.fd);
  pending_.erase(it);
  gate_.release();
  return fd;
}

void hybrid_vsock_listener::refuse(std::uint64_t id, const std::string& why) {
  (void)finish(id);  // closing is the refusal
  if (on_refused_) on_refused_(why);
}

}  // namespace hvsock::daemon
