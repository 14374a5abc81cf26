// emulation: the vsock / AF_HYPERV calls on top of hvsockd's control protocol.
#include "preload/emulation.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/sockios.h>
#include <linux/vm_sockets.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <utility>

#include <hvsock/listener.hpp>

#include "preload/real_calls.hpp"
#include "protocol/control_client.hpp"
#include "protocol/control_wire.hpp"
#include "protocol/runtime_paths.hpp"
#include "sys/fd_passing.hpp"
#include "sys/socket_ops.hpp"

namespace hvsock::preload {
namespace wire = detail::wire;
namespace {

using namespace std::chrono_literals;

// The reference's HVSOCKET options (SOL_SOCKET's numbers on Linux: see
// docs/compatibility.md for how the two are told apart).
constexpr int hvsocket_connect_timeout = 1;
constexpr int hvsocket_container_passthru = 2;
constexpr int hvsocket_connected_suspend = 4;
constexpr std::uint32_t hvsocket_connect_timeout_max_ms = 300000;

// Linux picks ephemeral vsock ports above the reserved range.
constexpr std::uint32_t last_reserved_port = 1023;
constexpr int ephemeral_tries = 64;

// How long a bind or listen may wait for hvsockd.
constexpr auto daemon_reply_limit = 5000ms;

int fail(int err) {
  errno = err;
  return -1;
}

// hvsockd not answering is worth a line on stderr: a program under the shim
// would otherwise only see an errno it cannot explain.
void report_daemon_problem(const char* message) {
  static std::atomic<bool> reported{false};
  if (!reported.exchange(true)) std::fprintf(stderr, "hvsock-preload: %s\n", message);
}

// `problem` is what to report if the code says hvsockd is not answering.
int errno_for(const std::error_code& code, const char* problem) {
  if (code.category() == std::system_category()) return code.value();
  if (code.category() != hvsock_category()) return EIO;
  switch (static_cast<errc>(code.value())) {
    // Refusals reach a vsock connector as an RST: ECONNRESET, as the
    // kernel's virtio transport reports it.
    case errc::connection_refused:
    case errc::service_not_registered:
    case errc::service_disabled:
    case errc::backlog_full: return ECONNRESET;
    case errc::network_unreachable:
    case errc::unknown_partition:
    case errc::parent_on_host: return ENETUNREACH;
    case errc::address_in_use: return EADDRINUSE;
    case errc::broadcast_not_allowed: return EADDRNOTAVAIL;
    case errc::timed_out: return ETIMEDOUT;
    case errc::daemon_unavailable: report_daemon_problem(problem); return ENETDOWN;
    case errc::permission_denied: return EACCES;
    case errc::limit_reached: return ENOBUFS;
    case errc::invalid_argument:
    case errc::no_vsock_port:
    case errc::invalid_guid: return EINVAL;
    default: return EIO;
  }
}

int errno_for(const failure& f) { return errno_for(f.code(), f.message().c_str()); }

int fail(const failure& f) { return fail(errno_for(f)); }

std::chrono::milliseconds timeout_of(const timeval& tv) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec));
}

// The reply on `control`, waiting at most `limit`: 0, or the errno for its
// error. Nothing is allocated on the way, whatever the answer (the calls
// run in forked children of threaded programs too). Replies the shim waits
// for carry no fd; any is closed.
// Set while this thread waits on hvsockd inside the shim: the poll it
// makes then is the shim's own, not the program's, and must not settle
// pending connects (emulated_poll_prologue) under the lock it holds.
thread_local bool inside_shim_wait = false;

struct shim_wait {
  bool was = inside_shim_wait;
  shim_wait() { inside_shim_wait = true; }
  ~shim_wait() { inside_shim_wait = was; }
  shim_wait(const shim_wait&) = delete;
  shim_wait& operator=(const shim_wait&) = delete;
};

int await_reply(int control, std::chrono::milliseconds limit, wire::reply& reply) {
  shim_wait waiting;
  const std::error_code error = detail::read_reply(control, limit, reply);
  return error ? errno_for(error, "hvsockd closed a control connection") : 0;
}

// The process's control socket, found when the shim loads (a string built
// per call would be an allocation per call).
const std::string* control_socket = nullptr;

result<unique_fd> open_control() {
  if (control_socket == nullptr) return detail::open_control(detail::process_control_socket());
  return detail::open_control(*control_socket);
}

socket_type type_of(int kernel_type) {
  return kernel_type == SOCK_SEQPACKET ? socket_type::seqpacket : socket_type::stream;
}

// A bind_request with backlog 0 on `control`: the address is reserved for
// as long as that connection stays open, for a listener of `type` (the
// kernel's type, SOCK_STREAM or SOCK_SEQPACKET). 0, or the errno.
int reserve_on(int control, const endpoint& local, int type) {
  auto request = wire::make<wire::bind_request>(wire::message_type::bind_request);
  request.local = wire::to_raw(local);
  request.backlog = 0;
  request.socket_type = wire::to_wire(type_of(type));
  if (auto sent = detail::send_message(control, wire::as_bytes(request)); !sent)
    return errno_for(sent.error());
  wire::reply reply{};
  return await_reply(control, daemon_reply_limit, reply);
}

// The same on a new control connection, kept in `held`.
int reserve(const endpoint& local, int type, unique_fd& held) {
  auto control = open_control();
  if (!control) return errno_for(control.error());
  if (const int err = reserve_on(control->get(), local, type)) return err;
  held = std::move(*control);
  return 0;
}

std::uint32_t random_ephemeral_port() {
  static thread_local std::mt19937 rng{std::random_device{}()};
  return std::uniform_int_distribution<std::uint32_t>(last_reserved_port + 1, 0x7fffffff)(rng);
}

// Copies `addr` (of `size` bytes) out as getsockname(2) does: truncated to
// the caller's buffer, with the full size reported.
int copy_out(const void* addr, socklen_t size, sockaddr* out, socklen_t* len) {
  if (out == nullptr || len == nullptr) return fail(EFAULT);
  std::memcpy(out, addr, std::min(*len, size));
  *len = size;
  return 0;
}

int report_address(const emulated_socket& s, const vsock_address& vsock, const endpoint& ep,
                   sockaddr* out, socklen_t* len) {
  if (s.family == AF_VSOCK) {
    sockaddr_vm addr{};
    addr.svm_family = AF_VSOCK;
    addr.svm_cid = vsock.cid;
    addr.svm_port = vsock.port;
    return copy_out(&addr, sizeof addr, out, len);
  }
  const sockaddr_hv addr = to_sockaddr_hv(ep);
  return copy_out(&addr, sizeof addr, out, len);
}

std::uint32_t port_of(const service_id& service) {
  auto port = port_from_service_id(service);
  return port ? *port : VMADDR_PORT_ANY;
}

// Once hvsockd has connected the socket, a failed connect cannot leave it
// unconnected; a fresh socket with the same flags takes its place, as
// after a refused kernel connect the socket is unconnected again.
void renew_if_connected(int fd, int type) {
  sockaddr_storage peer{};
  socklen_t len = sizeof peer;
  if (real::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) return;
  const int status = real::fcntl_int(fd, F_GETFL, 0);
  const int fd_flags = real::fcntl_int(fd, F_GETFD, 0);
  const int fresh = real::socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
  if (fresh < 0) return;
  real::dup3(fresh, fd, (fd_flags & FD_CLOEXEC) ? O_CLOEXEC : 0);
  real::close(fresh);
  if (status >= 0) real::fcntl_int(fd, F_SETFL, status);
}

template <class T>
int get_value(const T& value, void* out, socklen_t* len) {
  if (out == nullptr || len == nullptr) return fail(EFAULT);
  if (*len < sizeof(T)) return fail(EINVAL);
  std::memcpy(out, &value, sizeof(T));
  *len = sizeof(T);
  return 0;
}

template <class T>
bool read_value(const void* in, socklen_t len, T& value) {
  if (in == nullptr || len < sizeof(T)) return false;
  std::memcpy(&value, in, sizeof(T));
  return true;
}

// As the kernel's vsock_update_buffer_size since "vsock: fix buffer size
// clamping order": the minimum first, then the maximum, which wins.
void update_buffer_size(emulated_socket& s, std::uint64_t wanted) {
  if (wanted < s.buffer_min) wanted = s.buffer_min;
  if (wanted > s.buffer_max) wanted = s.buffer_max;
  s.buffer_size = wanted;
}

// A sockaddr_vm from the application, checked as the kernel's
// vsock_addr_cast/vsock_addr_validate do; bind and connect turn every
// problem but a NULL pointer into EINVAL.
int parse_vsock_address(const sockaddr* addr, socklen_t len, sockaddr_vm& out) {
  if (addr == nullptr) return EFAULT;
  if (len < sizeof(sockaddr_vm)) return EINVAL;
  std::memcpy(&out, addr, sizeof out);
  if (out.svm_family != AF_VSOCK) return EINVAL;
  if (out.svm_flags & ~VMADDR_FLAG_TO_HOST) return EINVAL;
  return 0;
}

constexpr timeval default_connect_timeout{2, 0};

// Linux refuses an AF_UNIX SOCK_SEQPACKET message larger than the send
// buffer less 32 bytes (unix_dgram_sendmsg).
constexpr std::uint64_t unix_send_overhead = 32;

// Makes the AF_UNIX send buffer of a connected seqpacket socket take a
// message of `message` bytes: raised, never lowered (hvsockd sized it for
// 1 MiB messages already). SO_SNDBUFFORCE needs CAP_NET_ADMIN; SO_SNDBUF
// stops at net.core.wmem_max (the kernel doubles the value set).
void size_send_buffer(int fd, std::uint64_t message) {
  int have = 0;
  socklen_t len = sizeof have;
  if (real::getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &have, &len) != 0) return;
  if (have > 0 && static_cast<std::uint64_t>(have) >= message + unix_send_overhead) return;
  const int want = static_cast<int>(
      std::min<std::uint64_t>((message + unix_send_overhead + 4096) / 2, INT_MAX / 2));
  if (real::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &want, sizeof want) != 0)
    (void)real::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &want, sizeof want);
}

// The fd an MSG_EOR message carries as its marker: /dev/null, opened on
// first use, at a high number out of the program's way. A program that
// closes it (closefrom) gets a new one at the next send.
std::atomic<int> eor_marker{-1};
constexpr int eor_marker_lowest = 512;

int eor_marker_fd() {
  int fd = eor_marker.load(std::memory_order_acquire);
  if (fd >= 0) return fd;
  fd = real::openat(AT_FDCWD, "/dev/null", O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (const int high = real::fcntl_int(fd, F_DUPFD_CLOEXEC, eor_marker_lowest); high >= 0) {
    real::close(fd);
    fd = high;
  }
  int expected = -1;
  if (!eor_marker.compare_exchange_strong(expected, fd, std::memory_order_acq_rel)) {
    real::close(fd);  // another thread made one meanwhile
    return expected;
  }
  return fd;
}

ssize_t send_marked(int fd, msghdr& out, int flags, bool eor) {
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  for (int attempt = 0;; ++attempt) {
    out.msg_control = nullptr;
    out.msg_controllen = 0;
    const int marker = eor ? eor_marker_fd() : -1;
    if (marker >= 0) {
      out.msg_control = control;
      out.msg_controllen = sizeof control;
      cmsghdr* c = CMSG_FIRSTHDR(&out);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(c), &marker, sizeof marker);
    }
    const ssize_t n = real::sendmsg(fd, &out, flags);
    if (n >= 0 || marker < 0 || attempt > 1) return n;
    if (errno == EBADF && real::fcntl_int(fd, F_GETFD, 0) >= 0) {
      // The program closed the marker: make a new one.
      int stale = marker;
      eor_marker.compare_exchange_strong(stale, -1, std::memory_order_acq_rel);
      continue;
    }
    // Too many fds in flight for this user (RLIMIT_NOFILE, without
    // CAP_SYS_RESOURCE): the message goes, its MSG_EOR does not.
    if (errno == ETOOMANYREFS) {
      eor = false;
      continue;
    }
    return n;
  }
}

}  // namespace

void prepare_emulation() {
  socket_table::instance();  // and its fork handlers
  (void)hvsock_category();   // a function-local static too
  control_socket = new std::string(detail::process_control_socket());  // never freed
}

std::uint32_t own_cid() {
  if (const char* v = std::getenv("HVSOCK_CID"); v != nullptr && *v != '\0')
    return static_cast<std::uint32_t>(std::strtoul(v, nullptr, 10));
  return VMADDR_CID_HOST;
}

int emulated_socket_call(int domain, int type, int protocol) {
  const int flags = type & (SOCK_NONBLOCK | SOCK_CLOEXEC);
  const int base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (domain == AF_VSOCK) {
    if (protocol != 0 && protocol != PF_VSOCK) return fail(EPROTONOSUPPORT);
    // No SOCK_DGRAM (docs/compatibility.md): as a kernel without a
    // datagram transport.
    if (base != SOCK_STREAM && base != SOCK_SEQPACKET) return fail(ESOCKTNOSUPPORT);
  } else {
    if (base != SOCK_STREAM) return fail(ESOCKTNOSUPPORT);
    if (protocol != hv_protocol_raw && protocol != 0) return fail(EPROTONOSUPPORT);
  }
  // A stream is an AF_UNIX stream, a seqpacket socket an AF_UNIX seqpacket
  // socket: data calls go to the kernel as they are.
  const int fd = real::socket(AF_UNIX, base | flags, 0);
  if (fd < 0) return -1;
  auto s = socket_table::instance().make_socket();
  s->family = domain;
  s->type = base;
  socket_table::instance().set(fd, std::move(s));
  return fd;
}

int emulated_bind(emulated_socket& s, const sockaddr* addr, socklen_t len) {
  std::lock_guard guard(s.lock);
  if (addr == nullptr) return fail(EFAULT);
  if (s.state != socket_state::unbound) return fail(EINVAL);
  if (s.family == AF_VSOCK) {
    sockaddr_vm want;
    if (const int err = parse_vsock_address(addr, len, want)) return fail(err);
    if (want.svm_cid != VMADDR_CID_ANY && want.svm_cid != VMADDR_CID_LOCAL &&
        want.svm_cid != own_cid())
      return fail(EADDRNOTAVAIL);
    // Every connection to this partition is addressed to its CID, so any
    // CID it may bind means "whoever may reach this partition".
    const bool any_port = want.svm_port == VMADDR_PORT_ANY;
    int err = 0;
    for (int i = 0; i < (any_port ? ephemeral_tries : 1); ++i) {
      const std::uint32_t port = any_port ? random_ephemeral_port() : want.svm_port;
      const endpoint local{vm_id_wildcard, service_id_from_port(port)};
      unique_fd held;
      err = reserve(local, s.type, held);
      if (err == 0) {
        s.reservation = held.release();
        s.state = socket_state::bound;
        s.local_vsock = {want.svm_cid, port};
        s.local = local;
        return 0;
      }
      if (err != EADDRINUSE) break;
    }
    return fail(err);
  }
  auto local = endpoint_from_sockaddr_hv(addr, len);
  if (!local) return fail(len < sizeof(sockaddr_hv) ? EINVAL : EAFNOSUPPORT);
  unique_fd held;
  if (const int err = reserve(*local, s.type, held)) return fail(err);
  s.reservation = held.release();
  s.state = socket_state::bound;
  s.local = *local;
  s.local_vsock = {VMADDR_CID_ANY, port_of(local->service)};
  return 0;
}

// Makes `held` (a control connection holding s.local) a listener with
// `backlog` and puts it in the application's fd, keeping that fd's flags.
// Called with s.lock held.
int listen_on(int fd, emulated_socket& s, int held, std::uint32_t backlog) {
  auto request = wire::make<wire::listen_request>(wire::message_type::listen_request);
  request.backlog = backlog;
  if (auto sent = detail::send_message(held, wire::as_bytes(request)); !sent)
    return errno_for(sent.error());
  wire::reply reply{};
  if (const int err = await_reply(held, daemon_reply_limit, reply)) return err;
  const int status = real::fcntl_int(fd, F_GETFL, 0);
  const int fd_flags = real::fcntl_int(fd, F_GETFD, 0);
  if (real::dup3(held, fd, (fd_flags & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0) return errno;
  if (status >= 0) real::fcntl_int(fd, F_SETFL, status & O_NONBLOCK);
  s.state = socket_state::listening;
  s.backlog = backlog;
  return 0;
}

int emulated_listen(int fd, emulated_socket& s, int backlog) {
  std::lock_guard guard(s.lock);
  if (s.state == socket_state::listening) return 0;  // a new backlog: kept as it was
  if (s.state != socket_state::bound) return fail(EINVAL);
  // Linux's vsock takes one connection more than the backlog (its accept
  // queue is full only above it).
  const auto queue = static_cast<std::uint32_t>(std::clamp(backlog, 0, max_backlog - 1) + 1);
  // The reservation becomes the application's fd.
  if (const int err = listen_on(fd, s, s.reservation, queue)) return fail(err);
  // Forgotten before it is closed: a child forked in between must not
  // close the number again later, when it may be another fd.
  real::close(std::exchange(s.reservation, -1));
  return 0;
}

// One attempt of listen_again: 0 once listening again (or another thread
// did), EAGAIN while hvsockd is not back, else the errno that ends it.
int try_listen_again(int fd, emulated_socket& s, std::uint64_t seen) {
  std::lock_guard guard(s.lock);
  if (s.state != socket_state::listening) return EINVAL;
  if (s.listen_generation != seen) return 0;
  auto control = open_control();
  if (!control) return EAGAIN;
  int err = reserve_on(control->get(), s.local, s.type);
  if (err == 0) err = listen_on(fd, s, control->get(), s.backlog);
  if (err == 0) {
    ++s.listen_generation;
    return 0;
  }
  // Lost on the way: the old hvsockd was still dying when we connected.
  if (err == ENETDOWN || err == ECONNRESET || err == EPIPE) return EAGAIN;
  // The address was taken meanwhile, or hvsockd refuses it now: this
  // socket no longer listens (accept then says EINVAL).
  s.state = socket_state::unbound;
  std::fprintf(stderr, "hvsock-preload: listening again after hvsockd restarted: %s\n",
               std::strerror(err));
  return err;
}

// hvsockd closed the listener's control connection: it was stopped or
// restarted, and the address is free again. Listens again on the same
// address and backlog, as libhvsock's listen_options::relisten does, so a
// server under the shim serves again by itself. While hvsockd is away a
// blocking accept pauses (20 ms doubling to 500 ms) and says EINTR; a
// non-blocking one says EAGAIN. Without this every accept would fail at
// once, and servers that retry (socat) would spin. `seen` is the generation
// the caller's read saw EOF on: another thread may have listened again
// meanwhile.
int listen_again(int fd, emulated_socket& s, std::uint64_t seen, bool blocking) {
  const int err = try_listen_again(fd, s, seen);
  std::chrono::milliseconds pause{};
  {
    std::lock_guard guard(s.lock);
    if (err != EAGAIN) {
      if (err == 0 && std::exchange(s.relisten_said, false))
        std::fprintf(stderr, "hvsock-preload: hvsockd is back; listening again\n");
      s.relisten_delay_ms = 0;
      return err;
    }
    if (!blocking) return EAGAIN;
    if (!std::exchange(s.relisten_said, true))
      std::fprintf(stderr, "hvsock-preload: hvsockd went away; a listener waits for it\n");
    s.relisten_delay_ms = std::clamp<std::uint32_t>(s.relisten_delay_ms * 2, 20, 500);
    pause = std::chrono::milliseconds(s.relisten_delay_ms);
  }
  // One pause per call, then EINTR: the program's own loop runs between
  // tries, so a signal it handled meanwhile is never lost in a wait of ours
  // (socat acts on SIGTERM only once accept returns). Programs retry accept
  // on EINTR.
  const timespec ts{0, std::chrono::nanoseconds(pause).count()};
  (void)::nanosleep(&ts, nullptr);
  return EINTR;
}

int emulated_accept(int fd, emulated_socket& s, sockaddr* addr, socklen_t* len, int flags) {
  if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) return fail(EINVAL);
  int family = 0, type = SOCK_STREAM;
  std::uint64_t buffer_size = 0, buffer_min = 0, buffer_max = 0;
  {
    std::lock_guard guard(s.lock);
    if (s.state != socket_state::listening) return fail(EINVAL);
    family = s.family;
    type = s.type;
    // An accepted socket inherits its listener's buffer sizes, as in the kernel.
    buffer_size = s.buffer_size;
    buffer_min = s.buffer_min;
    buffer_max = s.buffer_max;
  }
  // Not under the socket's lock: a blocking accept must not stop others.
  std::array<std::byte, wire::max_message_size + 1> buf{};
  detail::received_message message;
  for (;;) {
    std::uint64_t generation = 0;
    {
      std::lock_guard guard(s.lock);
      generation = s.listen_generation;
    }
    auto got = detail::receive_message(fd, buf);
    // A reset is hvsockd going away too, with our last ack still unread.
    const bool reset =
        !got && got.error().code() == std::error_code(ECONNRESET, std::system_category());
    if (!got && !reset) {
      if (got.error().code() == make_error_code(errc::would_block)) return fail(EAGAIN);
      return fail(got.error());
    }
    if (!reset && got->size != 0) {
      message = std::move(*got);
      break;
    }
    const bool blocking = (real::fcntl_int(fd, F_GETFL, 0) & O_NONBLOCK) == 0;
    if (const int err = listen_again(fd, s, generation, blocking)) return fail(err);
  }
  auto incoming = wire::decode<wire::incoming>(std::span(buf.data(), message.size),
                                               wire::message_type::incoming);
  if (!incoming || !message.fd) return fail(EPROTO);
  const auto ack = wire::make<wire::accepted>(wire::message_type::accepted);
  (void)detail::send_message(fd, wire::as_bytes(ack), -1, MSG_DONTWAIT);

  unique_fd stream = std::move(message.fd);  // arrives CLOEXEC
  if (!(flags & SOCK_CLOEXEC)) real::fcntl_int(stream.get(), F_SETFD, 0);
  if (flags & SOCK_NONBLOCK) {
    const int status = real::fcntl_int(stream.get(), F_GETFL, 0);
    real::fcntl_int(stream.get(), F_SETFL, status | O_NONBLOCK);
  }
  auto accepted = socket_table::instance().make_socket();
  accepted->family = family;
  accepted->type = type;
  accepted->state = socket_state::connected;
  accepted->local = wire::from_raw(incoming->local);
  accepted->peer = wire::from_raw(incoming->peer);
  accepted->local_vsock = {incoming->local_cid, port_of(accepted->local.service)};
  accepted->peer_vsock = {incoming->peer_cid, port_of(accepted->peer.service)};
  accepted->buffer_size = buffer_size;
  accepted->buffer_min = buffer_min;
  accepted->buffer_max = buffer_max;
  if (type == SOCK_SEQPACKET) {
    size_send_buffer(stream.get(), buffer_size);
    accepted->message_data.store(true, std::memory_order_release);
  }
  const int new_fd = stream.release();
  socket_table::instance().set(new_fd, accepted);
  if (addr != nullptr && len != nullptr)
    (void)report_address(*accepted, accepted->peer_vsock, accepted->peer, addr, len);
  return new_fd;
}

namespace {

// hvsockd's answer to the connect of `fd`: 0 (connected) or the errno of
// its refusal. With s.lock held.
void finish_connect(int fd, emulated_socket& s, const vsock_address& peer_vsock,
                    const wire::reply& reply, int err) {
  if (err != 0) {
    if (fd >= 0) renew_if_connected(fd, s.type);
    s.state = socket_state::unbound;
    return;
  }
  s.state = socket_state::connected;
  s.local = wire::from_raw(reply.local);
  s.peer = wire::from_raw(reply.peer);
  // Linux leaves an autobound connector's CID at VMADDR_CID_ANY; a bound
  // one keeps the CID it bound.
  s.local_vsock.port = port_of(s.local.service);
  s.peer_vsock =
      s.family == AF_VSOCK ? peer_vsock : vsock_address{reply.peer_cid, port_of(s.peer.service)};
  if (s.type == SOCK_SEQPACKET) {
    if (fd >= 0) size_send_buffer(fd, s.buffer_size);
    s.message_data.store(true, std::memory_order_release);
  }
}

// A pending non-blocking connect: reads hvsockd's answer if it comes
// within `wait`, and then the socket is connected, or unconnected with the
// refusal in SO_ERROR. No answer within the connect timeout (wait =
// s.connect_timeout) is ETIMEDOUT, as the kernel's. With s.lock held.
void settle_connect(emulated_socket& s, std::chrono::milliseconds wait) {
  if (s.state != socket_state::connecting) return;
  wire::reply reply{};
  int err = 0;
  {
    shim_wait waiting;
    const std::error_code error = detail::read_reply(s.connect_control, wait, reply);
    if (error == make_error_code(errc::timed_out) && wait < timeout_of(s.connect_timeout)) return;
    if (error) err = errno_for(error, "hvsockd closed a control connection");
  }
  real::close(std::exchange(s.connect_control, -1));
  s.connect_pending.store(false, std::memory_order_release);
  pending_connect_count.fetch_sub(1, std::memory_order_relaxed);
  // The fd the connect was made on, unless the program closed it since
  // (then its number may be another file now, which must not be touched).
  int fd = s.connect_fd;
  if (socket_table::instance().find(fd).get() != &s) fd = -1;
  finish_connect(fd, s, s.connect_peer, reply, err);
  if (err != 0) s.pending_error = err;
}

}  // namespace

void settle_pending_connects() {
  if (pending_connect_count.load(std::memory_order_relaxed) == 0 || inside_shim_wait) return;
  shim_wait waiting;
  std::array<std::shared_ptr<emulated_socket>, 64> pending;
  const std::size_t n = socket_table::instance().pending_connects(pending.data(), pending.size());
  for (std::size_t i = 0; i < n; ++i) {
    emulated_socket& s = *pending[i];
    // Another thread working on it (its own connect, say) answers for it.
    if (!s.lock.try_lock()) continue;
    settle_connect(s, timeout_of(s.connect_timeout));
    s.lock.unlock();
  }
}

int emulated_connect(int fd, emulated_socket& s, const sockaddr* addr, socklen_t len) {
  std::lock_guard guard(s.lock);
  if (addr == nullptr) return fail(EFAULT);
  const bool non_blocking = real::fcntl_int(fd, F_GETFL, 0) & O_NONBLOCK;
  if (s.state == socket_state::connecting) {
    // As the kernel's: a blocking connect waits for the pending one; a
    // non-blocking one says EALREADY while it is pending (the first time
    // always: the answer has not been read yet), EISCONN once connected.
    if (non_blocking && !std::exchange(s.connect_repeated, true)) return fail(EALREADY);
    settle_connect(s, non_blocking ? std::chrono::milliseconds(0) : timeout_of(s.connect_timeout));
    if (s.state == socket_state::connecting) return fail(EALREADY);
    if (s.state == socket_state::connected) return non_blocking ? fail(EISCONN) : 0;
    // Refused meanwhile: the kernel says EALREADY and SO_ERROR the reason.
    return non_blocking ? fail(EALREADY) : fail(std::exchange(s.pending_error, 0));
  }
  if (s.state == socket_state::connected) return fail(EISCONN);
  if (s.state == socket_state::listening) return fail(EINVAL);
  auto request =
      wire::make<wire::connect_socket_request>(wire::message_type::connect_socket_request);
  request.socket_type = wire::to_wire(type_of(s.type));
  vsock_address peer_vsock;
  if (s.family == AF_VSOCK) {
    sockaddr_vm to;
    if (const int err = parse_vsock_address(addr, len, to)) return fail(err);
    request.flags = wire::target_by_cid;
    request.target_cid = to.svm_cid;
    request.target = wire::to_raw({vm_id_wildcard, service_id_from_port(to.svm_port)});
    peer_vsock = {to.svm_cid, to.svm_port};
  } else {
    auto to = endpoint_from_sockaddr_hv(addr, len);
    if (!to) return fail(len < sizeof(sockaddr_hv) ? EINVAL : EAFNOSUPPORT);
    request.target = wire::to_raw(*to);
  }
  if (s.state == socket_state::bound) {
    if (auto port = port_from_service_id(s.local.service)) {
      request.flags |= wire::local_port_given;
      request.local_port = *port;
    }
    // The connection, not the reservation, holds the port from now on.
    real::close(std::exchange(s.reservation, -1));
  }
  auto control = open_control();
  if (!control) return fail(control.error());
  if (auto sent = detail::send_message(control->get(), wire::as_bytes(request), fd); !sent)
    return fail(sent.error());
  if (non_blocking) {
    // EINPROGRESS, as from the kernel; hvsockd's answer is read later, by
    // the next call that needs it (settle_connect): a connect, SO_ERROR,
    // getpeername, getsockname, shutdown, or a poll, select or epoll_wait
    // of the process (docs/compatibility.md).
    s.connect_control = control->release();
    s.connect_fd = fd;
    s.connect_peer = peer_vsock;
    s.connect_repeated = false;
    s.pending_error = 0;
    s.state = socket_state::connecting;
    pending_connect_count.fetch_add(1, std::memory_order_relaxed);
    s.connect_pending.store(true, std::memory_order_release);
    return fail(EINPROGRESS);
  }
  wire::reply reply{};
  const int err = await_reply(control->get(), timeout_of(s.connect_timeout), reply);
  finish_connect(fd, s, peer_vsock, reply, err);
  return err != 0 ? fail(err) : 0;
}

int emulated_getsockname(emulated_socket& s, sockaddr* addr, socklen_t* len) {
  std::lock_guard guard(s.lock);
  settle_connect(s, timeout_of(s.connect_timeout));
  return report_address(s, s.local_vsock, s.local, addr, len);
}

int emulated_getpeername(emulated_socket& s, sockaddr* addr, socklen_t* len) {
  std::lock_guard guard(s.lock);
  settle_connect(s, timeout_of(s.connect_timeout));
  // After its own shutdown (any direction) Linux's vsock is disconnecting.
  if (s.state != socket_state::connected || s.shut_down) return fail(ENOTCONN);
  return report_address(s, s.peer_vsock, s.peer, addr, len);
}

int emulated_shutdown(int fd, emulated_socket& s, int how) {
  {
    std::lock_guard guard(s.lock);
    if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR) return fail(EINVAL);
    settle_connect(s, timeout_of(s.connect_timeout));
    // A listening fd is the shim's control connection: never shut it down.
    if (s.state != socket_state::connected) return fail(ENOTCONN);
    s.shut_down = true;
    if (how != SHUT_RD) s.write_shut = true;
  }
  return real::shutdown(fd, how);
}

int emulated_getsockopt(emulated_socket& s, int level, int name, void* value, socklen_t* len) {
  std::lock_guard guard(s.lock);
  if (level == SOL_SOCKET) {
    // Hyper-V's options share SOL_SOCKET's level number (HV_PROTOCOL_RAW is
    // 1) and some of its names; SO_ERROR (4) wins over CONNECTED_SUSPEND.
    if (s.family == af_hyperv && name == hvsocket_connect_timeout)
      return get_value(static_cast<std::uint32_t>(timeout_of(s.connect_timeout).count()), value,
                       len);
    switch (name) {
      case SO_ERROR:
        settle_connect(s, timeout_of(s.connect_timeout));
        if (s.pending_error != 0) return get_value(std::exchange(s.pending_error, 0), value, len);
        return pass_through;
      case SO_DOMAIN: return get_value(s.family, value, len);
      case SO_TYPE: return get_value(s.type, value, len);
      case SO_PROTOCOL: return get_value(s.family == af_hyperv ? hv_protocol_raw : 0, value, len);
      case SO_ACCEPTCONN: return get_value(int{s.state == socket_state::listening}, value, len);
      default: return pass_through;
    }
  }
  if (level != AF_VSOCK) return fail(ENOPROTOOPT);
  switch (name) {
    case SO_VM_SOCKETS_BUFFER_SIZE: return get_value(s.buffer_size, value, len);
    case SO_VM_SOCKETS_BUFFER_MIN_SIZE: return get_value(s.buffer_min, value, len);
    case SO_VM_SOCKETS_BUFFER_MAX_SIZE: return get_value(s.buffer_max, value, len);
#ifdef SO_VM_SOCKETS_CONNECT_TIMEOUT_NEW
    case SO_VM_SOCKETS_CONNECT_TIMEOUT_OLD:
    case SO_VM_SOCKETS_CONNECT_TIMEOUT_NEW:
#else
    case SO_VM_SOCKETS_CONNECT_TIMEOUT:
#endif
      return get_value(s.connect_timeout, value, len);
    default: return fail(ENOPROTOOPT);
  }
}

int emulated_setsockopt(int fd, emulated_socket& s, int level, int name, const void* value,
                        socklen_t len) {
  std::lock_guard guard(s.lock);
  // A connected seqpacket socket's AF_UNIX send buffer follows its size.
  struct resize_after {
    int fd;
    emulated_socket& s;
    ~resize_after() {
      if (s.type == SOCK_SEQPACKET && s.state == socket_state::connected)
        size_send_buffer(fd, s.buffer_size);
    }
  } resize{fd, s};
  if (level == SOL_SOCKET && s.family == af_hyperv) {
    std::uint32_t v = 0;
    switch (name) {
      case hvsocket_connect_timeout:
        if (!read_value(value, len, v)) return fail(EINVAL);
        if (v > hvsocket_connect_timeout_max_ms) return fail(EINVAL);
        s.connect_timeout = {static_cast<time_t>(v / 1000),
                             static_cast<suseconds_t>((v % 1000) * 1000)};
        return 0;
      case hvsocket_container_passthru:
      case hvsocket_connected_suspend:
        // Accepted for the reference's code; nothing here to change.
        return read_value(value, len, v) ? 0 : fail(EINVAL);
      default: return pass_through;
    }
  }
  if (level == SOL_SOCKET) return pass_through;
  if (level != AF_VSOCK) return fail(ENOPROTOOPT);
  std::uint64_t size = 0;
  switch (name) {
    case SO_VM_SOCKETS_BUFFER_SIZE:
      if (!read_value(value, len, size)) return fail(EINVAL);
      update_buffer_size(s, size);
      return 0;
    case SO_VM_SOCKETS_BUFFER_MIN_SIZE:
      if (!read_value(value, len, size)) return fail(EINVAL);
      s.buffer_min = size;
      update_buffer_size(s, s.buffer_size);
      return 0;
    case SO_VM_SOCKETS_BUFFER_MAX_SIZE:
      if (!read_value(value, len, size)) return fail(EINVAL);
      s.buffer_max = size;
      update_buffer_size(s, s.buffer_size);
      return 0;
#ifdef SO_VM_SOCKETS_CONNECT_TIMEOUT_NEW
    case SO_VM_SOCKETS_CONNECT_TIMEOUT_OLD:
    case SO_VM_SOCKETS_CONNECT_TIMEOUT_NEW: {
#else
    case SO_VM_SOCKETS_CONNECT_TIMEOUT: {
#endif
      timeval tv{};
      if (!read_value(value, len, tv)) return fail(EINVAL);
      if (tv.tv_sec < 0 || tv.tv_usec < 0 || tv.tv_usec >= 1000000) return fail(ERANGE);
      // Zero means the default, as in the kernel.
      s.connect_timeout = tv.tv_sec == 0 && tv.tv_usec == 0 ? default_connect_timeout : tv;
      return 0;
    }
    default: return fail(ENOPROTOOPT);
  }
}

int emulated_ioctl(emulated_socket& s, unsigned long request, void* arg) {
  if (request == SIOCOUTQ && s.family != 0) {
    // As 6.12's vsock: the bytes not yet handed to the peer. AF_UNIX hands
    // them over in send(), so 0; AF_UNIX's own answer (the peer's unread
    // bytes) is not what vsock programs expect. No transport yet: EOPNOTSUPP.
    std::lock_guard guard(s.lock);
    if (s.state != socket_state::connected) return fail(EOPNOTSUPP);
    if (arg == nullptr) return fail(EFAULT);
    const int none = 0;
    std::memcpy(arg, &none, sizeof none);
    return 0;
  }
  if (request != IOCTL_VM_SOCKETS_GET_LOCAL_CID) return pass_through;
  if (s.family != 0) return fail(EOPNOTSUPP);  // only /dev/vsock answers it
  if (arg == nullptr) return fail(EFAULT);
  const unsigned int cid = own_cid();
  std::memcpy(arg, &cid, sizeof cid);
  return 0;
}

ssize_t emulated_sendmsg(int fd, emulated_socket& s, const msghdr* msg, int flags,
                         bool implied_eor) {
  if (msg == nullptr || (msg->msg_iov == nullptr && msg->msg_iovlen != 0)) return fail(EFAULT);
  // A connected vsock socket refuses an address (AF_UNIX would ignore it).
  if (msg->msg_namelen != 0) return fail(EISCONN);
  std::size_t length = 0;
  for (std::size_t i = 0; i < msg->msg_iovlen; ++i) length += msg->msg_iov[i].iov_len;
  // Linux's vsock sends no packet for an empty message, and returns 0: the
  // receiver sees nothing (checked on 6.1 and 6.12).
  std::uint64_t limit = 0;
  bool write_shut = false;
  {
    std::lock_guard guard(s.lock);
    limit = s.buffer_size;
    write_shut = s.write_shut;
  }
  if (length == 0 || length > limit) {
    // Sends the shim answers itself: a socket that can send no more says
    // EPIPE first, as the kernel's (and since 6.7 raises SIGPIPE). The
    // peer gone shows as POLLHUP on the AF_UNIX socket.
    pollfd p{fd, 0, 0};
    if (write_shut || (real::poll(&p, 1, 0) == 1 && (p.revents & POLLHUP))) {
      if (!(flags & MSG_NOSIGNAL)) ::raise(SIGPIPE);
      return fail(EPIPE);
    }
    return length == 0 ? 0 : fail(EMSGSIZE);
  }
  msghdr out{};
  out.msg_iov = msg->msg_iov;
  out.msg_iovlen = msg->msg_iovlen;
  return send_marked(fd, out, flags & ~MSG_EOR, implied_eor || (flags & MSG_EOR) != 0);
}

int emulated_sendmmsg(int fd, emulated_socket& s, mmsghdr* vec, unsigned int count, int flags) {
  if (vec == nullptr && count != 0) return fail(EFAULT);
  unsigned int sent = 0;
  for (; sent < count; ++sent) {
    const ssize_t n = emulated_sendmsg(fd, s, &vec[sent].msg_hdr, flags, false);
    if (n < 0) return sent > 0 ? static_cast<int>(sent) : -1;
    vec[sent].msg_len = static_cast<unsigned int>(n);
  }
  return static_cast<int>(sent);
}

ssize_t emulated_recvmsg(int fd, msghdr* msg, int flags) {
  if (msg == nullptr || (flags & MSG_ERRQUEUE)) return real::recvmsg(fd, msg, flags);
  // Room for a marker and for credentials (SO_PASSCRED, which libhvsock's
  // message_socket sets on its end): vsock itself has no control data.
  alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int)) + CMSG_SPACE(sizeof(ucred))];
  void* const app_control = msg->msg_control;
  const auto app_length = msg->msg_controllen;
  msg->msg_control = control;
  msg->msg_controllen = sizeof control;
  const ssize_t n = real::recvmsg(fd, msg, flags | MSG_CMSG_CLOEXEC);
  const int err = errno;
  bool eor = false;
  if (n >= 0) {
    for (cmsghdr* c = CMSG_FIRSTHDR(msg); c != nullptr; c = CMSG_NXTHDR(msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      eor = true;
      const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int passed = -1;
        std::memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof passed);
        real::close(passed);
      }
    }
  }
  msg->msg_control = app_control;
  msg->msg_controllen = n >= 0 ? 0 : app_length;
  if (n >= 0) {
    msg->msg_flags &= ~MSG_CTRUNC;
    if (eor) msg->msg_flags |= MSG_EOR;
  }
  errno = err;
  return n;
}

int emulated_recvmmsg(int fd, mmsghdr* vec, unsigned int count, int flags) {
  if (vec == nullptr && count != 0) return fail(EFAULT);
  unsigned int got = 0;
  for (; got < count; ++got) {
    int each = flags & ~MSG_WAITFORONE;
    if (got > 0 && (flags & MSG_WAITFORONE)) each |= MSG_DONTWAIT;
    const ssize_t n = emulated_recvmsg(fd, &vec[got].msg_hdr, each);
    if (n < 0) return got > 0 ? static_cast<int>(got) : -1;
    vec[got].msg_len = static_cast<unsigned int>(n);
  }
  return static_cast<int>(got);
}

}  // namespace hvsock::preload
