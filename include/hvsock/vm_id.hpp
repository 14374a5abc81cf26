// VmIds: the partition half of an address, and the well-known values that
// select partitions by relation instead of by identity.
#pragma once

#include <optional>
#include <string_view>

#include <hvsock/guid.hpp>

namespace hvsock {

using vm_id = guid;

// HV_GUID_ZERO / HV_GUID_WILDCARD: a listener accepts from every partition
// allowed to reach it.
inline constexpr vm_id vm_id_wildcard = guid_literal("00000000-0000-0000-0000-000000000000");
// HV_GUID_BROADCAST: defined by the reference, with no meaning; always refused.
inline constexpr vm_id vm_id_broadcast = guid_literal("ffffffff-ffff-ffff-ffff-ffffffffffff");
// HV_GUID_CHILDREN: a listener accepts only from its child partitions.
inline constexpr vm_id vm_id_children = guid_literal("90db8b89-0d35-4f79-8ce9-49ea0ac8b7cd");
// HV_GUID_LOOPBACK: the caller's own partition.
inline constexpr vm_id vm_id_loopback = guid_literal("e0e16197-dd56-4a10-9195-5ee7a155a838");
// HV_GUID_PARENT: the caller's parent (a VM's host, a container's host).
inline constexpr vm_id vm_id_parent = guid_literal("a42e7cda-d03f-480c-9cc2-a4de20abb878");
// HV_GUID_SILOHOST: a container's silo host (Windows SDK).
inline constexpr vm_id vm_id_silohost = guid_literal("36bd0c5c-7276-4223-88ba-7d03b654c568");

enum class well_known_vm_id { wildcard, broadcast, children, loopback, parent, silohost };

// Which well-known value a VmId is, if any.
std::optional<well_known_vm_id> classify_vm_id(const vm_id& id);

// "wildcard", "broadcast", "children", "loopback", "parent", "silohost".
std::string_view well_known_name(well_known_vm_id which);

// The VmId for a user-facing word: "any"/"wildcard", "children", "loopback",
// "parent", "broadcast", "silohost"; nullopt for anything else.
std::optional<vm_id> vm_id_from_word(std::string_view word);

}  // namespace hvsock
