// event_loop: hvsockd's single-threaded epoll loop, plus the few pieces every
// server on it shares: the daemon's log sink, one-shot timers, the budget of
// open clients and accepting from a listening socket (socket_listener.hpp
// builds a served socket file from these).
//
// Handlers run on the thread that calls run(). A handler may watch and
// unwatch any fd, its own included, while it runs; events already fetched
// for an unwatched fd are dropped, even if the fd number is reused. Timers
// share one timerfd armed for the earliest deadline (no per-timer fd, no
// busy loop); a timer's callback may add and cancel timers, itself included.
//
// Thread safety: none; everything happens on the loop's thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

#include <hvsock/result.hpp>
#include <hvsock/unique_fd.hpp>

#include "daemon/log.hpp"
#include "sys/socket_ops.hpp"

namespace hvsock::daemon {

class event_loop {
 public:
  using handler = std::function<void(std::uint32_t events)>;
  using watch_id = std::uint64_t;
  using clock = std::chrono::steady_clock;  // CLOCK_MONOTONIC, as the timerfd
  using timer_id = std::uint64_t;           // never 0

  static result<std::unique_ptr<event_loop>> create();
  event_loop(const event_loop&) = delete;
  event_loop& operator=(const event_loop&) = delete;

  // Watches `fd` (level-triggered) for `events` (EPOLLIN, EPOLLOUT, ...).
  // The loop does not own the fd: unwatch it before closing it.
  result<watch_id> watch(int fd, std::uint32_t events, handler on_event);
  result<void> modify(watch_id id, std::uint32_t events);
  void unwatch(watch_id id);

  // Calls `fire` once, on the loop's thread, `after` from now (a run of
  // handlers later at the earliest). Fails only if the timerfd cannot be
  // armed.
  result<timer_id> add_timer(clock::duration after, std::function<void()> fire);
  // Forgets a timer that has not fired; unknown ids (fired, cancelled, 0)
  // are ignored.
  void cancel_timer(timer_id id);
  std::size_t timer_count() const { return timers_.size(); }

  // Blocks SIGINT and SIGTERM for this thread and delivers them through a
  // signalfd that stops the loop; ignores SIGPIPE (sends use MSG_NOSIGNAL
  // anyway). Call before any other thread starts.
  result<void> stop_on_termination_signals();
  // The signal that stopped the loop, or 0.
  int stop_signal() const { return stop_signal_; }

  // Runs handlers until stop() or a termination signal. Fails only if
  // epoll_wait does.
  result<void> run();
  void stop() { stopping_ = true; }

  // accept4 (non-blocking, CLOEXEC) on a listening socket. errc::would_block
  // when nobody is waiting. When the process is out of fds, one waiting
  // connection is accepted and closed with the help of a reserved fd, so a
  // level-triggered listening socket cannot spin the loop, and the result is
  // errc::limit_reached.
  result<unique_fd> accept(int listening_fd);

 private:
  struct entry {
    int fd;
    std::shared_ptr<handler> on_event;  // shared so a handler survives its own unwatch
  };

  explicit event_loop(unique_fd epoll);
  // Sets the timerfd to the earliest deadline (or disarms it).
  result<void> arm_timerfd();
  void on_timerfd();

  unique_fd epoll_;
  unique_fd timer_fd_;
  // Deadline order; the id breaks ties and finds the entry for cancel.
  std::map<std::pair<clock::time_point, timer_id>, std::function<void()>> timers_;
  std::unordered_map<timer_id, clock::time_point> timer_deadlines_;
  timer_id next_timer_ = 1;
  unique_fd signal_fd_;
  unique_fd reserve_fd_;  // spare fd for accept() under EMFILE
  std::unordered_map<watch_id, entry> entries_;
  watch_id next_id_ = 1;
  bool stopping_ = false;
  int stop_signal_ = 0;
};

// The cap on clients (control and management connections) open at once.
class client_budget {
 public:
  explicit client_budget(std::size_t max) : max_(max) {}
  // Takes one share unless that would leave fewer than `keep_free` shares
  // (a reserve kept for other takers).
  bool try_acquire(std::size_t keep_free = 0) {
    if (used_ >= max_ || max_ - used_ <= keep_free) return false;
    ++used_;
    return true;
  }
  void release() {
    if (used_ > 0) --used_;
  }
  std::size_t used() const { return used_; }
  std::size_t max() const { return max_; }

 private:
  std::size_t max_;
  std::size_t used_ = 0;
};

// Creating listening socket files lives in src/sys next to connect_unix;
// the daemon's servers name it from here.
using detail::listen_unix;
using detail::socket_file_options;

}  // namespace hvsock::daemon
