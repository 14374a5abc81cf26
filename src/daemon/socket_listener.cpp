// socket_listener: the accept loop of a served socket file, and client
// admission against the budget.
#include "daemon/socket_listener.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <fmt/format.h>

#include <utility>

namespace hvsock::daemon {

bool client_gate::admit() {
  if (!budget_.try_acquire(keep_free_)) {
    if (!std::exchange(limit_logged_, true)) log_(log_level::warning, limit_line_);
    return false;
  }
  if (parent_ != nullptr && !parent_->admit()) {
    budget_.release();
    return false;
  }
  limit_logged_ = false;
  return true;
}

result<std::unique_ptr<socket_listener>> socket_listener::open(event_loop& loop, client_gate& gate,
                                                               const std::string& path, int type,
                                                               const socket_file_options& options,
                                                               std::string name, log_function log,
                                                               accept_handler on_accept) {
  auto fd = listen_unix(path, type, options);
  if (!fd) return fd.error();
  std::unique_ptr<socket_listener> listener(new socket_listener(
      loop, gate, path, std::move(*fd), std::move(name), std::move(log), std::move(on_accept)));
  auto watched = loop.watch(listener->fd_.get(), EPOLLIN,
                            [l = listener.get()](std::uint32_t) { l->on_readable(); });
  if (!watched) return watched.error();  // the destructor removes the file
  listener->watch_ = *watched;
  return listener;
}

socket_listener::socket_listener(event_loop& loop, client_gate& gate, std::string path,
                                 unique_fd fd, std::string name, log_function log,
                                 accept_handler on_accept)
    : loop_(loop),
      gate_(gate),
      path_(std::move(path)),
      fd_(std::move(fd)),
      name_(std::move(name)),
      log_(std::move(log)),
      on_accept_(std::move(on_accept)) {}

socket_listener::~socket_listener() {
  if (watch_ != 0) loop_.unwatch(watch_);
  ::unlink(path_.c_str());
}

void socket_listener::on_readable() {
  for (int i = 0; i < accepts_per_wakeup; ++i) {
    auto accepted = loop_.accept(fd_.get());
    if (!accepted) {
      if (accepted.error().code() != errc::would_block)
        log_(log_level::warning, fmt::format("{}: {}", name_, accepted.error().message()));
      return;
    }
    // Closing the connection is the refusal: the client sees EOF.
    if (!gate_.admit()) continue;
    if (auto taken = on_accept_(std::move(*accepted)); !taken) {
      gate_.release();
      log_(log_level::warning, fmt::format("{}: {}", name_, taken.error().message()));
    }
  }
}

}  // namespace hvsock::daemon
