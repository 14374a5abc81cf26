/* Under the preload shim: the SOCK_SEQPACKET data calls the shim takes
 * (docs/compatibility.md), beyond what vsock_conformance compares with the
 * kernel. MSG_EOR travels as an SCM_RIGHTS marker beside each message; this
 * checks that the marker never leaks an fd into the receiver (recvmsg, read,
 * MSG_PEEK, recvmmsg), that a program closing the marker's fd does not lose
 * MSG_EOR, and that sendmmsg/recvmmsg, empty messages and the program's own
 * control buffer behave. Exit 0 when all hold.
 *
 *   seqpacket_marker_check PORT   (a registered service port)
 *
 * Refuses to run without the shim: its sockets would be the kernel's vsock. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

static int failures;

static void check(int ok, const char* what) {
  printf("%s: %s\n", ok ? "ok" : "FAIL", what);
  failures += !ok;
}

static int open_fds(void) {
  DIR* d = opendir("/proc/self/fd");
  if (d == NULL) return -1;
  int n = 0;
  while (readdir(d) != NULL) ++n;
  closedir(d);
  return n;
}

/* recvmsg into buf; *flags gets msg_flags. */
static long receive(int fd, char* buf, size_t size, int how, int* flags) {
  struct iovec iov = {buf, size};
  struct msghdr m;
  memset(&m, 0, sizeof m);
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  long n = recvmsg(fd, &m, how);
  *flags = m.msg_flags;
  return n;
}

/* The fd the shim sends as its marker: /dev/null at 512 or above. */
static int marker_fd(void) {
  for (int fd = 512; fd < 1024; ++fd) {
    char path[64], target[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(path, target, sizeof target - 1);
    if (n < 0) continue;
    target[n] = '\0';
    if (strcmp(target, "/dev/null") == 0) return fd;
  }
  return -1;
}

int main(int argc, char** argv) {
  const char* preload = getenv("LD_PRELOAD");
  if (argc != 2 || preload == NULL || strstr(preload, "libhvsock-preload") == NULL) {
    fprintf(stderr, "usage (under hvsock run): seqpacket_marker_check PORT\n");
    return 2;
  }
  unsigned port = (unsigned)strtoul(argv[1], NULL, 10);
  int l = socket(AF_VSOCK, SOCK_SEQPACKET, 0);
  struct sockaddr_vm a;
  memset(&a, 0, sizeof a);
  a.svm_family = AF_VSOCK;
  a.svm_cid = VMADDR_CID_ANY;
  a.svm_port = port;
  if (l < 0 || bind(l, (struct sockaddr*)&a, sizeof a) != 0 || listen(l, 4) != 0) {
    perror("listen");
    return 1;
  }
  int c = socket(AF_VSOCK, SOCK_SEQPACKET, 0);
  a.svm_cid = VMADDR_CID_LOCAL;
  if (c < 0 || connect(c, (struct sockaddr*)&a, sizeof a) != 0) {
    perror("connect");
    return 1;
  }
  int s = accept(l, NULL, NULL);
  if (s < 0) {
    perror("accept");
    return 1;
  }
  close(l);
  char buf[64];
  int flags = 0, ok = 1;

  /* The marker is opened by the first MSG_EOR send: count fds after it. */
  ok = write(c, "w", 1) == 1 && receive(s, buf, sizeof buf, 0, &flags) == 1 && (flags & MSG_EOR);
  check(ok, "write() then recvmsg: MSG_EOR");
  const int base = open_fds();
  ok = 1;
  for (int i = 0; i < 2000 && ok; ++i) {
    int eor = i % 2 == 0;
    ok = send(c, "m", 1, MSG_NOSIGNAL | (eor ? MSG_EOR : 0)) == 1 &&
         receive(s, buf, sizeof buf, 0, &flags) == 1 && ((flags & MSG_EOR) != 0) == eor;
  }
  check(ok, "2000 messages, every other one with MSG_EOR: recvmsg reports exactly those");
  ok = 1;
  for (int i = 0; i < 500 && ok; ++i)
    ok = send(c, "r", 1, MSG_NOSIGNAL | MSG_EOR) == 1 && read(s, buf, sizeof buf) == 1;
  check(ok, "500 MSG_EOR messages taken with read()");
  ok = 1;
  for (int i = 0; i < 500 && ok; ++i)
    ok = send(c, "p", 1, MSG_NOSIGNAL | MSG_EOR) == 1 &&
         receive(s, buf, sizeof buf, MSG_PEEK, &flags) == 1 && (flags & MSG_EOR) &&
         receive(s, buf, sizeof buf, 0, &flags) == 1 && (flags & MSG_EOR);
  check(ok, "500 MSG_EOR messages peeked, then received: MSG_EOR both times");
  check(open_fds() == base, "no fd of a marker stays open in the receiver");

  /* The program's own control buffer: vsock fills none. */
  char control[64];
  memset(control, 0x5a, sizeof control);
  struct iovec iov = {buf, sizeof buf};
  struct msghdr m;
  memset(&m, 0, sizeof m);
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof control;
  send(c, "ctl", 3, MSG_NOSIGNAL | MSG_EOR);
  long n = recvmsg(s, &m, 0);
  check(n == 3 && m.msg_controllen == 0 && m.msg_control == control &&
            (m.msg_flags & (MSG_EOR | MSG_CTRUNC)) == MSG_EOR,
        "recvmsg with a control buffer: no control data, MSG_EOR, no MSG_CTRUNC");

  /* sendmmsg / recvmmsg. */
  struct mmsghdr out[3], in[3];
  struct iovec oiov[3], iiov[3];
  char ibuf[3][16];
  static const char* const words[3] = {"one", "three", "seven"};
  memset(out, 0, sizeof out);
  memset(in, 0, sizeof in);
  for (int i = 0; i < 3; ++i) {
    oiov[i].iov_base = (void*)words[i];
    oiov[i].iov_len = strlen(words[i]);
    out[i].msg_hdr.msg_iov = &oiov[i];
    out[i].msg_hdr.msg_iovlen = 1;
    iiov[i].iov_base = ibuf[i];
    iiov[i].iov_len = sizeof ibuf[i];
    in[i].msg_hdr.msg_iov = &iiov[i];
    in[i].msg_hdr.msg_iovlen = 1;
  }
  check(sendmmsg(c, out, 3, MSG_NOSIGNAL | MSG_EOR) == 3, "sendmmsg of 3 messages with MSG_EOR");
  int got = recvmmsg(s, in, 3, 0, NULL);
  ok = got == 3;
  for (int i = 0; i < 3 && ok; ++i)
    ok = in[i].msg_len == strlen(words[i]) && memcmp(ibuf[i], words[i], in[i].msg_len) == 0 &&
         (in[i].msg_hdr.msg_flags & MSG_EOR) && out[i].msg_len == strlen(words[i]);
  check(ok, "recvmmsg takes them, each whole with MSG_EOR");

  /* Empty messages send nothing. */
  check(write(c, "", 0) == 0 && send(c, "", 0, MSG_NOSIGNAL) == 0, "empty messages return 0");
  send(c, "next", 4, MSG_NOSIGNAL);
  check(receive(s, buf, sizeof buf, 0, &flags) == 4, "and send nothing: the next message comes");

  /* A program that closes the marker (closefrom) keeps MSG_EOR. */
  int marker = marker_fd();
  check(marker >= 0 && close(marker) == 0, "the marker's fd found and closed");
  check(send(c, "again", 5, MSG_NOSIGNAL | MSG_EOR) == 5 &&
            receive(s, buf, sizeof buf, 0, &flags) == 5 && (flags & MSG_EOR),
        "MSG_EOR still arrives after the marker was closed");

  close(c);
  check(receive(s, buf, sizeof buf, 0, &flags) == 0, "the end after the peer closed");
  return failures == 0 ? 0 : 1;
}
