// real_calls: each resolved once, on first use (function-local statics are
// thread-safe), so nothing runs before the C library is ready.
#include "preload/real_calls.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

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

#define HVSOCK_REAL(name) static auto* const f = next<decltype(::name)>(#name)

}  // namespace

int socket(int domain, int type, int protocol) {
  HVSOCK_REAL(socket);
  return f(domain, type, protocol);
}
int socketpair(int domain, int type, int protocol, int fds[2]) {
  HVSOCK_REAL(socketpair);
  return f(domain, type, protocol, fds);
}
int bind(int fd, const sockaddr* addr, socklen_t len) {
  HVSOCK_REAL(bind);
  return f(fd, addr, len);
}
int listen(int fd, int backlog) {
  HVSOCK_REAL(listen);
  return f(fd, backlog);
}
int accept4(int fd, sockaddr* addr, socklen_t* len, int flags) {
  HVSOCK_REAL(accept4);
  return f(fd, addr, len, flags);
}
int connect(int fd, const sockaddr* addr, socklen_t len) {
  HVSOCK_REAL(connect);
  return f(fd, addr, len);
}
int getsockname(int fd, sockaddr* addr, socklen_t* len) {
  HVSOCK_REAL(getsockname);
  return f(fd, addr, len);
}
int getpeername(int fd, sockaddr* addr, socklen_t* len) {
  HVSOCK_REAL(getpeername);
  return f(fd, addr, len);
}
int getsockopt(int fd, int level, int name, void* value, socklen_t* len) {
  HVSOCK_REAL(getsockopt);
  return f(fd, level, name, value, len);
}
int setsockopt(int fd, int level, int name, const void* value, socklen_t len) {
  HVSOCK_REAL(setsockopt);
  return f(fd, level, name, value, len);
}
int shutdown(int fd, int how) {
  HVSOCK_REAL(shutdown);
  return f(fd, how);
}
int close(int fd) {
  HVSOCK_REAL(close);
  return f(fd);
}
int dup(int fd) {
  HVSOCK_REAL(dup);
  return f(fd);
}
int dup2(int fd, int to) {
  HVSOCK_REAL(dup2);
  return f(fd, to);
}
int dup3(int fd, int to, int flags) {
  HVSOCK_REAL(dup3);
  return f(fd, to, flags);
}
int (*real_fcntl())(int, int, ...) {
  static auto* const f = next<int(int, int, ...)>("fcntl");
  return f;
}
int fcntl_int(int fd, int cmd, int arg) { return real_fcntl()(fd, cmd, arg); }
int fcntl_any(int fd, int cmd, void* arg) { return real_fcntl()(fd, cmd, arg); }
int ioctl_ptr(int fd, unsigned long request, void* arg) {
  static auto* const f = next<int(int, unsigned long, ...)>("ioctl");
  return f(fd, request, arg);
}
int openat(int dirfd, const char* path, int flags, mode_t mode) {
  static auto* const f = next<int(int, const char*, int, ...)>("openat");
  return f(dirfd, path, flags, mode);
}

long syscall6(long number, const long (&args)[6]) {
  static auto* const f = next<long(long, ...)>("syscall");
  return f(number, args[0], args[1], args[2], args[3], args[4], args[5]);
}

}  // namespace hvsock::preload::real
