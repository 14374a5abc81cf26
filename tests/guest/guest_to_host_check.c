/* Runs inside the QEMU guest as an unmodified Linux program would: raw
 * AF_VSOCK calls, no libhvsock. Connects to the host (CID 2) on the port in
 * argv[1], sends argv[2] bytes of a known pattern, half-closes, then reads
 * what the host sends back until EOF and checks it is argv[3] bytes of the
 * second pattern. Prints one line per step; exit 0 on success, and the
 * connect errno as "connect: errno N" when refused. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

static unsigned char up_byte(unsigned long i) { return (unsigned char)(i * 7 + 1); }
static unsigned char down_byte(unsigned long i) { return (unsigned char)(i * 13 + 5); }

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: guest_to_host_check PORT UP_BYTES DOWN_BYTES\n");
    return 2;
  }
  unsigned long port = strtoul(argv[1], NULL, 10);
  unsigned long up = strtoul(argv[2], NULL, 10), down = strtoul(argv[3], NULL, 10);
  int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
  if (fd < 0) {
    printf("socket: errno %d\n", errno);
    return 1;
  }
  struct sockaddr_vm addr;
  memset(&addr, 0, sizeof addr);
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = VMADDR_CID_HOST;
  addr.svm_port = (unsigned)port;
  if (connect(fd, (struct sockaddr*)&addr, sizeof addr) < 0) {
    printf("connect: errno %d\n", errno);
    return 3;
  }
  printf("connected to 2:%lu\n", port);
  static unsigned char buf[65536];
  unsigned long sent = 0;
  while (sent < up) {
    size_t n = up - sent < sizeof buf ? up - sent : sizeof buf;
    for (size_t i = 0; i < n; ++i) buf[i] = up_byte(sent + i);
    ssize_t w = write(fd, buf, n);
    if (w <= 0) {
      printf("write: errno %d after %lu bytes\n", errno, sent);
      return 1;
    }
    sent += (unsigned long)w;
  }
  shutdown(fd, SHUT_WR);
  printf("sent %lu bytes, write side shut down\n", sent);
  unsigned long got = 0;
  for (;;) {
    ssize_t r = read(fd, buf, sizeof buf);
    if (r < 0) {
      printf("read: errno %d after %lu bytes\n", errno, got);
      return 1;
    }
    if (r == 0) break;
    for (ssize_t i = 0; i < r; ++i)
      if (buf[i] != down_byte(got + (unsigned long)i)) {
        printf("data mismatch at byte %lu\n", got + (unsigned long)i);
        return 1;
      }
    got += (unsigned long)r;
  }
  close(fd);
  printf("received %lu bytes, EOF\n", got);
  return got == down ? 0 : 1;
}
