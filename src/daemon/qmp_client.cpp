// qmp_client: the non-blocking QMP connection, its line framing and the
// matching of replies to commands.
#include "daemon/qmp_client.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "sys/socket_ops.hpp"

namespace hvsock::daemon {
namespace {

constexpr std::size_t read_chunk = 64 * 1024;

// A short, printable excerpt of what QEMU sent, for a log line.
std::string excerpt(std::string_view text) {
  constexpr std::size_t limit = 80;
  std::string out;
  for (char c : text.substr(0, limit))
    out +=
        (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) ? '?' : c;
  if (text.size() > limit) out += "...";
  return out;
}

// The reason in a QMP error reply: {"error": {"class": "...", "desc": "..."}}.
std::string error_description(const nlohmann::json& error) {
  if (error.is_object()) {
    auto desc = error.find("desc");
    if (desc != error.end() && desc->is_string()) return desc->get<std::string>();
  }
  return "QEMU reported an error without a description";
}

}  // namespace

qmp_client::qmp_client(event_loop& loop, std::string path, callbacks handlers, options opts)
    : loop_(loop), path_(std::move(path)), handlers_(std::move(handlers)), options_(opts) {}

qmp_client::~qmp_client() {
  *alive_ = false;
  loop_.cancel_timer(greeting_deadline_);
  loop_.cancel_timer(connect_failure_timer_);
  for (auto& [id, command] : pending_) loop_.cancel_timer(command.deadline);
  if (watch_ != 0) loop_.unwatch(watch_);
}

result<std::unique_ptr<qmp_client>> qmp_client::connect(event_loop& loop, std::string path,
                                                        callbacks handlers, options opts) {
  auto address = detail::unix_address(path);
  if (!address) return address.error();
  std::unique_ptr<qmp_client> c(new qmp_client(loop, std::move(path), std::move(handlers), opts));
  c->fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!c->fd_) return make_system_error(errno, "socket(AF_UNIX)");
  int rc;
  do {
    rc = ::connect(c->fd_.get(), reinterpret_cast<const sockaddr*>(&*address), sizeof *address);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    const int err = errno;
    // Reported on a later turn, as the header promises, so the caller never
    // sees its own callbacks run before connect() returns.
    failure why =
        err == ENOENT || err == ECONNREFUSED || err == ENOTDIR
            ? failure(errc::daemon_unavailable,
                      fmt::format("nobody answers on the QMP socket {} ({}: QEMU is not running)",
                                  c->path_, std::strerror(err)))
        : err == EAGAIN
            ? failure(errc::limit_reached,
                      fmt::format("the QMP socket {} is busy (its queue is full)", c->path_))
            : failure(
                  std::error_code(err, std::system_category()),
                  fmt::format("connect to the QMP socket {}: {}", c->path_, std::strerror(err)));
    auto timer =
        loop.add_timer(std::chrono::milliseconds(0), [p = c.get(), why = std::move(why)]() mutable {
          p->connect_failure_timer_ = 0;
          p->fail(std::move(why));
        });
    if (!timer) return timer.error();
    c->connect_failure_timer_ = *timer;
    return c;
  }
  auto watched = loop.watch(c->fd_.get(), EPOLLIN,
                            [p = c.get()](std::uint32_t events) { p->on_socket(events); });
  if (!watched) return watched.error();
  c->watch_ = *watched;
  c->events_ = EPOLLIN;
  auto deadline = c->arm_deadline("QEMU's greeting");
  if (!deadline) return deadline.error();
  c->greeting_deadline_ = *deadline;
  return c;
}

result<event_loop::timer_id> qmp_client::arm_deadline(std::string what) {
  return loop_.add_timer(options_.reply_timeout, [this, what = std::move(what)] {
    fail(failure(errc::timed_out,
                 fmt::format("no answer on the QMP socket {} within {} ms (waiting for {}; is "
                             "another client holding the socket?)",
                             path_, options_.reply_timeout.count(), what)));
  });
}

void qmp_client::execute(const std::string& command, json arguments, reply_handler done) {
  if (failed_) return;
  const std::uint64_t id = next_id_++;
  json message{{"execute", command}, {"id", id}};
  if (!arguments.is_null()) message["arguments"] = std::move(arguments);
  auto deadline = arm_deadline(fmt::format("the reply to {}", command));
  if (!deadline) {
    fail(deadline.error());
    return;
  }
  pending_.emplace(id, pending_command{command, std::move(done), *deadline});
  send(message);
}

void qmp_client::send(const json& message) {
  out_ += message.dump(-1, ' ', false, json::error_handler_t::replace);
  out_ += '\n';
  if (flush()) update_interest();
}

bool qmp_client::flush() {
  std::size_t sent = 0;
  while (sent < out_.size()) {
    const ssize_t n =
        ::send(fd_.get(), out_.data() + sent, out_.size() - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    out_.erase(0, sent);
    fail(failure(errc::not_connected,
                 fmt::format("QEMU closed the QMP connection {} ({})", path_,
                             n < 0 ? std::strerror(errno) : "nothing written")));
    return false;
  }
  out_.erase(0, sent);
  return true;
}

void qmp_client::update_interest() {
  if (failed_) return;
  const std::uint32_t wanted = EPOLLIN | (out_.empty() ? 0u : static_cast<std::uint32_t>(EPOLLOUT));
  if (wanted == events_) return;
  if (auto ok = loop_.modify(watch_, wanted); !ok) {
    fail(ok.error());
    return;
  }
  events_ = wanted;
}

void qmp_client::on_socket(std::uint32_t events) {
  if ((events & EPOLLOUT) != 0 && !flush()) return;
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0 && !read_available()) return;
  update_interest();
}

bool qmp_client::read_available() {
  const std::shared_ptr<bool> alive = alive_;
  for (;;) {
    char chunk[read_chunk];
    const ssize_t n = ::recv(fd_.get(), chunk, sizeof chunk, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return true;
    if (n <= 0) {
      fail(failure(errc::not_connected,
                   fmt::format("QEMU closed the QMP connection {}{}", path_,
                               n < 0 ? fmt::format(" ({})", std::strerror(errno)) : "")));
      return false;
    }
    in_.append(chunk, static_cast<std::size_t>(n));
    std::size_t start = 0;
    for (std::size_t eol; (eol = in_.find('\n', start)) != std::string::npos; start = eol + 1) {
      const std::string line = in_.substr(start, eol - start);
      if (!handle_line(line) || !*alive || failed_) return false;
    }
    in_.erase(0, start);
    if (in_.size() > options_.max_line) {
      fail(failure(errc::protocol_error,
                   fmt::format("QEMU sent a QMP line longer than {} bytes on {}", options_.max_line,
                               path_)));
      return false;
    }
  }
}

bool qmp_client::handle_line(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.find_first_not_of(" \t") == std::string_view::npos) return true;
  const json message = json::parse(line, nullptr, false);
  if (message.is_discarded() || !message.is_object()) {
    fail(failure(errc::protocol_error, fmt::format("QEMU sent something that is not a QMP "
                                                   "message on {}: \"{}\"",
                                                   path_, excerpt(line))));
    return false;
  }
  const std::shared_ptr<bool> alive = alive_;
  if (!greeted_) {
    if (!message.contains("QMP")) {
      fail(failure(errc::protocol_error,
                   fmt::format("QEMU did not greet with QMP on {}: \"{}\"", path_, excerpt(line))));
      return false;
    }
    greeted_ = true;
    loop_.cancel_timer(std::exchange(greeting_deadline_, 0));
    execute("qmp_capabilities", json(nullptr), [this](result<json> reply) {
      if (!reply) {
        fail(reply.error());
        return;
      }
      // A copy: the handler may destroy this client, and with it handlers_.
      if (auto ready = handlers_.ready) ready();
    });
    return !failed_;
  }
  if (auto event = message.find("event"); event != message.end()) {
    if (!event->is_string()) {
      fail(failure(
          errc::protocol_error,
          fmt::format("QEMU sent an event without a name on {}: \"{}\"", path_, excerpt(line))));
      return false;
    }
    if (auto on_event = handlers_.on_event) on_event(message);
    return *alive;
  }
  auto id = message.find("id");
  auto it = id != message.end() && id->is_number_unsigned()
                ? pending_.find(id->get<std::uint64_t>())
                : pending_.end();
  const bool is_reply = message.contains("return") || message.contains("error");
  if (!is_reply || it == pending_.end()) {
    fail(failure(errc::protocol_error,
                 fmt::format("QEMU sent a QMP message that answers no command of hvsockd on {}: "
                             "\"{}\"",
                             path_, excerpt(line))));
    return false;
  }
  pending_command command = std::move(it->second);
  pending_.erase(it);
  loop_.cancel_timer(command.deadline);
  if (auto error = message.find("error"); error != message.end()) {
    command.done(failure(errc::protocol_error,
                         fmt::format("{}: {}", command.command, error_description(*error))));
  } else {
    command.done(message.at("return"));
  }
  if (!*alive) return false;
  return !failed_;
}

void qmp_client::fail(failure why) {
  if (failed_) return;
  failed_ = true;
  loop_.cancel_timer(std::exchange(greeting_deadline_, 0));
  for (auto& [id, command] : pending_) loop_.cancel_timer(command.deadline);
  pending_.clear();
  if (watch_ != 0) loop_.unwatch(std::exchange(watch_, 0));
  fd_.reset();
  if (auto on_failure = handlers_.on_failure) on_failure(why);  // may destroy this
}

}  // namespace hvsock::daemon
