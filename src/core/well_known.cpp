// Well-known VmIds and the vsock port <-> service GUID template.
#include <hvsock/service_id.hpp>
#include <hvsock/vm_id.hpp>

#include <string>

namespace hvsock {

std::optional<well_known_vm_id> classify_vm_id(const vm_id& id) {
  if (id == vm_id_wildcard) return well_known_vm_id::wildcard;
  if (id == vm_id_broadcast) return well_known_vm_id::broadcast;
  if (id == vm_id_children) return well_known_vm_id::children;
  if (id == vm_id_loopback) return well_known_vm_id::loopback;
  if (id == vm_id_parent) return well_known_vm_id::parent;
  if (id == vm_id_silohost) return well_known_vm_id::silohost;
  return std::nullopt;
}

std::string_view well_known_name(well_known_vm_id which) {
  switch (which) {
    case well_known_vm_id::wildcard: return "wildcard";
    case well_known_vm_id::broadcast: return "broadcast";
    case well_known_vm_id::children: return "children";
    case well_known_vm_id::loopback: return "loopback";
    case well_known_vm_id::parent: return "parent";
    case well_known_vm_id::silohost: return "silohost";
  }
  return "unknown";
}

std::optional<vm_id> vm_id_from_word(std::string_view word) {
  if (word == "any" || word == "wildcard") return vm_id_wildcard;
  if (word == "children") return vm_id_children;
  if (word == "loopback") return vm_id_loopback;
  if (word == "parent") return vm_id_parent;
  if (word == "broadcast") return vm_id_broadcast;
  if (word == "silohost") return vm_id_silohost;
  return std::nullopt;
}

service_id service_id_from_port(std::uint32_t port) {
  return service_id{port, vsock_template_service.data2(), vsock_template_service.data3(),
                    vsock_template_service.data4()};
}

bool is_vsock_template(const service_id& id) {
  return id.data2() == vsock_template_service.data2() &&
         id.data3() == vsock_template_service.data3() &&
         id.data4() == vsock_template_service.data4();
}

result<std::uint32_t> port_from_service_id(const service_id& id) {
  if (!is_vsock_template(id))
    return failure(errc::no_vsock_port, "service " + id.to_string() +
                                            " has no vsock port (not of the form "
                                            "xxxxxxxx-facb-11e6-bd58-64006a7986d3)");
  return id.data1();
}

}  // namespace hvsock
