// ServiceIds, and the mapping between Linux vsock ports and service GUIDs:
// port P is the service "P-facb-11e6-bd58-64006a7986d3" (Data1 = P).
#pragma once

#include <cstdint>

#include <hvsock/guid.hpp>
#include <hvsock/result.hpp>

namespace hvsock {

using service_id = guid;

// The vsock template with Data1 = 0.
inline constexpr service_id vsock_template_service =
    guid_literal("00000000-facb-11e6-bd58-64006a7986d3");

// The largest port a listener may bind (the reference's listen range).
inline constexpr std::uint32_t max_listen_port = 0x7fffffff;

// The service GUID for vsock port `port` (any 32-bit value).
service_id service_id_from_port(std::uint32_t port);

// True when `id` has the template form (Data2..Data4 match the template).
bool is_vsock_template(const service_id& id);

// The port of a template-form service GUID; errc::no_vsock_port otherwise.
result<std::uint32_t> port_from_service_id(const service_id& id);

}  // namespace hvsock
