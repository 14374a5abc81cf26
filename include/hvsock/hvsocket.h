/* hvsocket.h: the Windows names of Hyper-V sockets for Linux programs, so
 * that C snippets written against the Windows SDK's <hvsocket.h> (Microsoft's
 * "Make your own integration services") compile on Linux unchanged, and run
 * inside an hvsockd partition under libhvsock-preload.so, the LD_PRELOAD shim
 * that emulates AF_HYPERV and AF_VSOCK sockets.
 *
 * C99 or later, or C++. Header only: no library to link. Everything here is a
 * constant, a type or a static inline function, so it is safe to include in
 * any number of translation units and from any thread.
 *
 * Differences from the Windows header, all forced by Linux:
 *  - AF_HYPERV (34) is AF_ISDN's number in the Linux kernel, which has no
 *    Hyper-V socket family: socket(AF_HYPERV, ...) works only under the shim.
 *  - The socket option level. The HVSOCKET_* options are set at level
 *    HV_PROTOCOL_RAW as on Windows, but on Linux that number (1) is
 *    SOL_SOCKET, where names 1, 2 and 4 are SO_DEBUG, SO_REUSEADDR and
 *    SO_ERROR. The shim tells them apart by the socket's family: on an
 *    AF_HYPERV socket, setsockopt(HV_PROTOCOL_RAW, HVSOCKET_*) is the Hyper-V
 *    option (CONNECT_TIMEOUT up to HVSOCKET_CONNECT_TIMEOUT_MAX, else EINVAL;
 *    CONTAINER_PASSTHRU and CONNECTED_SUSPEND are accepted and change
 *    nothing), and getsockopt(HV_PROTOCOL_RAW, HVSOCKET_CONNECT_TIMEOUT)
 *    reads the timeout; getsockopt of name 4 stays SO_ERROR, which Linux
 *    programs need. An option value is Windows' ULONG, 32 bits: use an
 *    `unsigned int` or uint32_t with optlen 4 (a Linux `unsigned long` is 64
 *    bits). There is no separate SOL_HYPERV level.
 *  - DEFINE_GUID defines a `static const GUID` in every translation unit that
 *    expands it (no INITGUID / extern dance).
 *  - GUID is the Windows struct; its in-memory layout is the Windows binary
 *    layout (Data1..Data3 little-endian) only on a little-endian machine, so
 *    the header refuses to compile on a big-endian one. */
#ifndef HVSOCK_HVSOCKET_H
#define HVSOCK_HVSOCKET_H

#include <stddef.h>
#include <stdint.h>

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && \
    __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "hvsock/hvsocket.h: SOCKADDR_HV carries GUIDs in Windows (little-endian) layout"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Address family and protocol, as socket(AF_HYPERV, SOCK_STREAM, HV_PROTOCOL_RAW). */
#ifndef AF_HYPERV
#define AF_HYPERV 34
#endif
#ifndef HV_PROTOCOL_RAW
#define HV_PROTOCOL_RAW 1
#endif
/* Socket options at level HV_PROTOCOL_RAW (see above), with the Windows
 * SDK's values as its Win32 metadata publishes them:
 * https://microsoft.github.io/windows-docs-rs/doc/windows/Win32/System/Hypervisor/constant.HVSOCKET_CONNECT_TIMEOUT.html
 * and the pages next to it for HVSOCKET_CONNECT_TIMEOUT_MAX,
 * HVSOCKET_CONTAINER_PASSTHRU, HVSOCKET_CONNECTED_SUSPEND and
 * HVSOCKET_ADDRESS_FLAG_PASSTHRU. */
#define HVSOCKET_CONNECT_TIMEOUT 0x01       /* ULONG, milliseconds */
#define HVSOCKET_CONNECT_TIMEOUT_MAX 300000 /* milliseconds: 5 minutes */
#define HVSOCKET_CONTAINER_PASSTHRU 0x02    /* ULONG, non-zero: pass through */
#define HVSOCKET_CONNECTED_SUSPEND 0x04     /* ULONG, non-zero: survive suspend */
#define HVSOCKET_ADDRESS_FLAG_PASSTHRU 0x00000001

#ifndef GUID_DEFINED
#define GUID_DEFINED
/* A GUID as Windows declares it. */
typedef struct hv_guid {
  uint32_t Data1;
  uint16_t Data2;
  uint16_t Data3;
  unsigned char Data4[8];
} GUID;
#endif

/* Defines `name` as a constant GUID in this translation unit. The unused
 * attribute keeps -Wunused quiet for the well-known GUIDs a file never uses. */
#if defined(__GNUC__) || defined(__clang__)
#define HV_GUID_UNUSED_ __attribute__((unused))
#else
#define HV_GUID_UNUSED_
#endif
#define HV_DEFINE_GUID(name, l, w1, w2, b1, b2, b3, b4, b5, b6, b7, b8) \
  static const GUID name HV_GUID_UNUSED_ = {                            \
      (l), (w1), (w2), {(b1), (b2), (b3), (b4), (b5), (b6), (b7), (b8)}}
#ifndef DEFINE_GUID
#define DEFINE_GUID HV_DEFINE_GUID
#endif

/* Well-known VmIds (the same values as include/hvsock/vm_id.hpp). */
HV_DEFINE_GUID(HV_GUID_ZERO, 0x00000000, 0x0000, 0x0000, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
               0x00);
#define HV_GUID_WILDCARD HV_GUID_ZERO
HV_DEFINE_GUID(HV_GUID_BROADCAST, 0xffffffff, 0xffff, 0xffff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
               0xff, 0xff);
HV_DEFINE_GUID(HV_GUID_CHILDREN, 0x90db8b89, 0x0d35, 0x4f79, 0x8c, 0xe9, 0x49, 0xea, 0x0a, 0xc8,
               0xb7, 0xcd);
HV_DEFINE_GUID(HV_GUID_LOOPBACK, 0xe0e16197, 0xdd56, 0x4a10, 0x91, 0x95, 0x5e, 0xe7, 0xa1, 0x55,
               0xa8, 0x38);
HV_DEFINE_GUID(HV_GUID_PARENT, 0xa42e7cda, 0xd03f, 0x480c, 0x9c, 0xc2, 0xa4, 0xde, 0x20, 0xab, 0xb8,
               0x78);
HV_DEFINE_GUID(HV_GUID_SILOHOST, 0x36bd0c5c, 0x7276, 0x4223, 0x88, 0xba, 0x7d, 0x03, 0xb6, 0x54,
               0xc5, 0x68);
/* Linux guests' services: vsock port P is this GUID with Data1 = P
 * (include/hvsock/service_id.hpp). */
HV_DEFINE_GUID(HV_GUID_VSOCK_TEMPLATE, 0x00000000, 0xfacb, 0x11e6, 0xbd, 0x58, 0x64, 0x00, 0x6a,
               0x79, 0x86, 0xd3);

/* The Hyper-V socket address: 36 bytes, GUIDs in Windows binary layout. */
typedef struct sockaddr_hv {
  unsigned short Family;   /* AF_HYPERV */
  unsigned short Reserved; /* 0 */
  GUID VmId;
  GUID ServiceId;
} SOCKADDR_HV, *PSOCKADDR_HV;

#ifdef __cplusplus
static_assert(sizeof(SOCKADDR_HV) == 36, "SOCKADDR_HV is 36 bytes");
static_assert(offsetof(SOCKADDR_HV, VmId) == 4, "VmId at offset 4");
static_assert(offsetof(SOCKADDR_HV, ServiceId) == 20, "ServiceId at offset 20");
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
_Static_assert(sizeof(SOCKADDR_HV) == 36, "SOCKADDR_HV is 36 bytes");
_Static_assert(offsetof(SOCKADDR_HV, VmId) == 4, "VmId at offset 4");
_Static_assert(offsetof(SOCKADDR_HV, ServiceId) == 20, "ServiceId at offset 20");
#endif

/* Non-zero when a and b are the same GUID. */
static inline int hv_guid_equal(const GUID* a, const GUID* b) {
  int i;
  if (a->Data1 != b->Data1 || a->Data2 != b->Data2 || a->Data3 != b->Data3) return 0;
  for (i = 0; i < 8; ++i)
    if (a->Data4[i] != b->Data4[i]) return 0;
  return 1;
}

/* The service GUID of vsock port `port`: HV_GUID_VSOCK_TEMPLATE, Data1 = port. */
static inline GUID hv_service_id_from_vsock_port(uint32_t port) {
  GUID id = HV_GUID_VSOCK_TEMPLATE;
  id.Data1 = port;
  return id;
}

/* Stores the vsock port of a template-form service GUID in *port and returns
 * non-zero; returns 0 and leaves *port alone for any other GUID. */
static inline int hv_vsock_port_from_service_id(const GUID* id, uint32_t* port) {
  GUID templ = *id;
  templ.Data1 = 0;
  if (!hv_guid_equal(&templ, &HV_GUID_VSOCK_TEMPLATE)) return 0;
  *port = id->Data1;
  return 1;
}

#ifdef __cplusplus
}
#endif

#endif /* HVSOCK_HVSOCKET_H */
