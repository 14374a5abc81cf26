#include "daemon/line_handshakes.hpp"

#include <sys/epoll.h>

#include <fmt/format.h>

#include <utility>

#include "protocol/hybrid_vsock.hpp"

namespace hvsock::daemon {

result<void> line_handshakes::add(unique_fd socket, std::chrono::milliseconds timeout,
                                  done_function done) {
  const std::uint64_t id = next_id_++;
  pending p;
  p.fd = std::move(socket);
  p.done = std::move(done);
  auto watched = loop_.watch(p.fd.get(), EPOLLIN, [this, id](std::uint32_t) { on_readable(id); });
  if (!watched) return watched.error();
  p.watch = *watched;
  auto timer = loop_.add_timer(timeout, [this, id, timeout] {
    auto it = pending_.find(id);
    if (it == pending_.end()) return;
    it->second.timer = 0;  // fired: nothing to cancel
    finish(id, failure(errc::timed_out, fmt::format("no line within {} ms", timeout.count())));
  });
  if (!timer) {
    loop_.unwatch(p.watch);
    return timer.error();
  }
  p.timer = *timer;
  pending_.emplace(id, std::move(p));
  on_readable(id);  // the line is often there already
  return {};
}

void line_handshakes::clear() {
  for (auto& [id, p] : pending_) {
    loop_.unwatch(p.watch);
    if (p.timer != 0) loop_.cancel_timer(p.timer);
  }
  pending_.clear();
}

void line_handshakes::on_readable(std::uint64_t id) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  auto whole = detail::read_hybrid_line(it->second.fd.get(), it->second.line);
  if (!whole) return finish(id, whole.error());
  if (*whole) finish(id, it->second.line);
}

void line_handshakes::finish(std::uint64_t id, result<std::string> outcome) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  pending p = std::move(it->second);
  pending_.erase(it);
  loop_.unwatch(p.watch);
  if (p.timer != 0) loop_.cancel_timer(p.timer);
  p.done(std::move(outcome), std::move(p.fd));
}

}  // namespace hvsock::daemon
