// endpoint text form and the SOCKADDR_HV / sockaddr_vm conversions.
#include <hvsock/endpoint.hpp>

#include <cstring>

namespace hvsock {

std::string endpoint::to_string() const {
  const auto known = classify_vm_id(vm);
  std::string text = known ? std::string(well_known_name(*known)) : vm.to_string();
  return text + ":" + service.to_string();
}

sockaddr_hv to_sockaddr_hv(const endpoint& ep) {
  sockaddr_hv addr{};
  addr.family = af_hyperv;
  addr.reserved = 0;
  addr.vm_id = ep.vm.to_windows_bytes();
  addr.service_id = ep.service.to_windows_bytes();
  return addr;
}

result<endpoint> endpoint_from_sockaddr_hv(const void* addr, std::size_t length) {
  if (addr == nullptr || length < sizeof(sockaddr_hv))
    return failure(errc::invalid_argument, "SOCKADDR_HV: expected " +
                                               std::to_string(sizeof(sockaddr_hv)) +
                                               " bytes, got " + std::to_string(length));
  sockaddr_hv raw;
  std::memcpy(&raw, addr, sizeof raw);
  if (raw.family != af_hyperv)
    return failure(errc::invalid_argument,
                   "SOCKADDR_HV: family " + std::to_string(raw.family) + " is not AF_HYPERV (34)");
  if (raw.reserved != 0) return failure(errc::invalid_argument, "SOCKADDR_HV: Reserved must be 0");
  return endpoint{guid::from_windows_bytes(raw.vm_id), guid::from_windows_bytes(raw.service_id)};
}

result<sockaddr_vm> to_sockaddr_vm(const endpoint& ep, const vm_id_to_cid& lookup) {
  auto port = port_from_service_id(ep.service);
  if (!port) return port.error();
  std::uint32_t cid = 0;
  if (ep.vm == vm_id_parent) {
    cid = VMADDR_CID_HOST;
  } else if (ep.vm == vm_id_loopback) {
    cid = VMADDR_CID_LOCAL;
  } else if (ep.vm == vm_id_wildcard) {
    cid = VMADDR_CID_ANY;
  } else if (ep.vm == vm_id_broadcast) {
    return failure(errc::broadcast_not_allowed, "the broadcast VmId has no vsock CID");
  } else if (auto found = lookup ? lookup(ep.vm) : std::nullopt) {
    cid = *found;
  } else {
    return failure(errc::unknown_partition, "VmId " + ep.vm.to_string() + " has no vsock CID");
  }
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_port = *port;
  addr.svm_cid = cid;
  return addr;
}

result<endpoint> endpoint_from_sockaddr_vm(const void* addr, std::size_t length,
                                           const cid_to_vm_id& lookup) {
  if (addr == nullptr || length < sizeof(sockaddr_vm))
    return failure(errc::invalid_argument, "sockaddr_vm: expected " +
                                               std::to_string(sizeof(sockaddr_vm)) +
                                               " bytes, got " + std::to_string(length));
  sockaddr_vm raw;
  std::memcpy(&raw, addr, sizeof raw);
  if (raw.svm_family != AF_VSOCK)
    return failure(errc::invalid_argument, "sockaddr_vm: family " + std::to_string(raw.svm_family) +
                                               " is not AF_VSOCK (40)");
  vm_id vm;
  if (raw.svm_cid == VMADDR_CID_HOST) {
    vm = vm_id_parent;
  } else if (raw.svm_cid == VMADDR_CID_LOCAL) {
    vm = vm_id_loopback;
  } else if (raw.svm_cid == VMADDR_CID_ANY) {
    vm = vm_id_wildcard;
  } else if (auto found = lookup ? lookup(raw.svm_cid) : std::nullopt) {
    vm = *found;
  } else {
    return failure(errc::unknown_partition, "no partition has CID " + std::to_string(raw.svm_cid));
  }
  return endpoint{vm, service_id_from_port(raw.svm_port)};
}

}  // namespace hvsock
