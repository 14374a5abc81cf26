#include "daemon/hybrid_vm.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <fmt/format.h>

#include <cerrno>
#include <utility>

#include "daemon/socket_broker.hpp"
#include "protocol/hybrid_vsock.hpp"
#include "sys/socket_ops.hpp"

namespace hvsock::daemon {

hybrid_vm::hybrid_vm(event_loop& loop, client_gate& gate, std::string name, std::string vmm_socket,
                     socket_file_options sockets, guest_connect on_guest_connect, log_function log,
                     std::chrono::milliseconds handshake_timeout)
    : loop_(loop),
      gate_(gate),
      name_(std::move(name)),
      vmm_socket_(std::move(vmm_socket)),
      sockets_(sockets),
      on_guest_connect_(std::move(on_guest_connect)),
      log_(std::move(log)),
      handshake_timeout_(handshake_timeout),
      handshakes_(loop) {}

hybrid_vm::~hybrid_vm() {
  handshakes_.clear();
  listeners_.clear();  // each removes its socket file
}

bool hybrid_vm::vmm_socket_present() const {
  struct stat st {};
  return ::stat(vmm_socket_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

std::string hybrid_vm::port_socket(std::uint32_t port) const {
  return fmt::format("{}_{}", vmm_socket_, port);
}

void hybrid_vm::connect(std::uint32_t guest_port, unique_fd stream, answer done) {
  auto refuse = [&](failure why) { done(std::move(why), unique_fd()); };
  if (!stream) {
    stream.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!stream) return refuse(make_system_error(errno, "socket"));
  } else if (auto ok = socket_broker::check_client(stream.get()); !ok) {
    return refuse(ok.error());
  }
  auto addr = detail::unix_address(vmm_socket_);
  if (!addr) return refuse(addr.error());
  // Never wait in connect (a VMM whose backlog is full): non-blocking for
  // the call only, as the socket may be the application's own.
  const int flags = ::fcntl(stream.get(), F_GETFL);
  (void)::fcntl(stream.get(), F_SETFL, flags | O_NONBLOCK);
  int rc;
  do {
    rc = ::connect(stream.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr);
  } while (rc < 0 && errno == EINTR);
  const int connect_errno = errno;
  (void)::fcntl(stream.get(), F_SETFL, flags);
  if (rc < 0) {
    if (connect_errno == EAGAIN)
      return refuse(failure(errc::backlog_full,
                            fmt::format("the VMM's vsock socket {} is not taking connections "
                                        "(its backlog is full)",
                                        vmm_socket_)));
    if (connect_errno == EISCONN)
      return refuse(failure(errc::invalid_argument, "the socket is already connected"));
    return refuse(failure(errc::connection_refused,
                          fmt::format("the VMM's vsock socket {}: {} (is the VM running?)",
                                      vmm_socket_, std::strerror(connect_errno))));
  }
  const std::string line = detail::hybrid_connect_line(guest_port);
  if (::send(stream.get(), line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT) !=
      static_cast<ssize_t>(line.size()))
    return refuse(failure(errc::connection_refused,
                          fmt::format("the VMM's vsock socket {} took no CONNECT line: {}",
                                      vmm_socket_, std::strerror(errno))));

  auto waiting = handshakes_.add(
      std::move(stream), handshake_timeout_,
      [this, guest_port, done](result<std::string> answer_line, unique_fd answered) {
        auto host_port = host_port_of(guest_port, std::move(answer_line));
        if (!host_port) answered.reset();
        done(std::move(host_port), std::move(answered));
      });
  if (!waiting) done(waiting.error(), unique_fd());
}

result<std::uint32_t> hybrid_vm::host_port_of(std::uint32_t guest_port,
                                              result<std::string> line) const {
  if (!line && line.error().code() == errc::timed_out)
    return failure(errc::timed_out, fmt::format("VM \"{}\" did not answer CONNECT {} within {} ms",
                                                name_, guest_port, handshake_timeout_.count()));
  // A close without OK is how the VMM refuses (nothing listens there).
  if (!line)
    return failure(errc::connection_refused, fmt::format("VM \"{}\" refused port {} ({})", name_,
                                                         guest_port, line.error().message()));
  auto host_port = detail::parse_hybrid_ok(*line);
  if (!host_port)
    return failure(errc::protocol_error,
                   fmt::format("VM \"{}\": the VMM answered CONNECT {} with a line that is not "
                               "\"OK <port>\"",
                               name_, guest_port));
  return *host_port;
}

bool hybrid_vm::another_listener_at(const std::string& path) {
  // The kernel's table says so without a connect, which the program would
  // see. Where it cannot tell (no table, a listener bound by a relative
  // path) or shows none (the listener may be in another network namespace,
  // which the table does not show), a connect decides: refused means
  // nobody listens, and a stale socket is what nobody sees being probed.
  if (detail::unix_listener_at(path) == detail::unix_listener_state::listening) return true;
  auto addr = detail::unix_address(path);
  if (!addr) return false;
  unique_fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!probe) return true;  // cannot tell: leave it alone
  int rc;
  do {
    rc = ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr);
  } while (rc < 0 && errno == EINTR);
  // ECONNREFUSED: a socket file nobody listens on. Anything else (accepted,
  // a full backlog, no permission) is a socket that is not ours to take.
  return !(rc < 0 && (errno == ECONNREFUSED || errno == ENOENT));
}

void hybrid_vm::set_ports(const std::set<std::uint32_t>& ports) {
  for (auto it = listeners_.begin(); it != listeners_.end();)
    it = ports.contains(it->first) ? std::next(it) : listeners_.erase(it);
  std::erase_if(foreign_ports_, [&](const auto& entry) { return !ports.contains(entry.first); });
  for (std::uint32_t port : ports) {
    if (listeners_.contains(port)) continue;
    // A host program may listen there itself (the VMM's users do): never
    // take a live socket from it. A stale one (its program is gone) is
    // replaced.
    struct stat st {};
    if (::stat(port_socket(port).c_str(), &st) == 0 && S_ISSOCK(st.st_mode) &&
        another_listener_at(port_socket(port))) {
      auto [known, added] = foreign_ports_.try_emplace(port, st.st_ino);
      if (!added && known->second == st.st_ino) continue;  // said so about this file
      known->second = st.st_ino;
      log_(log_level::warning,
           fmt::format("{}: another program listens at {}; the guest's connects to port {} go "
                       "to it, not to hvsock listeners",
                       name_, port_socket(port), port));
      continue;
    }
    auto listener =
        socket_listener::open(loop_, gate_, port_socket(port), SOCK_STREAM, sockets_,
                              fmt::format("{}: guest port listener {}", name_, port_socket(port)),
                              log_, [this, port](unique_fd stream) -> result<void> {
                                gate_.release();  // handed on at once: not a client of ours
                                // A listener gets a blocking stream, as from any other connect.
                                const int flags = ::fcntl(stream.get(), F_GETFL);
                                (void)::fcntl(stream.get(), F_SETFL, flags & ~O_NONBLOCK);
                                on_guest_connect_(port, std::move(stream));
                                return {};
                              });
    if (!listener) {
      log_(log_level::warning,
           fmt::format("{}: cannot listen for the guest's connects to port {}: {}", name_, port,
                       listener.error().message()));
      continue;
    }
    foreign_ports_.erase(port);
    listeners_.emplace(port, std::move(*listener));
  }
}

std::set<std::uint32_t> hybrid_vm::ports() const {
  std::set<std::uint32_t> out;
  for (const auto& [port, l] : listeners_) out.insert(port);
  return out;
}

}  // namespace hvsock::daemon
