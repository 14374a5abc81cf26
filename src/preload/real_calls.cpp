// real_calls: each resolved by resolve_all() when the shim loads, or on
// first use if something calls it earlier (another library's constructor).
#include "preload/real_calls.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace hvsock::preload::real {
namespace {

template <class Function>
Function* next(const char* name) {
  void* f = ::dlsym(RTLD_NEXT, name);
  if (f == nullptr) {
    // Without the real call nothing can work; say so rather than misbehave.
    std::fprintf(stderr, "hvsock-preload: the C library has no %s\n", name);
    std::abort();
  }
  return reinterpret_cast<Function*>(f);
}

// One C library call. An atomic, not a function-local static: a static's
// guard, held by a thread that was resolving it when another thread forked,
// would stop the child's first use forever. Resolving twice is harmless.
template <class Function>
class next_call {
 public:
  constexpr explicit next_call(const char* name) : name_(name) {}
  Function* operator()() {
    Function* f = f_.load(std::memory_order_acquire);
    if (f == nullptr) {
      f = next<Function>(name_);
      f_.store(f, std::memory_order_release);
    }
    return f;
  }

 private:
  const char* name_;
  std::atomic<Function*> f_{nullptr};
};

#define HVSOCK_REAL(name) constinit next_call<decltype(::name)> name##_call(#name)
HVSOCK_REAL(socket);
HVSOCK_REAL(socketpair);
HVSOCK_REAL(bind);
HVSOCK_REAL(listen);
HVSOCK_REAL(accept4);
HVSOCK_REAL(connect);
HVSOCK_REAL(getsockname);
HVSOCK_REAL(getpeername);
HVSOCK_REAL(getsockopt);
HVSOCK_REAL(setsockopt);
HVSOCK_REAL(shutdown);
HVSOCK_REAL(close);
HVSOCK_REAL(dup);
HVSOCK_REAL(dup2);
HVSOCK_REAL(dup3);
HVSOCK_REAL(send);
HVSOCK_REAL(sendto);
HVSOCK_REAL(sendmsg);
HVSOCK_REAL(sendmmsg);
HVSOCK_REAL(recvmsg);
HVSOCK_REAL(recvmmsg);
#undef HVSOCK_REAL
// write and writev carry attributes that a template argument cannot.
constinit next_call<ssize_t(int, const void*, size_t)> write_call("write");
constinit next_call<ssize_t(int, const iovec*, int)> writev_call("writev");
constinit next_call<int(pollfd*, nfds_t, int)> poll_call("poll");
constinit next_call<int(pollfd*, nfds_t, int, size_t)> poll_chk_call("__poll_chk");
constinit next_call<int(pollfd*, nfds_t, const timespec*, const sigset_t*)> ppoll_call("ppoll");
constinit next_call<int(pollfd*, nfds_t, const timespec*, const sigset_t*, size_t)> ppoll_chk_call(
    "__ppoll_chk");
constinit next_call<int(int, fd_set*, fd_set*, fd_set*, timeval*)> select_call("select");
constinit next_call<int(int, fd_set*, fd_set*, fd_set*, const timespec*, const sigset_t*)>
    pselect_call("pselect");
constinit next_call<int(int, epoll_event*, int, int)> epoll_wait_call("epoll_wait");
constinit next_call<int(int, epoll_event*, int, int, const sigset_t*)> epoll_pwait_call(
    "epoll_pwait");
constinit next_call<int(int, epoll_event*, int, const timespec*, const sigset_t*)>
    epoll_pwait2_call("epoll_pwait2");
constinit next_call<int(int, int, ...)> fcntl_call("fcntl");
constinit next_call<int(int, unsigned long, ...)> ioctl_call("ioctl");
constinit next_call<int(int, const char*, int, ...)> openat_call("openat");
constinit next_call<long(long, ...)> syscall_call("syscall");

}  // namespace

void resolve_all() {
  socket_call();
  socketpair_call();
  bind_call();
  listen_call();
  accept4_call();
  connect_call();
  getsockname_call();
  getpeername_call();
  getsockopt_call();
  setsockopt_call();
  shutdown_call();
  close_call();
  dup_call();
  dup2_call();
  dup3_call();
  send_call();
  sendto_call();
  sendmsg_call();
  sendmmsg_call();
  write_call();
  writev_call();
  recvmsg_call();
  recvmmsg_call();
  poll_call();
  poll_chk_call();
  ppoll_call();
  ppoll_chk_call();
  select_call();
  pselect_call();
  epoll_wait_call();
  epoll_pwait_call();
  epoll_pwait2_call();
  fcntl_call();
  ioctl_call();
  openat_call();
  syscall_call();
}

int socket(int domain, int type, int protocol) { return socket_call()(domain, type, protocol); }
int socketpair(int domain, int type, int protocol, int fds[2]) {
  return socketpair_call()(domain, type, protocol, fds);
}
int bind(int fd, const sockaddr* addr, socklen_t len) { return bind_call()(fd, addr, len); }
int listen(int fd, int backlog) { return listen_call()(fd, backlog); }
int accept4(int fd, sockaddr* addr, socklen_t* len, int flags) {
  return accept4_call()(fd, addr, len, flags);
}
int connect(int fd, const sockaddr* addr, socklen_t len) { return connect_call()(fd, addr, len); }
int getsockname(int fd, sockaddr* addr, socklen_t* len) {
  return getsockname_call()(fd, addr, len);
}
int getpeername(int fd, sockaddr* addr, socklen_t* len) {
  return getpeername_call()(fd, addr, len);
}
int getsockopt(int fd, int level, int name, void* value, socklen_t* len) {
  return getsockopt_call()(fd, level, name, value, len);
}
int setsockopt(int fd, int level, int name, const void* value, socklen_t len) {
  return setsockopt_call()(fd, level, name, value, len);
}
int shutdown(int fd, int how) { return shutdown_call()(fd, how); }
int close(int fd) { return close_call()(fd); }
int dup(int fd) { return dup_call()(fd); }
int dup2(int fd, int to) { return dup2_call()(fd, to); }
int dup3(int fd, int to, int flags) { return dup3_call()(fd, to, flags); }
ssize_t send(int fd, const void* data, size_t len, int flags) {
  return send_call()(fd, data, len, flags);
}
ssize_t sendto(int fd, const void* data, size_t len, int flags, const sockaddr* to,
               socklen_t to_len) {
  return sendto_call()(fd, data, len, flags, to, to_len);
}
ssize_t sendmsg(int fd, const msghdr* msg, int flags) { return sendmsg_call()(fd, msg, flags); }
int sendmmsg(int fd, mmsghdr* vec, unsigned int count, int flags) {
  return sendmmsg_call()(fd, vec, count, flags);
}
ssize_t write(int fd, const void* data, size_t len) { return write_call()(fd, data, len); }
ssize_t writev(int fd, const iovec* iov, int count) { return writev_call()(fd, iov, count); }
ssize_t recvmsg(int fd, msghdr* msg, int flags) { return recvmsg_call()(fd, msg, flags); }
int recvmmsg(int fd, mmsghdr* vec, unsigned int count, int flags, timespec* timeout) {
  return recvmmsg_call()(fd, vec, count, flags, timeout);
}
int poll(pollfd* fds, nfds_t count, int timeout) { return poll_call()(fds, count, timeout); }
int poll_chk(pollfd* fds, nfds_t count, int timeout, size_t fds_size) {
  return poll_chk_call()(fds, count, timeout, fds_size);
}
int ppoll(pollfd* fds, nfds_t count, const timespec* timeout, const sigset_t* mask) {
  return ppoll_call()(fds, count, timeout, mask);
}
int ppoll_chk(pollfd* fds, nfds_t count, const timespec* timeout, const sigset_t* mask,
              size_t fds_size) {
  return ppoll_chk_call()(fds, count, timeout, mask, fds_size);
}
int select(int count, fd_set* in, fd_set* out, fd_set* except, timeval* timeout) {
  return select_call()(count, in, out, except, timeout);
}
int pselect(int count, fd_set* in, fd_set* out, fd_set* except, const timespec* timeout,
            const sigset_t* mask) {
  return pselect_call()(count, in, out, except, timeout, mask);
}
int epoll_wait(int epfd, epoll_event* events, int count, int timeout) {
  return epoll_wait_call()(epfd, events, count, timeout);
}
int epoll_pwait(int epfd, epoll_event* events, int count, int timeout, const sigset_t* mask) {
  return epoll_pwait_call()(epfd, events, count, timeout, mask);
}
int epoll_pwait2(int epfd, epoll_event* events, int count, const timespec* timeout,
                 const sigset_t* mask) {
  return epoll_pwait2_call()(epfd, events, count, timeout, mask);
}
int fcntl_int(int fd, int cmd, int arg) { return fcntl_call()(fd, cmd, arg); }
int fcntl_any(int fd, int cmd, void* arg) { return fcntl_call()(fd, cmd, arg); }
int ioctl_ptr(int fd, unsigned long request, void* arg) { return ioctl_call()(fd, request, arg); }
int openat(int dirfd, const char* path, int flags, mode_t mode) {
  return openat_call()(dirfd, path, flags, mode);
}

long syscall6(long number, const long (&args)[6]) {
  return syscall_call()(number, args[0], args[1], args[2], args[3], args[4], args[5]);
}

}  // namespace hvsock::preload::real
