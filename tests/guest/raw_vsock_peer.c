/* raw_vsock_peer: runs inside the QEMU guest as an unmodified Linux program
 * would, with raw AF_VSOCK calls and no libhvsock. The same echo protocol as
 * echo_peer.cpp (see echo_pattern.h), so either can face the other.
 *
 *   raw_vsock_peer connect CID PORT CONNECTIONS BYTES
 *       CONNECTIONS concurrent connections to CID:PORT; each sends BYTES of
 *       the pattern, half-closes and checks the echo. Exit 0 when all match;
 *       a failed connect prints "connect: errno N" and exits 3.
 *   raw_vsock_peer serve PORT CONNECTIONS
 *       listen on VMADDR_CID_ANY:PORT, print "listening", echo CONNECTIONS
 *       connections concurrently (each until EOF, then half-close).
 *
 * Exit 2 for a usage error, 1 for any other failure. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

#include "echo_pattern.h"

#define CHUNK 65536
#define MAX_CONNECTIONS 256

struct connection {
  int fd;
  uint64_t seed, bytes;
  uint64_t got, sent_hash, got_hash;
  int write_errno;
  char error[128];
};

static void* writer_main(void* arg) {
  struct connection* c = arg;
  static __thread unsigned char buf[CHUNK];
  uint64_t sent = 0;
  c->sent_hash = ECHO_FNV_INIT;
  while (sent < c->bytes) {
    size_t n = c->bytes - sent < CHUNK ? (size_t)(c->bytes - sent) : CHUNK;
    for (size_t i = 0; i < n; ++i) buf[i] = echo_pattern_byte(c->seed, sent + i);
    c->sent_hash = echo_fnv(c->sent_hash, buf, n);
    for (size_t off = 0; off < n;) {
      ssize_t w = send(c->fd, buf + off, n - off, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EINTR) continue;
        c->write_errno = errno;
        return NULL;
      }
      off += (size_t)w;
    }
    sent += n;
  }
  shutdown(c->fd, SHUT_WR);
  return NULL;
}

/* Sends on a second thread while this one reads and checks the echo. */
static void* echo_check_main(void* arg) {
  struct connection* c = arg;
  static __thread unsigned char buf[CHUNK];
  pthread_t writer;
  if (pthread_create(&writer, NULL, writer_main, c) != 0) {
    snprintf(c->error, sizeof c->error, "pthread_create failed");
    return NULL;
  }
  c->got_hash = ECHO_FNV_INIT;
  for (;;) {
    ssize_t r = read(c->fd, buf, sizeof buf);
    if (r < 0) {
      if (errno == EINTR) continue;
      snprintf(c->error, sizeof c->error, "read: errno %d after %llu bytes", errno,
               (unsigned long long)c->got);
      break;
    }
    if (r == 0) break;
    for (ssize_t i = 0; i < r; ++i)
      if (buf[i] != echo_pattern_byte(c->seed, c->got + (uint64_t)i)) {
        snprintf(c->error, sizeof c->error, "data mismatch at byte %llu",
                 (unsigned long long)(c->got + (uint64_t)i));
        break;
      }
    if (c->error[0]) break;
    c->got_hash = echo_fnv(c->got_hash, buf, (size_t)r);
    c->got += (uint64_t)r;
  }
  if (c->error[0]) shutdown(c->fd, SHUT_RDWR); /* unblocks the writer */
  pthread_join(writer, NULL);
  if (!c->error[0] && c->write_errno)
    snprintf(c->error, sizeof c->error, "write: errno %d", c->write_errno);
  if (!c->error[0] && c->got != c->bytes)
    snprintf(c->error, sizeof c->error, "EOF after %llu of %llu bytes", (unsigned long long)c->got,
             (unsigned long long)c->bytes);
  if (!c->error[0] && c->got_hash != c->sent_hash)
    snprintf(c->error, sizeof c->error, "checksum sent %016llx, got %016llx",
             (unsigned long long)c->sent_hash, (unsigned long long)c->got_hash);
  return NULL;
}

static int connect_and_echo(unsigned cid, unsigned port, int count, uint64_t bytes) {
  static struct connection conns[MAX_CONNECTIONS];
  pthread_t threads[MAX_CONNECTIONS];
  for (int i = 0; i < count; ++i) {
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      printf("socket: errno %d\n", errno);
      return 1;
    }
    struct sockaddr_vm addr;
    memset(&addr, 0, sizeof addr);
    addr.svm_family = AF_VSOCK;
    addr.svm_cid = cid;
    addr.svm_port = port;
    if (connect(fd, (struct sockaddr*)&addr, sizeof addr) < 0) {
      printf("connect: errno %d\n", errno);
      return 3;
    }
    conns[i].fd = fd;
    conns[i].seed = (uint64_t)i;
    conns[i].bytes = bytes;
  }
  printf("connected %d to %u:%u\n", count, cid, port);
  for (int i = 0; i < count; ++i)
    if (pthread_create(&threads[i], NULL, echo_check_main, &conns[i]) != 0) {
      printf("pthread_create failed\n");
      return 1;
    }
  int failed = 0;
  for (int i = 0; i < count; ++i) {
    pthread_join(threads[i], NULL);
    close(conns[i].fd);
    if (conns[i].error[0]) {
      ++failed;
      printf("connection %d: FAIL: %s\n", i, conns[i].error);
    }
  }
  if (count == 1 && !failed)
    printf("checksum %016llx both ways\n", (unsigned long long)conns[0].got_hash);
  printf("echo %s: %d connections, %llu bytes each way each, %d failed\n", failed ? "FAILED" : "ok",
         count, (unsigned long long)bytes, failed);
  return failed ? 1 : 0;
}

static void* echo_serve_main(void* arg) {
  int fd = (int)(intptr_t)arg;
  static __thread unsigned char buf[CHUNK];
  for (;;) {
    ssize_t r = read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    for (ssize_t off = 0; off < r;) {
      ssize_t w = send(fd, buf + off, (size_t)(r - off), MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        close(fd);
        return (void*)1;
      }
      off += w;
    }
  }
  shutdown(fd, SHUT_WR);
  /* The kernel sends queued data after close() returns; lingering makes close
   * wait for the peer to take it, so the guest may power off right after. */
  struct linger wait_for_peer = {1, 30};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &wait_for_peer, sizeof wait_for_peer);
  close(fd);
  return NULL;
}

static int serve(unsigned port, int count) {
  int l = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_vm addr;
  memset(&addr, 0, sizeof addr);
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = VMADDR_CID_ANY;
  addr.svm_port = port;
  if (l < 0 || bind(l, (struct sockaddr*)&addr, sizeof addr) < 0 || listen(l, 64) < 0) {
    printf("listen: errno %d\n", errno);
    return 1;
  }
  printf("listening on port %u\n", port);
  fflush(stdout);
  pthread_t threads[MAX_CONNECTIONS];
  for (int i = 0; i < count; ++i) {
    struct sockaddr_vm peer;
    socklen_t len = sizeof peer;
    int fd = accept(l, (struct sockaddr*)&peer, &len);
    if (fd < 0) {
      printf("accept: errno %d\n", errno);
      return 1;
    }
    printf("connection %d from %u:%u\n", i, peer.svm_cid, peer.svm_port);
    if (pthread_create(&threads[i], NULL, echo_serve_main, (void*)(intptr_t)fd) != 0) return 1;
  }
  int failed = 0;
  for (int i = 0; i < count; ++i) {
    void* r;
    pthread_join(threads[i], &r);
    failed += r != NULL;
  }
  printf("served %d connections, %d failed\n", count, failed);
  return failed ? 1 : 0;
}

static int usage(void) {
  fprintf(stderr,
          "usage: raw_vsock_peer connect CID PORT CONNECTIONS BYTES\n"
          "       raw_vsock_peer serve PORT CONNECTIONS\n");
  return 2;
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc == 6 && strcmp(argv[1], "connect") == 0) {
    int count = atoi(argv[4]);
    if (count < 1 || count > MAX_CONNECTIONS) return usage();
    return connect_and_echo((unsigned)strtoul(argv[2], NULL, 10),
                            (unsigned)strtoul(argv[3], NULL, 10), count,
                            strtoull(argv[5], NULL, 10));
  }
  if (argc == 4 && strcmp(argv[1], "serve") == 0) {
    int count = atoi(argv[3]);
    if (count < 1 || count > MAX_CONNECTIONS) return usage();
    return serve((unsigned)strtoul(argv[2], NULL, 10), count);
  }
  return usage();
}
