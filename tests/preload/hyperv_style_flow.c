/* The reference's Hyper-V socket flow, written in its Windows style
 * (AF_HYPERV, HV_PROTOCOL_RAW, SOCKADDR_HV, HV_GUID_*, DEFINE_GUID) against
 * <hvsock/hvsocket.h>, and run on Linux under the preload shim.
 *
 *   hyperv_style_flow server   host side: bind HV_GUID_WILDCARD, accept one
 *                              client, print its VmId, answer its message
 *   hyperv_style_flow client   guest side: connect to HV_GUID_PARENT, send,
 *                              print the answer
 *   hyperv_style_flow checks   the Windows-style calls' error cases
 *
 * The service is SERVICE_GUID below; register it first:
 *   hvsock service register --name "Windows-style flow" --id 4a2e0c5b-...
 * Prints one line per step; exits 0 on success. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hvsock/hvsocket.h>

DEFINE_GUID(SERVICE_GUID, 0x4a2e0c5b, 0x9d13, 0x4c6e, 0x8f, 0x21, 0x3b, 0x7d, 0x5e, 0x90, 0xa1,
            0xc4);
DEFINE_GUID(UNREGISTERED_GUID, 0x4a2e0c5b, 0x9d13, 0x4c6e, 0x8f, 0x21, 0x3b, 0x7d, 0x5e, 0x90, 0xa1,
            0xc5);

static void print_guid(const char* what, const GUID* g) {
  printf("%s %08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x\n", what, g->Data1, g->Data2,
         g->Data3, g->Data4[0], g->Data4[1], g->Data4[2], g->Data4[3], g->Data4[4], g->Data4[5],
         g->Data4[6], g->Data4[7]);
}

static SOCKADDR_HV address(GUID vm_id, GUID service_id) {
  SOCKADDR_HV addr;
  memset(&addr, 0, sizeof addr);
  addr.Family = AF_HYPERV;
  addr.VmId = vm_id;
  addr.ServiceId = service_id;
  return addr;
}

static int server(void) {
  int listen_socket = socket(AF_HYPERV, SOCK_STREAM, HV_PROTOCOL_RAW);
  SOCKADDR_HV server_addr = address(HV_GUID_WILDCARD, SERVICE_GUID);
  if (listen_socket < 0 ||
      bind(listen_socket, (struct sockaddr*)&server_addr, sizeof server_addr) != 0 ||
      listen(listen_socket, SOMAXCONN) != 0) {
    printf("listen failed: errno %d\n", errno);
    return 1;
  }
  printf("listening\n");
  fflush(stdout);
  SOCKADDR_HV client_addr;
  socklen_t len = sizeof client_addr;
  int client = accept(listen_socket, (struct sockaddr*)&client_addr, &len);
  if (client < 0 || len != sizeof client_addr || client_addr.Family != AF_HYPERV) {
    printf("accept failed: errno %d\n", errno);
    return 1;
  }
  print_guid("client VmId", &client_addr.VmId);
  char message[128] = {0};
  ssize_t n = recv(client, message, sizeof message - 1, 0);
  printf("received: %s\n", n > 0 ? message : "(nothing)");
  const char reply[] = "hello from the host";
  send(client, reply, sizeof reply - 1, 0);
  shutdown(client, SHUT_WR);
  close(client);
  close(listen_socket);
  return n > 0 ? 0 : 1;
}

static int client(void) {
  int s = socket(AF_HYPERV, SOCK_STREAM, HV_PROTOCOL_RAW);
  unsigned long timeout_ms = 5000;
  unsigned int timeout = (unsigned int)timeout_ms;
  setsockopt(s, HV_PROTOCOL_RAW, HVSOCKET_CONNECT_TIMEOUT, &timeout, sizeof timeout);
  SOCKADDR_HV server_addr = address(HV_GUID_PARENT, SERVICE_GUID);
  if (s < 0 || connect(s, (struct sockaddr*)&server_addr, sizeof server_addr) != 0) {
    printf("connect failed: errno %d\n", errno);
    return 1;
  }
  SOCKADDR_HV local;
  socklen_t len = sizeof local;
  if (getsockname(s, (struct sockaddr*)&local, &len) == 0) print_guid("local VmId", &local.VmId);
  const char message[] = "hello from the guest";
  send(s, message, sizeof message - 1, 0);
  shutdown(s, SHUT_WR);
  char reply[128] = {0};
  size_t got = 0;
  for (ssize_t n; (n = recv(s, reply + got, sizeof reply - 1 - got, 0)) > 0;) got += (size_t)n;
  printf("reply: %s\n", reply);
  close(s);
  return strcmp(reply, "hello from the host") == 0 ? 0 : 1;
}

static int failures;

static void expect(int result, int wanted_errno, const char* what) {
  int ok = wanted_errno == 0 ? result == 0 : result == -1 && errno == wanted_errno;
  printf("%s: %s (result %d, errno %d)\n", ok ? "ok" : "FAIL", what, result, result ? errno : 0);
  failures += !ok;
}

static int checks(void) {
  int s = socket(AF_HYPERV, SOCK_STREAM, HV_PROTOCOL_RAW);
  int value = 0;
  socklen_t len = sizeof value;
  expect(getsockopt(s, SOL_SOCKET, SO_DOMAIN, &value, &len) == 0 && value == AF_HYPERV ? 0 : -1, 0,
         "SO_DOMAIN is AF_HYPERV");
  expect(getsockopt(s, SOL_SOCKET, SO_PROTOCOL, &value, &len) == 0 && value == HV_PROTOCOL_RAW ? 0
                                                                                               : -1,
         0, "SO_PROTOCOL is HV_PROTOCOL_RAW");
  unsigned int too_long = HVSOCKET_CONNECT_TIMEOUT_MAX + 1;
  expect(setsockopt(s, HV_PROTOCOL_RAW, HVSOCKET_CONNECT_TIMEOUT, &too_long, sizeof too_long),
         EINVAL, "HVSOCKET_CONNECT_TIMEOUT above HVSOCKET_CONNECT_TIMEOUT_MAX");
  SOCKADDR_HV to = address(HV_GUID_PARENT, UNREGISTERED_GUID);
  expect(connect(s, (struct sockaddr*)&to, sizeof to), ECONNRESET,
         "connect to an unregistered service");
  to = address(HV_GUID_WILDCARD, SERVICE_GUID);
  expect(connect(s, (struct sockaddr*)&to, sizeof to), EINVAL, "connect to HV_GUID_WILDCARD");
  expect(connect(s, (struct sockaddr*)&to, sizeof to - 1), EINVAL, "connect with a short address");
  close(s);

  s = socket(AF_HYPERV, SOCK_STREAM, HV_PROTOCOL_RAW);
  SOCKADDR_HV local = address(HV_GUID_BROADCAST, SERVICE_GUID);
  expect(bind(s, (struct sockaddr*)&local, sizeof local), EADDRNOTAVAIL, "bind HV_GUID_BROADCAST");
  local = address(HV_GUID_CHILDREN, SERVICE_GUID);
  expect(bind(s, (struct sockaddr*)&local, sizeof local), 0, "bind HV_GUID_CHILDREN");
  SOCKADDR_HV name;
  len = sizeof name;
  expect(getsockname(s, (struct sockaddr*)&name, &len) == 0 && len == sizeof name &&
                 name.Family == AF_HYPERV && hv_guid_equal(&name.VmId, &HV_GUID_CHILDREN) &&
                 hv_guid_equal(&name.ServiceId, &SERVICE_GUID)
             ? 0
             : -1,
         0, "getsockname gives the bound SOCKADDR_HV");
  int second = socket(AF_HYPERV, SOCK_STREAM, HV_PROTOCOL_RAW);
  expect(bind(second, (struct sockaddr*)&local, sizeof local), EADDRINUSE,
         "a second bind of the same address");
  close(second);
  close(s);
  expect(socket(AF_HYPERV, SOCK_DGRAM, HV_PROTOCOL_RAW) == -1 ? -1 : 0, ESOCKTNOSUPPORT,
         "SOCK_DGRAM is not supported");
  printf("%d failed\n", failures);
  return failures == 0 ? 0 : 1;
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc == 2 && strcmp(argv[1], "server") == 0) return server();
  if (argc == 2 && strcmp(argv[1], "client") == 0) return client();
  if (argc == 2 && strcmp(argv[1], "checks") == 0) return checks();
  fprintf(stderr, "usage: hyperv_style_flow server|client|checks\n");
  return 2;
}
