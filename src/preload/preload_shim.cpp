// libhvsock-preload.so: the C library calls a process makes on sockets,
// intercepted through LD_PRELOAD (`hvsock run` sets it). AF_VSOCK and
// AF_HYPERV (34) stream sockets are emulated on hvsockd (emulation.hpp);
// every other fd and family goes straight to the C library. Only these
// wrappers are exported: the rest of the library is hidden, so a program
// that itself links libhvsock does not see two copies.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "preload/emulation.hpp"
#include "preload/real_calls.hpp"
#include "preload/socket_table.hpp"

#define HVSOCK_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

using hvsock::preload::socket_table;
namespace real = hvsock::preload::real;
namespace preload = hvsock::preload;

bool emulated_family(int domain) { return domain == AF_VSOCK || domain == hvsock::af_hyperv; }

std::shared_ptr<hvsock::preload::emulated_socket> lookup(int fd) {
  return fd < 0 ? nullptr : socket_table::instance().find(fd);
}

// A socket (not the /dev/vsock placeholder).
std::shared_ptr<hvsock::preload::emulated_socket> lookup_socket(int fd) {
  auto s = lookup(fd);
  return s != nullptr && s->family != 0 ? s : nullptr;
}

// The connected emulated SOCK_SEQPACKET socket behind fd, whose data calls
// are the shim's; nullptr for every other fd (a lock-free test first: every
// write and read of the program comes through here).
std::shared_ptr<hvsock::preload::emulated_socket> message_socket(int fd) {
  if (!socket_table::instance().maybe_seqpacket(fd)) return nullptr;
  auto s = socket_table::instance().find(fd);
  return s != nullptr && s->message_data.load(std::memory_order_acquire) ? s : nullptr;
}

msghdr one_buffer(iovec& iov, const void* data, size_t len) {
  iov = {const_cast<void*>(data), len};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  return m;
}

bool is_vsock_device(const char* path) {
  return path != nullptr && std::strcmp(path, "/dev/vsock") == 0;
}

// /dev/vsock is only asked for the local CID: a placeholder answers that,
// and the real device is never opened.
int open_vsock_device(int flags) {
  const int fd = real::openat(AT_FDCWD, "/dev/null", (flags & O_CLOEXEC) | O_RDONLY, 0);
  if (fd >= 0) socket_table::instance().set(fd, socket_table::instance().make_socket());
  return fd;
}

bool has_mode(int flags) { return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE; }

// Everything the wrappers need is made while the shim loads, before the
// program has threads: made on first use, it could be half made by one
// thread when another forks, and the child would wait for it forever.
__attribute__((constructor)) void prepare_shim() {
  real::resolve_all();
  preload::prepare_emulation();
}

}  // namespace

HVSOCK_EXPORT int socket(int domain, int type, int protocol) {
  if (emulated_family(domain)) return preload::emulated_socket_call(domain, type, protocol);
  return real::socket(domain, type, protocol);
}

HVSOCK_EXPORT int socketpair(int domain, int type, int protocol, int fds[2]) {
  if (emulated_family(domain)) {
    errno = EOPNOTSUPP;  // as the kernel's vsock
    return -1;
  }
  return real::socketpair(domain, type, protocol, fds);
}

HVSOCK_EXPORT int bind(int fd, const sockaddr* addr, socklen_t len) {
  if (auto s = lookup_socket(fd)) return preload::emulated_bind(*s, addr, len);
  return real::bind(fd, addr, len);
}

HVSOCK_EXPORT int listen(int fd, int backlog) {
  if (auto s = lookup_socket(fd)) return preload::emulated_listen(fd, *s, backlog);
  return real::listen(fd, backlog);
}

HVSOCK_EXPORT int accept4(int fd, sockaddr* addr, socklen_t* len, int flags) {
  if (auto s = lookup_socket(fd)) return preload::emulated_accept(fd, *s, addr, len, flags);
  return real::accept4(fd, addr, len, flags);
}

HVSOCK_EXPORT int accept(int fd, sockaddr* addr, socklen_t* len) {
  if (auto s = lookup_socket(fd)) return preload::emulated_accept(fd, *s, addr, len, 0);
  return real::accept4(fd, addr, len, 0);
}

HVSOCK_EXPORT int connect(int fd, const sockaddr* addr, socklen_t len) {
  if (auto s = lookup_socket(fd)) return preload::emulated_connect(fd, *s, addr, len);
  return real::connect(fd, addr, len);
}

HVSOCK_EXPORT int getsockname(int fd, sockaddr* addr, socklen_t* len) {
  if (auto s = lookup_socket(fd)) return preload::emulated_getsockname(*s, addr, len);
  return real::getsockname(fd, addr, len);
}

HVSOCK_EXPORT int getpeername(int fd, sockaddr* addr, socklen_t* len) {
  if (auto s = lookup_socket(fd)) return preload::emulated_getpeername(*s, addr, len);
  return real::getpeername(fd, addr, len);
}

HVSOCK_EXPORT int getsockopt(int fd, int level, int name, void* value, socklen_t* len) {
  if (auto s = lookup_socket(fd)) {
    const int r = preload::emulated_getsockopt(*s, level, name, value, len);
    if (r != preload::pass_through) return r;
  }
  return real::getsockopt(fd, level, name, value, len);
}

HVSOCK_EXPORT int setsockopt(int fd, int level, int name, const void* value, socklen_t len) {
  if (auto s = lookup_socket(fd)) {
    const int r = preload::emulated_setsockopt(fd, *s, level, name, value, len);
    if (r != preload::pass_through) return r;
  }
  return real::setsockopt(fd, level, name, value, len);
}

// Data calls: only a connected SOCK_SEQPACKET socket's take the shim's path
// (emulation.hpp); streams' and every other fd's go to the C library as
// they are. read/recv/recvfrom need no help: without control room the
// kernel drops an MSG_EOR marker by itself, and they report no flags.
HVSOCK_EXPORT ssize_t send(int fd, const void* data, size_t len, int flags) {
  if (auto s = message_socket(fd)) {
    iovec iov;
    const msghdr m = one_buffer(iov, data, len);
    return preload::emulated_sendmsg(fd, *s, &m, flags, false);
  }
  return real::send(fd, data, len, flags);
}

HVSOCK_EXPORT ssize_t sendto(int fd, const void* data, size_t len, int flags, const sockaddr* to,
                             socklen_t to_len) {
  if (auto s = message_socket(fd)) {
    iovec iov;
    msghdr m = one_buffer(iov, data, len);
    m.msg_name = const_cast<sockaddr*>(to);
    m.msg_namelen = to == nullptr ? 0 : to_len;
    return preload::emulated_sendmsg(fd, *s, &m, flags, false);
  }
  return real::sendto(fd, data, len, flags, to, to_len);
}

HVSOCK_EXPORT ssize_t sendmsg(int fd, const msghdr* msg, int flags) {
  if (auto s = message_socket(fd)) return preload::emulated_sendmsg(fd, *s, msg, flags, false);
  return real::sendmsg(fd, msg, flags);
}

HVSOCK_EXPORT int sendmmsg(int fd, mmsghdr* vec, unsigned int count, int flags) {
  if (auto s = message_socket(fd)) return preload::emulated_sendmmsg(fd, *s, vec, count, flags);
  return real::sendmmsg(fd, vec, count, flags);
}

// write and writev on a seqpacket socket send with MSG_EOR (sock_write_iter).
HVSOCK_EXPORT ssize_t write(int fd, const void* data, size_t len) {
  if (auto s = message_socket(fd)) {
    iovec iov;
    const msghdr m = one_buffer(iov, data, len);
    return preload::emulated_sendmsg(fd, *s, &m, 0, true);
  }
  return real::write(fd, data, len);
}

HVSOCK_EXPORT ssize_t writev(int fd, const iovec* iov, int count) {
  if (count >= 0 && count <= IOV_MAX) {
    if (auto s = message_socket(fd)) {
      msghdr m{};
      m.msg_iov = const_cast<iovec*>(iov);
      m.msg_iovlen = static_cast<size_t>(count);
      return preload::emulated_sendmsg(fd, *s, &m, 0, true);
    }
  }
  return real::writev(fd, iov, count);
}

HVSOCK_EXPORT ssize_t recvmsg(int fd, msghdr* msg, int flags) {
  if (message_socket(fd) != nullptr) return preload::emulated_recvmsg(fd, msg, flags);
  return real::recvmsg(fd, msg, flags);
}

HVSOCK_EXPORT int recvmmsg(int fd, mmsghdr* vec, unsigned int count, int flags, timespec* timeout) {
  if (message_socket(fd) != nullptr) return preload::emulated_recvmmsg(fd, vec, count, flags);
  return real::recvmmsg(fd, vec, count, flags, timeout);
}

// Waiting calls: hvsockd's answers to pending non-blocking connects are
// read first (settle_pending_connects; nothing to do when none is pending),
// so a connecting socket polls as the kernel's does once its connect is over.
HVSOCK_EXPORT int poll(pollfd* fds, nfds_t count, int timeout) {
  preload::settle_pending_connects();
  return real::poll(fds, count, timeout);
}

HVSOCK_EXPORT int __poll_chk(pollfd* fds, nfds_t count, int timeout, size_t fds_size) {
  preload::settle_pending_connects();
  return real::poll_chk(fds, count, timeout, fds_size);
}

HVSOCK_EXPORT int ppoll(pollfd* fds, nfds_t count, const timespec* timeout, const sigset_t* mask) {
  preload::settle_pending_connects();
  return real::ppoll(fds, count, timeout, mask);
}

HVSOCK_EXPORT int __ppoll_chk(pollfd* fds, nfds_t count, const timespec* timeout,
                              const sigset_t* mask, size_t fds_size) {
  preload::settle_pending_connects();
  return real::ppoll_chk(fds, count, timeout, mask, fds_size);
}

HVSOCK_EXPORT int select(int count, fd_set* in, fd_set* out, fd_set* except, timeval* timeout) {
  preload::settle_pending_connects();
  return real::select(count, in, out, except, timeout);
}

HVSOCK_EXPORT int pselect(int count, fd_set* in, fd_set* out, fd_set* except,
                          const timespec* timeout, const sigset_t* mask) {
  preload::settle_pending_connects();
  return real::pselect(count, in, out, except, timeout, mask);
}

HVSOCK_EXPORT int epoll_wait(int epfd, epoll_event* events, int count, int timeout) {
  preload::settle_pending_connects();
  return real::epoll_wait(epfd, events, count, timeout);
}

HVSOCK_EXPORT int epoll_pwait(int epfd, epoll_event* events, int count, int timeout,
                              const sigset_t* mask) {
  preload::settle_pending_connects();
  return real::epoll_pwait(epfd, events, count, timeout, mask);
}

HVSOCK_EXPORT int epoll_pwait2(int epfd, epoll_event* events, int count, const timespec* timeout,
                               const sigset_t* mask) {
  preload::settle_pending_connects();
  return real::epoll_pwait2(epfd, events, count, timeout, mask);
}

HVSOCK_EXPORT int shutdown(int fd, int how) {
  if (auto s = lookup_socket(fd)) return preload::emulated_shutdown(fd, *s, how);
  return real::shutdown(fd, how);
}

HVSOCK_EXPORT int close(int fd) {
  socket_table::instance().erase(fd);
  return real::close(fd);
}

HVSOCK_EXPORT int dup(int fd) {
  const int r = real::dup(fd);
  if (r >= 0) socket_table::instance().copy(fd, r);
  return r;
}

HVSOCK_EXPORT int dup2(int fd, int to) {
  const int r = real::dup2(fd, to);
  if (r >= 0 && fd != to) socket_table::instance().copy(fd, to);
  return r;
}

HVSOCK_EXPORT int dup3(int fd, int to, int flags) {
  const int r = real::dup3(fd, to, flags);
  if (r >= 0) socket_table::instance().copy(fd, to);
  return r;
}

HVSOCK_EXPORT int fcntl(int fd, int cmd, ...) {
  va_list ap;
  va_start(ap, cmd);
  // Every fcntl argument fits a pointer-sized register; the real call reads
  // it as the type `cmd` wants, as the C library's own wrapper does.
  void* arg = va_arg(ap, void*);
  va_end(ap);
  const int r = real::fcntl_any(fd, cmd, arg);
  if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)) socket_table::instance().copy(fd, r);
  return r;
}

HVSOCK_EXPORT int ioctl(int fd, unsigned long request, ...) {
  va_list ap;
  va_start(ap, request);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  if (auto s = lookup(fd)) {
    const int r = preload::emulated_ioctl(*s, request, arg);
    if (r != preload::pass_through) return r;
  }
  return real::ioctl_ptr(fd, request, arg);
}

// The mode argument exists only when the flags create a file.
#define HVSOCK_MODE_ARG(flags, mode)             \
  mode_t mode = 0;                               \
  if (has_mode(flags)) {                         \
    va_list ap;                                  \
    va_start(ap, flags);                         \
    mode = static_cast<mode_t>(va_arg(ap, int)); \
    va_end(ap);                                  \
  }

HVSOCK_EXPORT int open(const char* path, int flags, ...) {
  HVSOCK_MODE_ARG(flags, mode)
  if (is_vsock_device(path)) return open_vsock_device(flags);
  return real::openat(AT_FDCWD, path, flags, mode);
}

HVSOCK_EXPORT int open64(const char* path, int flags, ...) {
  HVSOCK_MODE_ARG(flags, mode)
  if (is_vsock_device(path)) return open_vsock_device(flags);
  return real::openat(AT_FDCWD, path, flags | O_LARGEFILE, mode);
}

HVSOCK_EXPORT int openat(int dirfd, const char* path, int flags, ...) {
  HVSOCK_MODE_ARG(flags, mode)
  if (is_vsock_device(path)) return open_vsock_device(flags);
  return real::openat(dirfd, path, flags, mode);
}

// Programs that call syscall(2) through the C library: their socket calls
// take the same paths as above. io_uring could open and connect sockets
// behind the shim's back, so under the shim it is not offered (programs
// fall back to their other I/O); the first attempt is reported.
HVSOCK_EXPORT long syscall(long number, ...) {
  va_list ap;
  va_start(ap, number);
  long a[6];
  for (long& arg : a) arg = va_arg(ap, long);
  va_end(ap);
  const int fd = static_cast<int>(a[0]);
  auto* addr = reinterpret_cast<sockaddr*>(a[1]);
  auto* len = reinterpret_cast<socklen_t*>(a[2]);
  switch (number) {
    case SYS_socket: return socket(fd, static_cast<int>(a[1]), static_cast<int>(a[2]));
    case SYS_bind: return bind(fd, addr, static_cast<socklen_t>(a[2]));
    case SYS_connect: return connect(fd, addr, static_cast<socklen_t>(a[2]));
    case SYS_listen: return listen(fd, static_cast<int>(a[1]));
    case SYS_accept: return accept(fd, addr, len);
    case SYS_accept4: return accept4(fd, addr, len, static_cast<int>(a[3]));
    case SYS_getsockname: return getsockname(fd, addr, len);
    case SYS_getpeername: return getpeername(fd, addr, len);
    case SYS_shutdown: return shutdown(fd, static_cast<int>(a[1]));
    case SYS_close: return close(fd);
    case SYS_io_uring_setup: {
      static std::atomic<bool> reported{false};
      if (!reported.exchange(true))
        std::fprintf(stderr,
                     "hvsock-preload: io_uring is not available under the shim (its socket "
                     "operations would bypass it); see docs/compatibility.md\n");
      errno = ENOSYS;
      return -1;
    }
    default: return real::syscall6(number, a);
  }
}
