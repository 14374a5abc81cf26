// metrics_http_server: `hvsockd --metrics-listen ADDR:PORT`, a minimal HTTP
// server on the switch's event loop that answers `GET /metrics` (and HEAD)
// with the Prometheus text (protocol/metrics_text.hpp). Anything else gets
// 400, 404, 405 or 431, then the connection closes.
//
// It must never hold up the switch, whatever a scraper does:
// - sockets are non-blocking; a response that does not fit the socket
//   buffer is kept and sent as EPOLLOUT allows;
// - one request per connection (`Connection: close`); nothing after the
//   request head is read as a request, only drained until the client closes;
// - a request head is at most max_request_head bytes (more: 431);
// - each connection has `timeout` from accept to close, whatever it is
//   doing (a client that sends nothing, or reads nothing, is dropped);
// - at most max_connections at once; beyond that a new connection gets a
//   canned 503 and is closed (one log line per episode).
//
// Thread safety: none; runs on the event loop's thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include <hvsock/result.hpp>
#include <hvsock/unique_fd.hpp>

#include "daemon/event_loop.hpp"
#include "daemon/tcp_listen_address.hpp"

namespace hvsock::daemon {

class metrics_http_server {
 public:
  struct limits {
    std::size_t max_request_head = 8 * 1024;
    std::size_t max_connections = 16;
    std::chrono::milliseconds timeout = std::chrono::seconds(5);
  };
  // Produces the body of a 200 answer, when a request asks for it.
  using render_function = std::function<std::string()>;

  // Binds and listens on `where`; `loop` must outlive the server.
  static result<std::unique_ptr<metrics_http_server>> open(event_loop& loop,
                                                           const tcp_listen_address& where,
                                                           render_function render, log_function log,
                                                           limits lim);
  metrics_http_server(const metrics_http_server&) = delete;
  metrics_http_server& operator=(const metrics_http_server&) = delete;
  // Closes the listener and every connection.
  ~metrics_http_server();

  // Where it listens ("127.0.0.1:9731"), with the port the kernel picked.
  const std::string& address() const { return address_; }
  std::size_t connection_count() const { return connections_.size(); }

  // The response (status line, headers, body) to one request head: what the
  // server would send. Public so the HTTP handling is tested without a socket.
  std::string respond_to(std::string_view head) const;

 private:
  enum class phase { reading, writing, draining };
  struct connection {
    unique_fd fd;
    event_loop::watch_id watch = 0;
    event_loop::timer_id deadline = 0;
    phase state = phase::reading;
    std::string in;
    std::string out;
    std::size_t sent = 0;
    std::size_t drained = 0;
  };

  metrics_http_server(event_loop& loop, unique_fd listener, std::string address,
                      render_function render, log_function log, limits lim);
  void on_listener();
  void admit(unique_fd fd);
  void on_connection(std::uint64_t id, std::uint32_t events);
  // Each returns false when the connection was closed.
  bool read_request(std::uint64_t id, connection& c);
  bool start_response(std::uint64_t id, connection& c, std::string response);
  bool flush(std::uint64_t id, connection& c);
  bool drain(std::uint64_t id, connection& c);
  void close_connection(std::uint64_t id);

  event_loop& loop_;
  unique_fd listener_;
  event_loop::watch_id listener_watch_ = 0;
  std::string address_;
  render_function render_;
  log_function log_;
  limits limits_;
  std::unordered_map<std::uint64_t, connection> connections_;
  std::uint64_t next_id_ = 1;
  bool limit_logged_ = false;
};

}  // namespace hvsock::daemon
