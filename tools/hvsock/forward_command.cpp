// hvsock forward --listen ENDPOINT --to ENDPOINT: a port forwarder between
// TCP, Unix sockets and hvsock services. Each accepted connection gets its
// own connection to the target and two copying threads; a side's EOF is
// passed on as a half-close (shutdown of the write side), and blocking
// writes are the backpressure: nothing is buffered beyond one chunk per
// direction. SIGINT/SIGTERM stop accepting, end the open connections and
// exit 0. One log line per connection opened and closed.
//
// Bounded and never spinning: at most --max-connections (default 1024) are
// open at once; past that a new connection is accepted and closed at once
// (a TCP client sees a reset), with one log line when the limit is reached
// and one when connections are taken again. Accept errors that persist (no
// fds left: EMFILE, ENFILE, ENOBUFS, ENOMEM) pause accepting for 100 ms. When
// hvsockd goes away under an hvsock: listener, the forward says so once,
// tries to listen again with back-off (50 ms doubling to 1 s, polling only
// the stop pipe meanwhile), and says so once more when it listens again:
// the listener is a relistening one (listen_options::relisten in
// <hvsock/listener.hpp>, shared with `hvsock agent`); open connections are
// direct sockets and carry on.
//
//   --listen tcp:HOST:PORT | unix:PATH | hvsock:SERVICE
//   --to     tcp:HOST:PORT | unix:PATH | [hvsock:]VM:SERVICE
// SERVICE: a GUID, a vsock port number or a registered name; VM: a partition
// name, a VmId or a word (parent, loopback).
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <iostream>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "cli_common.hpp"

namespace hvsock::cli {
namespace {

struct forward_endpoint {
  enum class kind { tcp, unix_path, hvsock } type;
  std::string host, port;  // tcp
  std::string path;        // unix
  endpoint hv{};           // hvsock
  std::string text;
};

int stop_pipe[2] = {-1, -1};
extern "C" void on_stop(int) {
  const int saved = errno;
  (void)!::write(stop_pipe[1], "x", 1);
  errno = saved;
}

forward_endpoint parse(const std::string& text, bool listening, const global_options& options) {
  forward_endpoint e;
  e.text = text;
  auto split_host_port = [&](const std::string& rest) {
    const auto colon = rest.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == rest.size())
      fail(text + ": expected tcp:HOST:PORT", exit_usage);
    e.host = rest.substr(0, colon);
    if (e.host.size() > 2 && e.host.front() == '[' && e.host.back() == ']')
      e.host = e.host.substr(1, e.host.size() - 2);
    e.port = rest.substr(colon + 1);
    // getaddrinfo would take 99999 and wrap it; a port is a 16-bit number
    // (0, "any", would leave nobody knowing where to connect).
    checked_number(e.port, 1, 65535,
                   std::string("forward ") + (listening ? "--listen " : "--to ") + text, "port");
  };
  if (text.rfind("tcp:", 0) == 0) {
    e.type = forward_endpoint::kind::tcp;
    split_host_port(text.substr(4));
    return e;
  }
  if (text.rfind("unix:", 0) == 0) {
    e.type = forward_endpoint::kind::unix_path;
    e.path = text.substr(5);
    if (e.path.empty() || e.path.size() >= sizeof(sockaddr_un{}.sun_path))
      fail(text + ": expected unix:PATH (at most 107 bytes)", exit_usage);
    return e;
  }
  e.type = forward_endpoint::kind::hvsock;
  std::string rest = text.rfind("hvsock:", 0) == 0 ? text.substr(7) : text;
  if (listening) {
    e.hv = {vm_id_wildcard, resolve_service(rest, options)};
    return e;
  }
  const auto colon = rest.rfind(':');
  if (colon == std::string::npos) fail(text + ": expected VM:SERVICE", exit_usage);
  e.hv = {resolve_vm(rest.substr(0, colon), options),
          resolve_service(rest.substr(colon + 1), options)};
  return e;
}

// An hvsock: listener goes to `hv_listener` (polled through its own
// native_handle(), which changes when it listens again) and the result is
// empty; the others are returned.
result<unique_fd> open_listener(const forward_endpoint& e, const global_options& options,
                                std::optional<listener>& hv_listener,
                                std::function<void(const listener_event&)> on_event) {
  if (e.type == forward_endpoint::kind::hvsock) {
    auto l = listener::listen(e.hv, {.backlog = max_backlog,
                                     .control_socket = control_socket(options),
                                     .relisten = true,
                                     .on_event = std::move(on_event)});
    if (!l) return l.error();
    hv_listener.emplace(std::move(*l));
    return unique_fd();
  }
  // Non-blocking: a connection gone between poll and accept is EAGAIN, not a hang.
  if (e.type == forward_endpoint::kind::unix_path) {
    unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, e.path.c_str(), sizeof a.sun_path - 1);
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 ||
        ::listen(fd.get(), SOMAXCONN) < 0)
      return make_system_error(errno, "listen on " + e.text);
    return fd;
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(e.host.c_str(), e.port.c_str(), &hints, &found); rc != 0)
    return failure(errc::invalid_argument, e.text + ": " + ::gai_strerror(rc));
  unique_fd fd(::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  const int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  const int rc = ::bind(fd.get(), found->ai_addr, found->ai_addrlen);
  ::freeaddrinfo(found);
  if (rc < 0 || ::listen(fd.get(), SOMAXCONN) < 0)
    return make_system_error(errno, "listen on " + e.text);
  return fd;
}

result<unique_fd> open_target(const forward_endpoint& e, const global_options& options) {
  if (e.type == forward_endpoint::kind::hvsock) {
    auto s = stream::connect(
        e.hv, {.timeout = std::chrono::seconds(10), .control_socket = control_socket(options)});
    if (!s) return s.error();
    return s->release();
  }
  if (e.type == forward_endpoint::kind::unix_path) {
    unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, e.path.c_str(), sizeof a.sun_path - 1);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0)
      return make_system_error(errno, "connect " + e.text);
    return fd;
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(e.host.c_str(), e.port.c_str(), &hints, &found); rc != 0)
    return failure(errc::invalid_argument, e.text + ": " + ::gai_strerror(rc));
  failure last(errc::connection_refused, "connect " + e.text);
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    unique_fd fd(::socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (::connect(fd.get(), a->ai_addr, a->ai_addrlen) == 0) {
      ::freeaddrinfo(found);
      return fd;
    }
    last = make_system_error(errno, "connect " + e.text);
  }
  ::freeaddrinfo(found);
  return last;
}

// Copies `from` to `to` until EOF, then half-closes `to`. Returns the bytes.
std::uint64_t pump(int from, int to) {
  std::vector<char> buf(64 * 1024);
  std::uint64_t total = 0;
  for (;;) {
    const ssize_t n = ::read(from, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (ssize_t off = 0; off < n;) {
      const ssize_t w =
          ::send(to, buf.data() + off, static_cast<std::size_t>(n - off), MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        ::shutdown(from, SHUT_RD);
        ::shutdown(to, SHUT_RDWR);
        return total;
      }
      off += w;
    }
    total += static_cast<std::uint64_t>(n);
  }
  ::shutdown(to, SHUT_WR);
  return total;
}

class forwarder {
 public:
  forwarder(forward_endpoint to, const global_options& options)
      : to_(std::move(to)), options_(options) {}

  // Connections being served (their threads not yet ended).
  int running() {
    std::lock_guard g(lock_);
    return running_;
  }

  void handle(unique_fd client, std::uint64_t id) {
    const int client_fd = client.get();
    {
      std::lock_guard g(lock_);
      open_.insert(client_fd);
      ++running_;
    }
    try {
      std::thread([this, client = std::move(client), id]() mutable {
        serve(std::move(client), id);
      }).detach();
    } catch (const std::system_error& e) {
      // No thread: the lambda that held the connection is gone, and closed it.
      log("#" + std::to_string(id) + ": no thread for it: " + e.what());
      std::lock_guard g(lock_);
      open_.erase(client_fd);
      --running_;
      done_.notify_all();
    }
  }

  // Ends every open connection and waits for their threads.
  void stop() {
    std::unique_lock g(lock_);
    for (int fd : open_) ::shutdown(fd, SHUT_RDWR);
    done_.wait(g, [&] { return running_ == 0; });
  }

  void log(const std::string& line) {
    std::lock_guard g(log_lock_);
    std::cerr << "hvsock forward: " << line << std::endl;
  }

 private:
  void serve(unique_fd client, std::uint64_t id) {
    auto target = open_target(to_, options_);
    if (!target) {
      log("#" + std::to_string(id) + ": " + target.error().message());
    } else {
      log("#" + std::to_string(id) + ": open to " + to_.text);
      {
        std::lock_guard g(lock_);
        open_.insert(target->get());
      }
      std::uint64_t back = 0;
      std::thread reverse([&] { back = pump(target->get(), client.get()); });
      const std::uint64_t forth = pump(client.get(), target->get());
      reverse.join();
      log("#" + std::to_string(id) + ": closed, " + std::to_string(forth) + " bytes in, " +
          std::to_string(back) + " bytes out");
      std::lock_guard g(lock_);
      open_.erase(target->get());
    }
    std::lock_guard g(lock_);
    open_.erase(client.get());
    client.reset();
    --running_;
    done_.notify_all();
  }

  forward_endpoint to_;
  const global_options& options_;
  std::mutex lock_, log_lock_;
  std::condition_variable done_;
  std::set<int> open_;
  int running_ = 0;
};

// Waits up to `delay` for SIGINT/SIGTERM; true when one came.
bool stop_requested(std::chrono::milliseconds delay) {
  pollfd p{stop_pipe[0], POLLIN, 0};
  const auto until = std::chrono::steady_clock::now() + delay;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    const int rc = ::poll(&p, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 0)));
    if (rc > 0) return true;
    if (rc == 0 || errno != EINTR) return false;
  }
}

// Errors that say the process or the system is out of something: accepting
// again at once would fail the same way, so accepting pauses briefly.
bool resource_shortage(int err) {
  return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

// Closes a connection refused at the limit; a TCP client gets a reset, not
// an orderly end that could pass for an empty answer.
void refuse(unique_fd client) {
  const linger hard{1, 0};
  ::setsockopt(client.get(), SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
}

constexpr auto accept_pause = std::chrono::milliseconds(100);

}  // namespace

void add_forward_command(CLI::App& app, global_options& options) {
  struct forward_args {
    std::string listen, to;
    int max_connections = 1024;
  };
  auto args = std::make_shared<forward_args>();
  auto* forward = app.add_subcommand(
      "forward", "Forward connections between TCP, Unix sockets and hvsock services");
  forward->add_option("--listen", args->listen, "tcp:HOST:PORT, unix:PATH or hvsock:SERVICE")
      ->required();
  forward->add_option("--to", args->to, "tcp:HOST:PORT, unix:PATH or [hvsock:]VM:SERVICE")
      ->required();
  forward
      ->add_option("--max-connections", args->max_connections,
                   "connections open at once; more are closed as they come (default 1024)")
      ->check(CLI::Range(1, 65536));
  forward->callback([args, &options] {
    const auto from = parse(args->listen, true, options);
    const auto to = parse(args->to, false, options);
    const bool hvsock_listener = from.type == forward_endpoint::kind::hvsock;
    forwarder fwd(to, options);
    std::optional<listener> hv_listener;
    auto listening = open_listener(from, options, hv_listener, [&fwd](const listener_event& e) {
      switch (e.what) {
        case listener_event::kind::went_away:
          fwd.log("hvsockd went away (" + e.message +
                  "); waiting for it to come back, the open connections carry on");
          break;
        case listener_event::kind::back: fwd.log("hvsockd is back: " + e.message); break;
        case listener_event::kind::relisten_failed:
          fwd.log("listening again failed (trying every second): " + e.message);
          break;
      }
    });
    if (!listening) fail(listening.error());
    unique_fd polled = std::move(*listening);  // empty for an hvsock: listener
    if (::pipe2(stop_pipe, O_CLOEXEC) < 0) fail("pipe: " + std::string(std::strerror(errno)));
    struct sigaction sa {};
    sa.sa_handler = on_stop;
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
    fwd.log("listening on " + from.text + ", forwarding to " + to.text + " (at most " +
            std::to_string(args->max_connections) + " connections)");
    std::uint64_t next_id = 1;
    std::uint64_t refused = 0;    // at the limit, in this episode
    bool accept_failing = false;  // an accept error episode, logged once
    for (;;) {
      // While hvsockd is away the hvsock: listener has no fd (-1: poll skips
      // it) and says when to try again; accept() below makes that try.
      const auto relisten_in = hvsock_listener ? hv_listener->relisten_due_in() : std::nullopt;
      pollfd p[2] = {{hvsock_listener ? hv_listener->native_handle() : polled.get(), POLLIN, 0},
                     {stop_pipe[0], POLLIN, 0}};
      const int ready = ::poll(p, 2, relisten_in ? static_cast<int>(relisten_in->count()) : -1);
      if (ready < 0) {
        if (errno == EINTR) continue;
        fail("poll: " + std::string(std::strerror(errno)));
      }
      if (p[1].revents) break;
      if (!p[0].revents && !relisten_in) continue;
      unique_fd client;
      if (hvsock_listener) {
        auto s = hv_listener->accept(std::chrono::milliseconds(0));
        if (!s) {
          const auto& code = s.error().code();
          if (code == errc::timed_out || code == errc::would_block) continue;
          if (!accept_failing) fwd.log(s.error().message() + "; pausing accepts briefly");
          accept_failing = true;
          if (stop_requested(accept_pause)) break;
          continue;
        }
        client = s->release();
      } else {
        client.reset(::accept4(polled.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!client) {
          const int err = errno;
          // Gone before we took it, or a signal: the next poll decides.
          if (err == EINTR || err == EAGAIN || err == EWOULDBLOCK || err == ECONNABORTED ||
              err == EPROTO)
            continue;
          if (!accept_failing)
            fwd.log("accept on " + from.text + ": " + std::strerror(err) +
                    (resource_shortage(err) ? "; pausing accepts briefly" : "; retrying"));
          accept_failing = true;
          if (stop_requested(accept_pause)) break;
          continue;
        }
      }
      if (accept_failing) {
        fwd.log("accepting again on " + from.text);
        accept_failing = false;
      }
      if (fwd.running() >= args->max_connections) {
        if (refused++ == 0)
          fwd.log("at the limit of " + std::to_string(args->max_connections) +
                  " open connections: new ones are closed at once until one ends");
        refuse(std::move(client));
        continue;
      }
      if (refused > 0) {
        fwd.log("below the limit again; " + std::to_string(refused) +
                " connection(s) were refused meanwhile");
        refused = 0;
      }
      fwd.handle(std::move(client), next_id++);
    }
    fwd.log("stopping: closing the open connections");
    polled.reset();
    hv_listener.reset();
    if (from.type == forward_endpoint::kind::unix_path) ::unlink(from.path.c_str());
    fwd.stop();
  });
}

}  // namespace hvsock::cli
