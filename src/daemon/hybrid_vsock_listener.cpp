#include "daemon/hybrid_vsock_listener.hpp"

#include <sys/socket.h>

#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "protocol/hybrid_vsock.hpp"

namespace hvsock::daemon {

hybrid_vsock_listener::hybrid_vsock_listener(event_loop& loop, client_gate& gate,
                                             connect_function on_connect,
                                             refusal_function on_refused, limits lim)
    : gate_(gate),
      on_connect_(std::move(on_connect)),
      on_refused_(std::move(on_refused)),
      limits_(lim),
      pending_(loop) {}

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
  for (std::size_t n = pending_.size(); n > 0; --n) gate_.release();
  pending_.clear();
}

result<void> hybrid_vsock_listener::admit(unique_fd client) {
  return pending_.add(
      std::move(client), limits_.handshake_timeout,
      [this](result<std::string> line, unique_fd c) { on_line(std::move(line), std::move(c)); });
}

void hybrid_vsock_listener::on_line(result<std::string> line, unique_fd client) {
  gate_.release();  // out of its handshake: routed or closed now
  auto refuse = [&](const std::string& why) {
    client.reset();  // closing is the refusal
    if (on_refused_) on_refused_(why);
  };
  if (!line) {
    if (line.error().code() == errc::timed_out)
      return refuse(fmt::format("no CONNECT line within {} ms", limits_.handshake_timeout.count()));
    return refuse(line.error().message());
  }
  const auto port = detail::parse_hybrid_connect(*line);
  if (!port) {
    // Printable, bounded: the line is at most hybrid_max_line bytes.
    std::string shown = *line;
    std::replace_if(
        shown.begin(), shown.end(), [](char c) { return c < 0x20 || c > 0x7e; }, '?');
    return refuse(fmt::format("expected \"CONNECT <port>\", got \"{}\"", shown));
  }
  on_connect_(*port, std::move(client));
}

}  // namespace hvsock::daemon
