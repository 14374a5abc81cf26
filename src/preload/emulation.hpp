// emulation: what the preload shim does for an emulated AF_VSOCK or
// AF_HYPERV stream socket, in terms of hvsockd's control protocol
// (src/protocol/control_wire.hpp). Each function stands for one C call and
// returns as that call does: a value, or -1 with errno set to what Linux's
// vsock would set (docs/compatibility.md lists where it cannot).
//
// The application's fd is a real AF_UNIX socket from socket() on:
// - connect hands that very socket to hvsockd, which connects it to the
//   listener's end (connect_socket_request), so it keeps its identity;
// - bind reserves the address on a control connection kept aside; listen
//   turns that connection into the application's fd (dup3), so accept reads
//   the switch's `incoming` messages from it and poll/epoll on it work.
#pragma once

#include <sys/socket.h>

#include "preload/socket_table.hpp"

namespace hvsock::preload {

// Makes, while the shim loads and the program has no threads yet, what
// the calls below would otherwise make on first use: in a forked child of
// a threaded program, first use could wait forever on a lock or a static's
// guard that a thread the child does not have was holding.
void prepare_emulation();

// The partition's CID (HVSOCK_CID, which `hvsock run` sets; else the host, 2).
std::uint32_t own_cid();

int emulated_socket_call(int domain, int type, int protocol);
int emulated_bind(emulated_socket& s, const sockaddr* addr, socklen_t len);
int emulated_listen(int fd, emulated_socket& s, int backlog);
int emulated_accept(int fd, emulated_socket& s, sockaddr* addr, socklen_t* len, int flags);
int emulated_connect(int fd, emulated_socket& s, const sockaddr* addr, socklen_t len);
int emulated_getsockname(emulated_socket& s, sockaddr* addr, socklen_t* len);
int emulated_getpeername(emulated_socket& s, sockaddr* addr, socklen_t* len);
int emulated_shutdown(int fd, emulated_socket& s, int how);
// Return 1 when the option was not one of ours (the caller passes it on).
int emulated_getsockopt(emulated_socket& s, int level, int name, void* value, socklen_t* len);
int emulated_setsockopt(int fd, emulated_socket& s, int level, int name, const void* value,
                        socklen_t len);
int emulated_ioctl(emulated_socket& s, unsigned long request, void* arg);

// The data calls of a connected SOCK_SEQPACKET socket (s.message_data),
// as Linux 6.12's vsock makes them (docs/compatibility.md):
// - a message of no bytes sends nothing and returns 0;
// - a message larger than the socket's SO_VM_SOCKETS_BUFFER_SIZE fails with
//   EMSGSIZE (the kernel's bound is the smaller of both ends' sizes; the
//   shim knows only its own);
// - MSG_EOR (which write() and writev() imply on a seqpacket socket) reaches
//   the receiver's recvmsg: it travels as an SCM_RIGHTS marker (one
//   /dev/null fd) beside the message, so the bytes are the message's own and
//   receivers that are not the shim (libhvsock's message_socket, hvsockd's
//   vsock device) read them unchanged and drop the fd. Receive calls
//   without control room (read, recv) have the kernel drop it too.
// `implied_eor`: write()/writev(), which the kernel sends with MSG_EOR.
ssize_t emulated_sendmsg(int fd, emulated_socket& s, const msghdr* msg, int flags,
                         bool implied_eor);
int emulated_sendmmsg(int fd, emulated_socket& s, mmsghdr* vec, unsigned int count, int flags);
// recvmsg: the marker's fds closed, MSG_EOR reported where it was sent.
ssize_t emulated_recvmsg(int fd, msghdr* msg, int flags);
// recvmmsg as recvmsg per message; its timeout is not applied.
int emulated_recvmmsg(int fd, mmsghdr* vec, unsigned int count, int flags);

// Reads hvsockd's answers to the process's pending non-blocking connects
// (each as its socket's next call would): the poll, select and epoll
// wrappers call it first, so a connecting socket never polls as an
// unconnected AF_UNIX socket (POLLOUT | POLLHUP). Nothing when none is
// pending, or when the shim itself polls.
void settle_pending_connects();

// Sentinel return of the *sockopt functions: not emulated, use the real call.
inline constexpr int pass_through = 1;

}  // namespace hvsock::preload
