// hvsock forward --listen ENDPOINT --to ENDPOINT: a port forwarder between
// TCP, Unix sockets and hvsock services. Each accepted connection gets its
// own connection to the target and two copying threads; a side's EOF is
// passed on as a half-close (shutdown of the write side), and blocking
// writes are the backpressure: nothing is buffered beyond one chunk per
// direction. SIGINT/SIGTERM stop accepting, end the open connections and
// exit 0. One log line per connection opened and closed.
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

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
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

result<unique_fd> open_listener(const forward_endpoint& e, const global_options& options,
                                std::optional<listener>& hv_listener) {
  if (e.type == forward_endpoint::kind::hvsock) {
    auto l =
        listener::listen(e.hv, {.backlog = max_backlog, .control_socket = control_socket(options)});
    if (!l) return l.error();
    const int fd = l->native_handle();
    hv_listener.emplace(std::move(*l));
    return unique_fd(::dup(fd));  // polled only; accepting goes through hv_listener
  }
  if (e.type == forward_endpoint::kind::unix_path) {
    unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
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
  unique_fd fd(::socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
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

  void handle(unique_fd client, std::uint64_t id) {
    {
      std::lock_guard g(lock_);
      open_.insert(client.get());
      ++running_;
    }
    std::thread([this, client = std::move(client), id]() mutable {
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
    }).detach();
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
  forward_endpoint to_;
  const global_options& options_;
  std::mutex lock_, log_lock_;
  std::condition_variable done_;
  std::set<int> open_;
  int running_ = 0;
};

}  // namespace

void add_forward_command(CLI::App& app, global_options& options) {
  struct forward_args {
    std::string listen, to;
  };
  auto args = std::make_shared<forward_args>();
  auto* forward = app.add_subcommand(
      "forward", "Forward connections between TCP, Unix sockets and hvsock services");
  forward->add_option("--listen", args->listen, "tcp:HOST:PORT, unix:PATH or hvsock:SERVICE")
      ->required();
  forward->add_option("--to", args->to, "tcp:HOST:PORT, unix:PATH or [hvsock:]VM:SERVICE")
      ->required();
  forward->callback([args, &options] {
    const auto from = parse(args->listen, true, options);
    const auto to = parse(args->to, false, options);
    std::optional<listener> hv_listener;
    auto listening = open_listener(from, options, hv_listener);
    if (!listening) fail(listening.error());
    if (::pipe2(stop_pipe, O_CLOEXEC) < 0) fail("pipe: " + std::string(std::strerror(errno)));
    struct sigaction sa {};
    sa.sa_handler = on_stop;
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
    forwarder fwd(to, options);
    fwd.log("listening on " + from.text + ", forwarding to " + to.text);
    std::uint64_t next_id = 1;
    for (;;) {
      pollfd p[2] = {{listening->get(), POLLIN, 0}, {stop_pipe[0], POLLIN, 0}};
      if (::poll(p, 2, -1) < 0) {
        if (errno == EINTR) continue;
        fail("poll: " + std::string(std::strerror(errno)));
      }
      if (p[1].revents) break;
      if (!(p[0].revents & POLLIN)) continue;
      unique_fd client;
      if (hv_listener) {
        auto s = hv_listener->accept(std::chrono::milliseconds(0));
        if (!s) continue;
        client = s->release();
      } else {
        client.reset(::accept4(listening->get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!client) continue;
      }
      fwd.handle(std::move(client), next_id++);
    }
    fwd.log("stopping: closing the open connections");
    listening->reset();
    hv_listener.reset();
    if (from.type == forward_endpoint::kind::unix_path) ::unlink(from.path.c_str());
    fwd.stop();
  });
}

}  // namespace hvsock::cli
