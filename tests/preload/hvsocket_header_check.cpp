// The checks of hvsocket_header_check.c compiled as C++, plus: every
// well-known GUID of <hvsock/hvsocket.h> has the same Windows bytes as
// libhvsock's own constant (vm_id.hpp, service_id.hpp), so the C header and
// the library cannot drift apart.
#define HVSOCKET_CHECK_NO_MAIN
#include "hvsocket_header_check.c"

#include <cstring>

#include <hvsock/endpoint.hpp>
#include <hvsock/service_id.hpp>
#include <hvsock/vm_id.hpp>

namespace {

bool same_bytes(const GUID& c_guid, const hvsock::guid& cpp_guid) {
  const auto bytes = cpp_guid.to_windows_bytes();
  return std::memcmp(&c_guid, bytes.data(), bytes.size()) == 0;
}

}  // namespace

int main() {
  hvsocket_header_checks();
  auto check = [](const char* what, bool passed) { hvsocket_check(what, passed ? 1 : 0); };
  check("C++: HV_GUID_ZERO == hvsock::vm_id_wildcard",
        same_bytes(HV_GUID_ZERO, hvsock::vm_id_wildcard));
  check("C++: HV_GUID_BROADCAST == hvsock::vm_id_broadcast",
        same_bytes(HV_GUID_BROADCAST, hvsock::vm_id_broadcast));
  check("C++: HV_GUID_CHILDREN == hvsock::vm_id_children",
        same_bytes(HV_GUID_CHILDREN, hvsock::vm_id_children));
  check("C++: HV_GUID_LOOPBACK == hvsock::vm_id_loopback",
        same_bytes(HV_GUID_LOOPBACK, hvsock::vm_id_loopback));
  check("C++: HV_GUID_PARENT == hvsock::vm_id_parent",
        same_bytes(HV_GUID_PARENT, hvsock::vm_id_parent));
  check("C++: HV_GUID_SILOHOST == hvsock::vm_id_silohost",
        same_bytes(HV_GUID_SILOHOST, hvsock::vm_id_silohost));
  check("C++: HV_GUID_VSOCK_TEMPLATE == hvsock::vsock_template_service",
        same_bytes(HV_GUID_VSOCK_TEMPLATE, hvsock::vsock_template_service));
  check("C++: port helpers agree with hvsock::service_id_from_port",
        same_bytes(hv_service_id_from_vsock_port(0x7fffffff),
                   hvsock::service_id_from_port(0x7fffffff)));
  check("C++: AF_HYPERV == hvsock::af_hyperv", AF_HYPERV == hvsock::af_hyperv);
  check("C++: HV_PROTOCOL_RAW == hvsock::hv_protocol_raw",
        HV_PROTOCOL_RAW == hvsock::hv_protocol_raw);
  check("C++: SOCKADDR_HV and hvsock::sockaddr_hv have one size",
        sizeof(SOCKADDR_HV) == sizeof(hvsock::sockaddr_hv));
  return hvsocket_check_failures == 0 ? 0 : 1;
}
