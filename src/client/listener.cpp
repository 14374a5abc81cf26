// listener: owns the transport's listening handle and defers accept to the
// transport that made it. With listen_options::relisten it also keeps what
// it needs to bind again after hvsockd went away, and the back-off clock.
#include <hvsock/listener.hpp>

#include <algorithm>
#include <thread>

#include "sys/socket_ops.hpp"
#include "transport/transport.hpp"

namespace hvsock {

using clock = std::chrono::steady_clock;

struct listener::relisten_state {
  endpoint requested;  // as given to listen(): bound again as it was asked for
  int backlog = default_backlog;
  std::function<void(const listener_event&)> on_event;
  bool non_blocking = false;
  std::chrono::milliseconds delay = relisten_first_delay;
  clock::time_point next_try{};
  std::string last_refusal;  // relisten_failed is reported once per reason

  void report(listener_event::kind what, std::string message) const {
    if (on_event) on_event({what, std::move(message)});
  }
};

listener::listener(unique_fd fd, endpoint local, std::shared_ptr<const detail::transport> transport,
                   socket_type type)
    : fd_(std::move(fd)), local_(local), transport_(std::move(transport)), type_(type) {}

listener::listener(listener&&) noexcept = default;
listener& listener::operator=(listener&&) noexcept = default;
listener::~listener() = default;

result<listener> listener::listen(const endpoint& local, const listen_options& options) {
  return listen(local, options, socket_type::stream);
}

result<listener> listener::listen(const endpoint& local, const listen_options& options,
                                  socket_type type) {
  auto transport = detail::select_transport(options.control_socket);
  if (!transport) return transport.error().with_context("listen " + local.to_string());
  auto made = (*transport)->listen(local, options.backlog, type);
  if (made && options.relisten) {
    auto state = std::make_unique<relisten_state>();
    state->requested = local;
    state->backlog = options.backlog;
    state->on_event = options.on_event;
    made->relisten_ = std::move(state);
  }
  return made;
}

result<stream> listener::accept(std::optional<std::chrono::milliseconds> timeout) {
  if (relisten_ && transport_) return accept_relistening(timeout);
  if (!fd_ || !transport_) return make_error(errc::not_connected, "accept");
  return transport_->accept(fd_.get(), local_, timeout);
}

result<stream> listener::accept_relistening(std::optional<std::chrono::milliseconds> timeout) {
  auto& r = *relisten_;
  const auto start = clock::now();
  // Without a timeout a non-blocking listener waits for nothing.
  const auto deadline = timeout          ? start + *timeout
                        : r.non_blocking ? start
                                         : clock::time_point::max();
  for (;;) {
    if (fd_) {
      std::optional<std::chrono::milliseconds> left;
      if (timeout)
        left = std::max(
            std::chrono::milliseconds(0),
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()));
      auto s = transport_->accept(fd_.get(), local_, left);
      if (s || s.error().code() != errc::daemon_unavailable) return s;
      fd_.reset();
      r.delay = relisten_first_delay;
      r.next_try = clock::now() + r.delay;
      r.last_refusal.clear();
      r.report(listener_event::kind::went_away, s.error().message());
    }
    const auto now = clock::now();
    if (now >= r.next_try && try_relisten()) continue;
    if (clock::now() >= deadline)
      return failure(r.non_blocking && !timeout ? errc::would_block : errc::timed_out,
                     "accept " + r.requested.to_string() +
                         ": hvsockd went away; waiting for it to listen again");
    std::this_thread::sleep_until(std::min(r.next_try, deadline));
  }
}

bool listener::try_relisten() {
  auto& r = *relisten_;
  auto again = transport_->listen(r.requested, r.backlog, type_);
  if (again && r.non_blocking) {
    if (auto set = detail::set_non_blocking(again->native_handle(), true); !set)
      again = set.error().with_context("listen " + r.requested.to_string());
  }
  if (!again) {
    r.delay = std::min(r.delay * 2, relisten_max_delay);
    r.next_try = clock::now() + r.delay;
    if (again.error().code() != errc::daemon_unavailable &&
        again.error().message() != r.last_refusal) {
      r.last_refusal = again.error().message();
      r.report(listener_event::kind::relisten_failed, r.last_refusal);
    }
    return false;
  }
  fd_ = std::move(again->fd_);
  local_ = again->local_;
  r.delay = relisten_first_delay;
  r.last_refusal.clear();
  r.report(listener_event::kind::back, "listening on " + local_.to_string() + " again");
  return true;
}

std::optional<std::chrono::milliseconds> listener::relisten_due_in() const {
  if (!relisten_ || fd_) return std::nullopt;
  const auto left =
      std::chrono::ceil<std::chrono::milliseconds>(relisten_->next_try - clock::now());
  return std::max(left, std::chrono::milliseconds(0));
}

result<void> listener::set_non_blocking(bool enabled) {
  if (relisten_) {
    relisten_->non_blocking = enabled;
    if (!fd_) return {};
  }
  if (!fd_) return make_error(errc::not_connected, "set_non_blocking");
  return detail::set_non_blocking(fd_.get(), enabled);
}

void listener::close() noexcept {
  fd_.reset();
  relisten_.reset();
}

}  // namespace hvsock
