// endpoint: a full hvsock address (VmId, ServiceId), and its two wire forms:
// SOCKADDR_HV (Windows, 36 bytes, family AF_HYPERV = 34) and struct
// sockaddr_vm (Linux vsock, 16 bytes).
//
// VmId <-> CID: PARENT <-> VMADDR_CID_HOST (2), LOOPBACK <-> VMADDR_CID_LOCAL
// (1), WILDCARD <-> VMADDR_CID_ANY. Other CIDs name partitions, which only the
// switch knows: the conversions take an optional lookup for those.
#pragma once

#include <sys/socket.h>

#include <linux/vm_sockets.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include <hvsock/guid.hpp>
#include <hvsock/result.hpp>
#include <hvsock/service_id.hpp>
#include <hvsock/vm_id.hpp>

namespace hvsock {

struct endpoint {
  vm_id vm;
  service_id service;

  // "parent:00001388-facb-...", or "<vmid>:<serviceid>" for a specific VmId.
  std::string to_string() const;

  friend auto operator<=>(const endpoint&, const endpoint&) = default;
  friend bool operator==(const endpoint&, const endpoint&) = default;
};

inline constexpr std::uint16_t af_hyperv = 34;
inline constexpr int hv_protocol_raw = 1;

// SOCKADDR_HV exactly as the Windows SDK lays it out.
struct sockaddr_hv {
  std::uint16_t family;    // af_hyperv
  std::uint16_t reserved;  // 0
  guid::bytes vm_id;       // Windows binary layout
  guid::bytes service_id;  // Windows binary layout
};
static_assert(sizeof(sockaddr_hv) == 36);
static_assert(offsetof(sockaddr_hv, vm_id) == 4);
static_assert(offsetof(sockaddr_hv, service_id) == 20);

sockaddr_hv to_sockaddr_hv(const endpoint& ep);
// Checks length, family and reserved; errc::invalid_argument when wrong.
result<endpoint> endpoint_from_sockaddr_hv(const void* addr, std::size_t length);

// Maps a CID that is not well-known to a VmId (or a VmId to a CID).
using cid_to_vm_id = std::function<std::optional<vm_id>(std::uint32_t cid)>;
using vm_id_to_cid = std::function<std::optional<std::uint32_t>(const vm_id&)>;

// Needs a template-form service (errc::no_vsock_port) and a VmId with a CID
// (well-known, or found by `lookup`; errc::unknown_partition otherwise).
result<sockaddr_vm> to_sockaddr_vm(const endpoint& ep, const vm_id_to_cid& lookup = {});
result<endpoint> endpoint_from_sockaddr_vm(const void* addr, std::size_t length,
                                           const cid_to_vm_id& lookup = {});

}  // namespace hvsock
