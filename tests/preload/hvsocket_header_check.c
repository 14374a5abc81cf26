/* hvsocket_header_check: <hvsock/hvsocket.h> compiles and means what the
 * Windows SDK means. Built as C99, as C11 and (through
 * hvsocket_header_check.cpp) as C++; opens no socket, only checks constants
 * and the byte layout of SOCKADDR_HV. Prints "ok: ..." or "FAIL: ..." per
 * check and exits 0 only if all pass.
 *
 * The C++ build defines HVSOCKET_CHECK_NO_MAIN and calls
 * hvsocket_header_checks() from its own main. */
#include <hvsock/hvsocket.h>

#include <stdio.h>
#include <string.h>

/* A static assertion that works in C99 too: a negative array size. */
#define HVSOCKET_CHECK_STATIC(name, cond) typedef char hvsocket_check_##name[(cond) ? 1 : -1]

HVSOCKET_CHECK_STATIC(sockaddr_size, sizeof(SOCKADDR_HV) == 36);
HVSOCKET_CHECK_STATIC(family_offset, offsetof(SOCKADDR_HV, Family) == 0);
HVSOCKET_CHECK_STATIC(reserved_offset, offsetof(SOCKADDR_HV, Reserved) == 2);
HVSOCKET_CHECK_STATIC(vm_id_offset, offsetof(SOCKADDR_HV, VmId) == 4);
HVSOCKET_CHECK_STATIC(service_id_offset, offsetof(SOCKADDR_HV, ServiceId) == 20);
HVSOCKET_CHECK_STATIC(guid_size, sizeof(GUID) == 16);
HVSOCKET_CHECK_STATIC(family_value, AF_HYPERV == 34);
HVSOCKET_CHECK_STATIC(protocol_value, HV_PROTOCOL_RAW == 1);
HVSOCKET_CHECK_STATIC(timeout_value, HVSOCKET_CONNECT_TIMEOUT == 1);
HVSOCKET_CHECK_STATIC(timeout_max_value, HVSOCKET_CONNECT_TIMEOUT_MAX == 300000);
HVSOCKET_CHECK_STATIC(passthru_value, HVSOCKET_CONTAINER_PASSTHRU == 2);
HVSOCKET_CHECK_STATIC(suspend_value, HVSOCKET_CONNECTED_SUSPEND == 4);

/* A service GUID as the reference's snippets declare one. */
DEFINE_GUID(hvsocket_check_demo_service, 0x1f4e3b2a, 0x5c6d, 0x4e7f, 0x80, 0x91, 0xa2, 0xb3, 0xc4,
            0xd5, 0xe6, 0xf7);

static int hvsocket_check_failures = 0;

static void hvsocket_check(const char* what, int passed) {
  if (passed) {
    printf("ok: %s\n", what);
  } else {
    printf("FAIL: %s\n", what);
    ++hvsocket_check_failures;
  }
}

/* The Windows binary layout of a GUID, as SOCKADDR_HV carries it. */
static int hvsocket_check_bytes(const GUID* g, const unsigned char expected[16]) {
  return memcmp(g, expected, 16) == 0;
}

static int hvsocket_header_checks(void) {
  static const unsigned char parent[16] = {0xda, 0x7c, 0x2e, 0xa4, 0x3f, 0xd0, 0x0c, 0x48,
                                           0x9c, 0xc2, 0xa4, 0xde, 0x20, 0xab, 0xb8, 0x78};
  static const unsigned char port5000[16] = {0x88, 0x13, 0x00, 0x00, 0xcb, 0xfa, 0xe6, 0x11,
                                             0xbd, 0x58, 0x64, 0x00, 0x6a, 0x79, 0x86, 0xd3};
  static const unsigned char demo[16] = {0x2a, 0x3b, 0x4e, 0x1f, 0x6d, 0x5c, 0x7f, 0x4e,
                                         0x80, 0x91, 0xa2, 0xb3, 0xc4, 0xd5, 0xe6, 0xf7};
  SOCKADDR_HV addr;
  PSOCKADDR_HV paddr = &addr;
  const unsigned char* raw = (const unsigned char*)&addr;
  GUID service;
  uint32_t port = 0;
  int i, zero = 1;

  memset(&addr, 0, sizeof addr);
  addr.Family = AF_HYPERV;
  addr.VmId = HV_GUID_PARENT;
  addr.ServiceId = hv_service_id_from_vsock_port(5000);
  hvsocket_check("SOCKADDR_HV Family is the first two bytes, little-endian",
                 raw[0] == 34 && raw[1] == 0 && raw[2] == 0 && raw[3] == 0);
  hvsocket_check("SOCKADDR_HV VmId = HV_GUID_PARENT in Windows byte order",
                 memcmp(raw + 4, parent, 16) == 0);
  hvsocket_check("SOCKADDR_HV ServiceId = port 5000 in Windows byte order",
                 memcmp(raw + 20, port5000, 16) == 0);
  hvsocket_check("PSOCKADDR_HV points at a SOCKADDR_HV", paddr->Family == AF_HYPERV);

  hvsocket_check("DEFINE_GUID lays out Data1..Data4 as Windows does",
                 hvsocket_check_bytes(&hvsocket_check_demo_service, demo));
  for (i = 0; i < 16; ++i)
    if (((const unsigned char*)&HV_GUID_ZERO)[i] != 0) zero = 0;
  hvsocket_check("HV_GUID_ZERO is all zero bytes", zero);
  hvsocket_check("HV_GUID_WILDCARD is HV_GUID_ZERO",
                 hv_guid_equal(&HV_GUID_WILDCARD, &HV_GUID_ZERO));
  hvsocket_check("HV_GUID_BROADCAST is all ones",
                 HV_GUID_BROADCAST.Data1 == 0xffffffffu && HV_GUID_BROADCAST.Data4[7] == 0xff);
  hvsocket_check("HV_GUID_PARENT differs from HV_GUID_LOOPBACK",
                 !hv_guid_equal(&HV_GUID_PARENT, &HV_GUID_LOOPBACK));

  service = hv_service_id_from_vsock_port(5000);
  hvsocket_check("port 5000 is 00001388-facb-11e6-bd58-64006a7986d3",
                 service.Data1 == 0x1388 && service.Data2 == 0xfacb && service.Data3 == 0x11e6 &&
                     service.Data4[0] == 0xbd && service.Data4[7] == 0xd3);
  hvsocket_check("a template GUID gives its port back",
                 hv_vsock_port_from_service_id(&service, &port) == 1 && port == 5000);
  service = hv_service_id_from_vsock_port(0xffffffffu);
  hvsocket_check("port 0xffffffff round-trips",
                 hv_vsock_port_from_service_id(&service, &port) == 1 && port == 0xffffffffu);
  port = 42;
  hvsocket_check(
      "a non-template GUID has no port and leaves it alone",
      hv_vsock_port_from_service_id(&hvsocket_check_demo_service, &port) == 0 && port == 42);
  hvsocket_check("HV_GUID_VSOCK_TEMPLATE is port 0",
                 hv_vsock_port_from_service_id(&HV_GUID_VSOCK_TEMPLATE, &port) == 1 && port == 0);
  return hvsocket_check_failures;
}

#ifndef HVSOCKET_CHECK_NO_MAIN
int main(void) { return hvsocket_header_checks() == 0 ? 0 : 1; }
#endif
