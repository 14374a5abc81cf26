/* guest_stream: the two ends of the QEMU guest throughput benchmark
 * (bench/qemu_guest_throughput.sh), over AF_VSOCK or TCP with raw socket
 * calls. In the guest it is static and uses the kernel's vsock; on the host
 * it runs under `hvsock run`, whose preload shim turns its AF_VSOCK sockets
 * into hvsockd streams (the host build refuses vsock without the shim).
 *
 *   guest_stream serve VSOCK_PORT TCP_PORT CONNECTIONS
 *       (guest) listens on both; per connection reads a command line
 *       "send N B\n" or "recv N B\n", sets a vsock socket's buffer to B
 *       bytes (0: the kernel's default, 256 KiB), then sends N bytes or
 *       receives N bytes and answers one byte when all have arrived.
 *   guest_stream run vsock CID PORT send|recv BYTES [VSOCK_BUFFER]
 *   guest_stream run tcp ADDRESS PORT send|recv BYTES
 *       (host) connects, asks the other side to recv (we send) or send (we
 *       receive), and prints "RESULT <transport> <send|recv> <bytes>
 *       <buffer> <seconds> <MB/s>": the time from the first byte to the
 *       moment the receiver had them all. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

#define CHUNK (256 * 1024)

static unsigned char buffer[CHUNK];

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int die(const char* what) {
  fprintf(stderr, "guest_stream: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void send_all(int fd, const void* data, size_t size) {
  const unsigned char* p = data;
  while (size > 0) {
    ssize_t n = send(fd, p, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) die("send");
    p += n;
    size -= (size_t)n;
  }
}

static void send_bytes(int fd, unsigned long long bytes) {
  while (bytes > 0) {
    size_t n = bytes < CHUNK ? (size_t)bytes : CHUNK;
    send_all(fd, buffer, n);
    bytes -= n;
  }
}

static void recv_bytes(int fd, unsigned long long bytes) {
  while (bytes > 0) {
    ssize_t n = recv(fd, buffer, bytes < CHUNK ? (size_t)bytes : CHUNK, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) die("recv (the other side stopped early)");
    bytes -= (unsigned long long)n;
  }
}

static void recv_exact(int fd, void* out, size_t size) {
  unsigned char* p = out;
  while (size > 0) {
    ssize_t n = recv(fd, p, size, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) die("recv");
    p += n;
    size -= (size_t)n;
  }
}

static int listen_on(int family, unsigned port) {
  int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  int one = 1;
  if (family == AF_INET) {
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(fd, (struct sockaddr*)&a, sizeof a) != 0) die("bind tcp");
  } else {
    struct sockaddr_vm a = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port};
    if (bind(fd, (struct sockaddr*)&a, sizeof a) != 0) die("bind vsock");
  }
  if (listen(fd, 8) != 0) die("listen");
  return fd;
}

/* A bulk vsock receiver's usual tuning: with the default 256 KiB window
 * the sender waits for credit every 256 KiB; TCP grows its window itself. */
static void set_vsock_buffer(int fd, unsigned long long size) {
  if (size == 0) return;
  setsockopt(fd, AF_VSOCK, SO_VM_SOCKETS_BUFFER_MAX_SIZE, &size, sizeof size);
  setsockopt(fd, AF_VSOCK, SO_VM_SOCKETS_BUFFER_SIZE, &size, sizeof size);
}

/* One connection: "send N\n" or "recv N\n", then the transfer. */
static void serve_one(int fd, int is_vsock) {
  char line[64] = {0};
  for (size_t i = 0; i + 1 < sizeof line; ++i) {
    recv_exact(fd, line + i, 1);
    if (line[i] == '\n') break;
  }
  unsigned long long bytes = 0, buffer_size = 0;
  char mode[8] = "";
  if (sscanf(line, "%7s %llu %llu", mode, &bytes, &buffer_size) != 3) {
    fprintf(stderr, "guest_stream: bad command \"%s\"\n", line);
    close(fd);
    return;
  }
  if (is_vsock) set_vsock_buffer(fd, buffer_size);
  if (strcmp(mode, "send") == 0) {
    send_bytes(fd, bytes);
    char done;
    recv_exact(fd, &done, 1); /* the receiver has it all */
  } else if (strcmp(mode, "recv") == 0) {
    recv_bytes(fd, bytes);
    send_all(fd, "k", 1);
  } else {
    fprintf(stderr, "guest_stream: bad command \"%s\"\n", line);
  }
  close(fd);
}

static int serve(unsigned vsock_port, unsigned tcp_port, int connections) {
  struct pollfd listeners[2] = {{listen_on(AF_VSOCK, vsock_port), POLLIN, 0},
                                {listen_on(AF_INET, tcp_port), POLLIN, 0}};
  printf("serving vsock port %u and tcp port %u\n", vsock_port, tcp_port);
  fflush(stdout);
  for (int served = 0; served < connections;) {
    if (poll(listeners, 2, -1) < 0 && errno != EINTR) die("poll");
    for (int i = 0; i < 2; ++i) {
      if (!(listeners[i].revents & POLLIN)) continue;
      int fd = accept4(listeners[i].fd, NULL, NULL, SOCK_CLOEXEC);
      if (fd < 0) die("accept");
      serve_one(fd, i == 0);
      ++served;
    }
  }
  return 0;
}

static int run(const char* transport, const char* address, unsigned port, const char* mode,
               unsigned long long bytes, unsigned long long buffer_size) {
  int fd;
  if (strcmp(transport, "vsock") == 0) {
#ifdef GUEST_STREAM_HOST
    /* On the host only the shim may handle AF_VSOCK: never the kernel's. */
    const char* preload = getenv("LD_PRELOAD");
    if (preload == NULL || strstr(preload, "libhvsock-preload") == NULL) {
      fprintf(stderr, "guest_stream: run vsock under hvsock run (the preload shim)\n");
      return 2;
    }
#endif
    fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_vm a = {
        .svm_family = AF_VSOCK, .svm_cid = (unsigned)strtoul(address, NULL, 10), .svm_port = port};
    if (fd < 0 || connect(fd, (struct sockaddr*)&a, sizeof a) != 0) die("connect vsock");
  } else {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (fd < 0 || inet_pton(AF_INET, address, &a.sin_addr) != 1 ||
        connect(fd, (struct sockaddr*)&a, sizeof a) != 0)
      die("connect tcp");
  }
  const int we_send = strcmp(mode, "send") == 0;
  char command[64];
  int n = snprintf(command, sizeof command, "%s %llu %llu\n", we_send ? "recv" : "send", bytes,
                   buffer_size);
  double start = now();
  send_all(fd, command, (size_t)n);
  if (we_send) {
    send_bytes(fd, bytes);
    char done;
    recv_exact(fd, &done, 1);
  } else {
    recv_bytes(fd, bytes);
    send_all(fd, "k", 1);
  }
  double seconds = now() - start;
  printf("RESULT %s %s %llu %llu %.4f %.2f\n", transport, mode, bytes, buffer_size, seconds,
         (double)bytes / seconds / 1e6);
  close(fd);
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 5 && strcmp(argv[1], "serve") == 0)
    return serve((unsigned)strtoul(argv[2], NULL, 10), (unsigned)strtoul(argv[3], NULL, 10),
                 atoi(argv[4]));
  if ((argc == 7 || argc == 8) && strcmp(argv[1], "run") == 0 &&
      (strcmp(argv[2], "vsock") == 0 || strcmp(argv[2], "tcp") == 0) &&
      (strcmp(argv[5], "send") == 0 || strcmp(argv[5], "recv") == 0))
    return run(argv[2], argv[3], (unsigned)strtoul(argv[4], NULL, 10), argv[5],
               strtoull(argv[6], NULL, 10), argc == 8 ? strtoull(argv[7], NULL, 10) : 0);
  fprintf(stderr,
          "usage: guest_stream serve VSOCK_PORT TCP_PORT CONNECTIONS\n"
          "       guest_stream run vsock|tcp CID|ADDRESS PORT send|recv BYTES [VSOCK_BUFFER]\n");
  return 2;
}
