// real_calls: the C library's own versions of the calls the preload shim
// wraps, found with dlsym(RTLD_NEXT). The shim calls these for every fd
// that is not an emulated vsock socket, and for its own plumbing.
#pragma once

#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

namespace hvsock::preload::real {

// Looks every call up now (the shim does when it loads, before the program
// has threads), so that none is looked up later, in a forked child say.
void resolve_all();

int socket(int domain, int type, int protocol);
int socketpair(int domain, int type, int protocol, int fds[2]);
int bind(int fd, const sockaddr* addr, socklen_t len);
int listen(int fd, int backlog);
int accept4(int fd, sockaddr* addr, socklen_t* len, int flags);
int connect(int fd, const sockaddr* addr, socklen_t len);
int getsockname(int fd, sockaddr* addr, socklen_t* len);
int getpeername(int fd, sockaddr* addr, socklen_t* len);
int getsockopt(int fd, int level, int name, void* value, socklen_t* len);
int setsockopt(int fd, int level, int name, const void* value, socklen_t len);
int shutdown(int fd, int how);
int close(int fd);
int dup(int fd);
int dup2(int fd, int to);
int dup3(int fd, int to, int flags);
ssize_t send(int fd, const void* data, size_t len, int flags);
ssize_t sendto(int fd, const void* data, size_t len, int flags, const sockaddr* to,
               socklen_t to_len);
ssize_t sendmsg(int fd, const msghdr* msg, int flags);
int sendmmsg(int fd, mmsghdr* vec, unsigned int count, int flags);
ssize_t write(int fd, const void* data, size_t len);
ssize_t writev(int fd, const iovec* iov, int count);
ssize_t recvmsg(int fd, msghdr* msg, int flags);
int recvmmsg(int fd, mmsghdr* vec, unsigned int count, int flags, timespec* timeout);
int poll(pollfd* fds, nfds_t count, int timeout);
int poll_chk(pollfd* fds, nfds_t count, int timeout, size_t fds_size);
int ppoll(pollfd* fds, nfds_t count, const timespec* timeout, const sigset_t* mask);
int ppoll_chk(pollfd* fds, nfds_t count, const timespec* timeout, const sigset_t* mask,
              size_t fds_size);
int select(int count, fd_set* in, fd_set* out, fd_set* except, timeval* timeout);
int pselect(int count, fd_set* in, fd_set* out, fd_set* except, const timespec* timeout,
            const sigset_t* mask);
int epoll_wait(int epfd, epoll_event* events, int count, int timeout);
int epoll_pwait(int epfd, epoll_event* events, int count, int timeout, const sigset_t* mask);
int epoll_pwait2(int epfd, epoll_event* events, int count, const timespec* timeout,
                 const sigset_t* mask);
int fcntl_int(int fd, int cmd, int arg);
// Any command: the argument travels as a pointer-sized value, as in glibc.
int fcntl_any(int fd, int cmd, void* arg);
int ioctl_ptr(int fd, unsigned long request, void* arg);
int openat(int dirfd, const char* path, int flags, mode_t mode);
// syscall(2) with its six argument registers.
long syscall6(long number, const long (&args)[6]);

}  // namespace hvsock::preload::real
