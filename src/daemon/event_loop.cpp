// event_loop: epoll dispatch, timers, termination signals, accepting.
#include "daemon/event_loop.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <vector>

namespace hvsock::daemon {

result<std::unique_ptr<event_loop>> event_loop::create() {
  unique_fd epoll(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll) return make_system_error(errno, "epoll_create1");
  std::unique_ptr<event_loop> loop(new event_loop(std::move(epoll)));
  loop->reserve_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  loop->timer_fd_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!loop->timer_fd_) return make_system_error(errno, "timerfd_create");
  event_loop* l = loop.get();
  auto watched =
      loop->watch(loop->timer_fd_.get(), EPOLLIN, [l](std::uint32_t) { l->on_timerfd(); });
  if (!watched) return watched.error();
  return loop;
}

event_loop::event_loop(unique_fd epoll) : epoll_(std::move(epoll)) {}

result<event_loop::watch_id> event_loop::watch(int fd, std::uint32_t events, handler on_event) {
  const watch_id id = next_id_++;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = id;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0)
    return make_system_error(errno, "epoll_ctl(ADD)");
  entries_.emplace(id, entry{fd, std::make_shared<handler>(std::move(on_event))});
  return id;
}

result<void> event_loop::modify(watch_id id, std::uint32_t events) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return failure(errc::invalid_argument, "epoll_ctl(MOD): not watched");
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = id;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, it->second.fd, &ev) < 0)
    return make_system_error(errno, "epoll_ctl(MOD)");
  return {};
}

void event_loop::unwatch(watch_id id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  (void)::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second.fd, nullptr);
  entries_.erase(it);
}

result<event_loop::timer_id> event_loop::add_timer(clock::duration after,
                                                   std::function<void()> fire) {
  const timer_id id = next_timer_++;
  const clock::time_point deadline = clock::now() + after;
  const bool earliest = timers_.empty() || deadline < timers_.begin()->first.first;
  timers_.emplace(std::pair{deadline, id}, std::move(fire));
  timer_deadlines_.emplace(id, deadline);
  if (earliest) {
    if (auto armed = arm_timerfd(); !armed) {
      cancel_timer(id);
      return armed.error();
    }
  }
  return id;
}

void event_loop::cancel_timer(timer_id id) {
  auto it = timer_deadlines_.find(id);
  if (it == timer_deadlines_.end()) return;
  timers_.erase(std::pair{it->second, id});
  timer_deadlines_.erase(it);
  // A timerfd left armed for a cancelled deadline costs one empty wake-up;
  // not re-arming here keeps cancel cheap (it is called per closed client).
}

result<void> event_loop::arm_timerfd() {
  itimerspec when{};  // all zero disarms
  if (!timers_.empty()) {
    const auto since_epoch = timers_.begin()->first.first.time_since_epoch();
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
    when.it_value.tv_sec = static_cast<time_t>(secs.count());
    when.it_value.tv_nsec = static_cast<long>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - secs).count());
    // An all-zero it_value would disarm: the epoch itself is long past.
    if (when.it_value.tv_sec == 0 && when.it_value.tv_nsec == 0) when.it_value.tv_nsec = 1;
  }
  if (::timerfd_settime(timer_fd_.get(), TFD_TIMER_ABSTIME, &when, nullptr) < 0)
    return make_system_error(errno, "timerfd_settime");
  return {};
}

void event_loop::on_timerfd() {
  std::uint64_t expirations = 0;
  while (::read(timer_fd_.get(), &expirations, sizeof expirations) > 0) {
  }
  // Only the timers due now: one added by a callback for "now" waits for the
  // next wake-up, so callbacks cannot keep this loop going.
  const clock::time_point now = clock::now();
  std::vector<timer_id> due;
  for (const auto& [key, fire] : timers_) {
    if (key.first > now) break;
    due.push_back(key.second);
  }
  for (timer_id id : due) {
    auto d = timer_deadlines_.find(id);
    if (d == timer_deadlines_.end()) continue;  // cancelled by an earlier callback
    auto node = timers_.extract(std::pair{d->second, id});
    timer_deadlines_.erase(d);
    node.mapped()();
  }
  (void)arm_timerfd();  // fails only with a bad fd; the next add_timer reports it
}

result<void> event_loop::stop_on_termination_signals() {
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  if (::sigaction(SIGPIPE, &ignore, nullptr) < 0) return make_system_error(errno, "sigaction");
  sigset_t set;
  ::sigemptyset(&set);
  ::sigaddset(&set, SIGINT);
  ::sigaddset(&set, SIGTERM);
  if (int rc = ::pthread_sigmask(SIG_BLOCK, &set, nullptr); rc != 0)
    return make_system_error(rc, "pthread_sigmask");
  signal_fd_.reset(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signal_fd_) return make_system_error(errno, "signalfd");
  auto watched = watch(signal_fd_.get(), EPOLLIN, [this](std::uint32_t) {
    signalfd_siginfo info{};
    while (::read(signal_fd_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
      stop_signal_ = static_cast<int>(info.ssi_signo);
      stopping_ = true;
    }
  });
  if (!watched) return watched.error();
  return {};
}

result<void> event_loop::run() {
  std::array<epoll_event, 128> events;
  while (!stopping_) {
    const int n = ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_system_error(errno, "epoll_wait");
    }
    for (int i = 0; i < n && !stopping_; ++i) {
      // A copy: epoll_event is packed, so its u64 is misaligned and may not
      // be bound to find()'s reference.
      const watch_id id = events[static_cast<std::size_t>(i)].data.u64;
      auto it = entries_.find(id);
      if (it == entries_.end()) continue;  // unwatched by an earlier handler
      const std::shared_ptr<handler> on_event = it->second.on_event;
      (*on_event)(events[static_cast<std::size_t>(i)].events);
    }
  }
  return {};
}

result<unique_fd> event_loop::accept(int listening_fd) {
  for (;;) {
    unique_fd fd(::accept4(listening_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (fd) return fd;
    const int err = errno;
    switch (err) {
      case EINTR:
      case ECONNABORTED: continue;  // that client gave up; try the next
      case EAGAIN: return make_error(errc::would_block, "accept");
      case EMFILE:
      case ENFILE:
        // Make room with the spare fd, take the waiting connection and drop
        // it, then re-arm the spare.
        if (reserve_fd_) {
          reserve_fd_.reset();
          unique_fd dropped(::accept4(listening_fd, nullptr, nullptr, SOCK_CLOEXEC));
          dropped.reset();
          reserve_fd_.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
        }
        return failure(errc::limit_reached, "accept: the daemon is out of file descriptors");
      default: return make_system_error(err, "accept");
    }
  }
}

}  // namespace hvsock::daemon
