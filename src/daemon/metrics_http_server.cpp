// metrics_http_server: accepting scrapers, the per-connection state machine
// (read the head, write the answer, drain until the client closes) and the
// HTTP answers.
#include "daemon/metrics_http_server.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <fmt/format.h>

#include <cerrno>
#include <utility>

#include "protocol/metrics_text.hpp"

namespace hvsock::daemon {
namespace {

constexpr int accepts_per_wakeup = 64;
// After the answer, what a client may still send before it is cut off
// (a keep-alive client's next request, say).
constexpr std::size_t max_drain = 64 * 1024;

std::string http_response(std::string_view status, std::string_view content_type,
                          const std::string& body, bool with_body,
                          std::string_view extra_headers = {}) {
  return fmt::format(
      "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n{}",
      status, content_type, body.size(), extra_headers, with_body ? body : std::string());
}

std::string error_response(std::string_view status, std::string_view extra_headers = {}) {
  return http_response(status, "text/plain; charset=utf-8", std::string(status) + "\n", true,
                       extra_headers);
}

// RFC 9110 token characters, for the method.
bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!alnum && std::string_view("!#$%&'*+-.^_`|~").find(c) == std::string_view::npos)
      return false;
  }
  return true;
}

// Where the request head ends (just past the blank line), or npos.
std::size_t head_end(const std::string& in) {
  const std::size_t crlf = in.find("\r\n\r\n");
  const std::size_t lf = in.find("\n\n");
  if (crlf != std::string::npos && (lf == std::string::npos || crlf < lf)) return crlf + 4;
  return lf == std::string::npos ? std::string::npos : lf + 2;
}

}  // namespace

result<std::unique_ptr<metrics_http_server>> metrics_http_server::open(
    event_loop& loop, const tcp_listen_address& where, render_function render, log_function log,
    limits lim) {
  auto fd = listen_tcp(where, static_cast<int>(lim.max_connections));
  if (!fd) return fd.error();
  auto bound = bound_address(fd->get());
  if (!bound) return bound.error();
  std::unique_ptr<metrics_http_server> server(new metrics_http_server(
      loop, std::move(*fd), to_string(bound->address), std::move(render), std::move(log), lim));
  auto watched = loop.watch(server->listener_.get(), EPOLLIN,
                            [s = server.get()](std::uint32_t) { s->on_listener(); });
  if (!watched) return watched.error();
  server->listener_watch_ = *watched;
  return server;
}

metrics_http_server::metrics_http_server(event_loop& loop, unique_fd listener, std::string address,
                                         render_function render, log_function log, limits lim)
    : loop_(loop),
      listener_(std::move(listener)),
      address_(std::move(address)),
      render_(std::move(render)),
      log_(std::move(log)),
      limits_(lim) {}

metrics_http_server::~metrics_http_server() {
  while (!connections_.empty()) close_connection(connections_.begin()->first);
  if (listener_watch_ != 0) loop_.unwatch(listener_watch_);
}

// --- HTTP ----------------------------------------------------------------------

std::string metrics_http_server::respond_to(std::string_view head) const {
  const std::size_t eol = head.find('\n');
  std::string_view line = head.substr(0, eol);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  // METHOD SP TARGET SP HTTP/1.x, nothing else on the line.
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
    return error_response("400 Bad Request");
  const std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (!is_token(method) || !target.starts_with('/') || !version.starts_with("HTTP/1."))
    return error_response("400 Bad Request");
  if (method != "GET" && method != "HEAD")
    return error_response("405 Method Not Allowed", "Allow: GET, HEAD\r\n");
  target = target.substr(0, target.find('?'));  // a query changes nothing
  if (target != "/metrics") return error_response("404 Not Found");
  return http_response("200 OK", detail::prometheus_content_type, render_(), method == "GET");
}

// --- connections -----------------------------------------------------------------

void metrics_http_server::on_listener() {
  for (int i = 0; i < accepts_per_wakeup; ++i) {
    auto accepted = loop_.accept(listener_.get());
    if (!accepted) {
      if (accepted.error().code() != errc::would_block)
        log_(log_level::warning, fmt::format("metrics: {}", accepted.error().message()));
      return;
    }
    admit(std::move(*accepted));
  }
}

void metrics_http_server::admit(unique_fd fd) {
  if (connections_.size() >= limits_.max_connections) {
    if (!std::exchange(limit_logged_, true))
      log_(log_level::warning,
           fmt::format("metrics: {} connections open; answering 503 to more until one closes",
                       limits_.max_connections));
    // A fresh socket's buffer takes this much; if not, closing says enough.
    const std::string busy = error_response("503 Service Unavailable");
    (void)::send(fd.get(), busy.data(), busy.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    return;
  }
  limit_logged_ = false;
  const std::uint64_t id = next_id_++;
  connection c;
  c.fd = std::move(fd);
  auto watched = loop_.watch(c.fd.get(), EPOLLIN,
                             [this, id](std::uint32_t events) { on_connection(id, events); });
  if (!watched) {
    log_(log_level::error, fmt::format("metrics: {}", watched.error().message()));
    return;
  }
  c.watch = *watched;
  auto timer = loop_.add_timer(limits_.timeout, [this, id] {
    if (auto it = connections_.find(id); it != connections_.end()) {
      it->second.deadline = 0;  // fired
      close_connection(id);
    }
  });
  if (!timer) {
    loop_.unwatch(c.watch);
    log_(log_level::error, fmt::format("metrics: {}", timer.error().message()));
    return;
  }
  c.deadline = *timer;
  connections_.emplace(id, std::move(c));
}

void metrics_http_server::on_connection(std::uint64_t id, std::uint32_t events) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return;
  connection& c = it->second;
  switch (c.state) {
    case phase::reading: (void)read_request(id, c); return;
    case phase::writing:
      if ((events & (EPOLLERR | EPOLLHUP)) != 0) return close_connection(id);
      (void)flush(id, c);
      return;
    case phase::draining: (void)drain(id, c); return;
  }
}

bool metrics_http_server::read_request(std::uint64_t id, connection& c) {
  char chunk[4096];
  // Never more than one byte past the limit: enough to know it is over.
  const std::size_t room = limits_.max_request_head + 1 - c.in.size();
  const ssize_t n = ::recv(c.fd.get(), chunk, std::min(room, sizeof chunk), MSG_DONTWAIT);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
    close_connection(id);  // gone before asking anything
    return false;
  }
  if (n < 0) return true;
  c.in.append(chunk, static_cast<std::size_t>(n));
  const std::size_t end = head_end(c.in);
  if (end != std::string::npos && end <= limits_.max_request_head)
    return start_response(id, c, respond_to(std::string_view(c.in).substr(0, end)));
  if (c.in.size() > limits_.max_request_head)
    return start_response(id, c, error_response("431 Request Header Fields Too Large"));
  return true;
}

bool metrics_http_server::start_response(std::uint64_t id, connection& c, std::string response) {
  c.in.clear();
  c.out = std::move(response);
  c.state = phase::writing;
  if (auto ok = loop_.modify(c.watch, EPOLLOUT); !ok) {
    close_connection(id);
    return false;
  }
  return flush(id, c);
}

bool metrics_http_server::flush(std::uint64_t id, connection& c) {
  while (c.sent < c.out.size()) {
    const ssize_t n = ::send(c.fd.get(), c.out.data() + c.sent, c.out.size() - c.sent,
                             MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      c.sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return true;  // the rest on EPOLLOUT
    close_connection(id);
    return false;
  }
  // All sent. Closing now, with unread request bytes, would reset the
  // connection and could lose the answer at the client: half-close and
  // wait for the client's close instead (the deadline still applies).
  c.out.clear();
  c.state = phase::draining;
  ::shutdown(c.fd.get(), SHUT_WR);
  if (auto ok = loop_.modify(c.watch, EPOLLIN); !ok) {
    close_connection(id);
    return false;
  }
  return true;
}

bool metrics_http_server::drain(std::uint64_t id, connection& c) {
  char chunk[4096];
  const ssize_t n = ::recv(c.fd.get(), chunk, sizeof chunk, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
  if (n > 0 && (c.drained += static_cast<std::size_t>(n)) <= max_drain) return true;
  close_connection(id);  // the client closed, failed, or keeps talking
  return false;
}

void metrics_http_server::close_connection(std::uint64_t id) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return;
  loop_.unwatch(it->second.watch);
  loop_.cancel_timer(it->second.deadline);
  connections_.erase(it);
}

}  // namespace hvsock::daemon
