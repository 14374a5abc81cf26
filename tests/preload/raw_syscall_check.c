/* Under the preload shim: socket calls made through syscall(2) reach the
 * shim too, and io_uring is refused (ENOSYS) rather than left to open
 * sockets behind the shim's back. Exit 0 when all hold. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

static int failures;

static void check(int ok, const char* what) {
  printf("%s: %s (errno %d)\n", ok ? "ok" : "FAIL", what, errno);
  failures += !ok;
}

int main(void) {
  long fd = syscall(SYS_socket, AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int domain = 0;
  socklen_t len = sizeof domain;
  check(fd >= 0 && getsockopt((int)fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 &&
            domain == AF_VSOCK,
        "syscall(SYS_socket, AF_VSOCK) gives an emulated vsock socket");
  struct sockaddr_vm to;
  memset(&to, 0, sizeof to);
  to.svm_family = AF_VSOCK;
  to.svm_cid = VMADDR_CID_LOCAL;
  to.svm_port = 31999; /* not registered */
  errno = 0;
  check(syscall(SYS_connect, fd, &to, sizeof to) == -1 && errno == ECONNRESET,
        "syscall(SYS_connect) is refused by the switch with ECONNRESET");
  check(syscall(SYS_close, fd) == 0, "syscall(SYS_close)");
  char params[120] = {0}; /* struct io_uring_params */
  errno = 0;
  check(syscall(SYS_io_uring_setup, 4, params) == -1 && errno == ENOSYS,
        "io_uring_setup is refused with ENOSYS");
  return failures == 0 ? 0 : 1;
}
