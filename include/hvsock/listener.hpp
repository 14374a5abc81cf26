// listener: a bound, listening hvsock service, and listen() to make one.
//
// native_handle() is readable when a connection is waiting (or the switch
// went away), so a listener can sit in poll/epoll with other fds. Move-only;
// accept from one thread at a time.
//
// Surviving a restart of hvsockd: streams already accepted are direct
// sockets and never notice. A listener is a registration in hvsockd, which
// forgets it when it stops; by default accept() then fails with
// daemon_unavailable ("hvsockd went away") and the listener is finished, as a
// one-shot program wants. With listen_options::relisten the listener waits
// for hvsockd instead and binds the same endpoint again by itself (see
// there). docs/reliability.md has the whole story.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <hvsock/endpoint.hpp>
#include <hvsock/result.hpp>
#include <hvsock/socket_type.hpp>
#include <hvsock/stream.hpp>
#include <hvsock/unique_fd.hpp>

namespace hvsock {

namespace detail {
class transport;
}

inline constexpr int default_backlog = 16;
inline constexpr int max_backlog = 4096;

// What a relistening listener reports (listen_options::on_event). Called
// from inside accept(), on the accepting thread; the library itself never
// logs, so this is how a program says what happened.
struct listener_event {
  enum class kind {
    went_away,       // hvsockd closed the listener; `message` says how
    back,            // listening again on the same endpoint
    relisten_failed  // hvsockd answers but refused the bind; `message` is
                     // why (reported once per distinct reason; retried)
  } what;
  std::string message;
};

// Back-off between tries to listen again: the first try 50 ms after hvsockd
// went away, then doubling, never more than 1 s apart.
inline constexpr std::chrono::milliseconds relisten_first_delay{50};
inline constexpr std::chrono::milliseconds relisten_max_delay{1000};

struct listen_options {
  int backlog = default_backlog;  // 1..max_backlog
  std::string control_socket;     // as in connect_options
  // Opt in to surviving hvsockd restarts. When hvsockd goes away, accept()
  // does not fail: it reports went_away, closes the dead registration and
  // tries to bind the endpoint given to listen() again (same options) with
  // bounded back-off (relisten_first_delay doubling to relisten_max_delay;
  // it sleeps between tries, never spins), reports back once that worked,
  // and goes on accepting; the first try after hvsockd answers again is at
  // most relisten_max_delay away. accept()'s timeout bounds the whole wait
  // (a blocking accept() without one waits for hvsockd forever). While
  // hvsockd is away native_handle() is -1 (poll ignores it) and
  // relisten_due_in() says when the next try is due: poll loops wait that
  // long, call accept(0) (which tries at most once, and never sleeps), and
  // take native_handle() again afterwards, as it changes with each bind.
  // Errors other than hvsockd being away (e.g. the service was removed
  // meanwhile) are reported as relisten_failed and retried the same way.
  // Only the emulated transport has a daemon to lose; the flag is harmless
  // with the kernel transport.
  bool relisten = false;
  std::function<void(const listener_event&)> on_event = nullptr;  // optional
};

class listener {
 public:
  listener() = default;
  listener(unique_fd fd, endpoint local, std::shared_ptr<const detail::transport> transport,
           socket_type type = socket_type::stream);
  listener(listener&&) noexcept;
  listener& operator=(listener&&) noexcept;
  ~listener();

  // Binds `local` in this process's partition and listens. local.vm selects
  // who may connect: WILDCARD (anyone allowed to reach this partition),
  // CHILDREN, PARENT (refused on the host), LOOPBACK, or one partition's VmId.
  // Errors: address_in_use, parent_on_host, broadcast_not_allowed,
  // invalid_argument, daemon_unavailable.
  static result<listener> listen(const endpoint& local, const listen_options& options = {});

  // Waits for and takes the next connection. timeout: nullopt waits forever;
  // zero polls once. In non-blocking mode a missing connection is would_block.
  // hvsockd gone: daemon_unavailable, whose message says hvsockd went away;
  // with listen_options::relisten the wait for it instead (see there), and a
  // timeout that ends meanwhile is timed_out (would_block if non-blocking).
  result<stream> accept(std::optional<std::chrono::milliseconds> timeout = std::nullopt);

  // With relisten, while hvsockd is away: how long until the next try to
  // listen again (zero when due). nullopt while listening.
  std::optional<std::chrono::milliseconds> relisten_due_in() const;

  result<void> set_non_blocking(bool enabled);
  void close() noexcept;

  // A relistening listener stays open while it waits for hvsockd.
  bool is_open() const noexcept { return fd_.valid() || relisten_ != nullptr; }
  int native_handle() const noexcept { return fd_.get(); }
  const endpoint& local_endpoint() const noexcept { return local_; }
  // stream for listeners made by listen(); message_listener's are seqpacket.
  socket_type type() const noexcept { return type_; }

 private:
  friend class message_listener;
  static result<listener> listen(const endpoint& local, const listen_options& options,
                                 socket_type type);
  struct relisten_state;
  result<stream> accept_relistening(std::optional<std::chrono::milliseconds> timeout);
  bool try_relisten();

  unique_fd fd_;
  endpoint local_{};
  std::shared_ptr<const detail::transport> transport_;
  socket_type type_ = socket_type::stream;
  std::unique_ptr<relisten_state> relisten_;  // set with listen_options::relisten
};

inline result<listener> listen(const endpoint& local, const listen_options& options = {}) {
  return listener::listen(local, options);
}

}  // namespace hvsock
