// service_registry: the switch's GuestCommunicationServices. A service is a
// GUID plus a friendly ElementName; registration is what lets a connection
// for it cross the switch. A service can be disabled everywhere, or only for
// some partitions (a set of VmIds) while staying enabled elsewhere.
//
// Thread safety: none; a plain value (copyable, so callers can snapshot it
// and roll back a change that could not be persisted). Pointers returned by
// lookups stay valid until that service is removed or the registry is
// assigned.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <hvsock/result.hpp>
#include <hvsock/service_id.hpp>
#include <hvsock/vm_id.hpp>

namespace hvsock::daemon {

struct service_entry {
  service_id id;
  std::string name;  // ElementName
  bool enabled = true;
  std::set<vm_id> disabled_for;  // partitions for which it is disabled
};

class service_registry {
 public:
  static constexpr std::size_t max_name_length = 256;
  static constexpr std::size_t default_max_services = 65536;

  explicit service_registry(std::size_t max_services = default_max_services);

  // An ElementName is 1..256 printable ASCII characters, without leading or
  // trailing blanks, and not itself a GUID (so that "GUID or ElementName"
  // is never ambiguous).
  static result<void> check_name(std::string_view name);

  // Errors: invalid_argument (name), already_exists (id or name taken),
  // limit_reached. On error the registry is unchanged.
  result<const service_entry*> register_service(const service_id& id, std::string name,
                                                bool enabled = true);

  const service_entry* find(const service_id& id) const;
  const service_entry* find_by_name(std::string_view name) const;
  // A user's word for a service: its GUID (any accepted spelling) or its
  // ElementName. errc::not_found names what was looked for.
  result<const service_entry*> resolve(std::string_view text) const;

  // errc::not_found for an unknown id.
  result<void> set_enabled(const service_id& id, bool enabled);
  // Adds (enabled = false) or drops (true) the override for one partition.
  result<void> set_enabled_for(const service_id& id, const vm_id& partition, bool enabled);
  result<void> remove(const service_id& id);
  // Drops every override that names `partition` (it was removed).
  void forget_partition(const vm_id& partition);

  // Whether a connection touching `partition` may use the service.
  static bool allowed_for(const service_entry& entry, const vm_id& partition) {
    return entry.enabled && !entry.disabled_for.contains(partition);
  }

  // Every service, by ElementName.
  std::vector<const service_entry*> list() const;
  std::size_t size() const { return by_id_.size(); }

 private:
  std::size_t max_services_;
  std::map<service_id, service_entry> by_id_;
  std::map<std::string, service_id, std::less<>> id_by_name_;
};

}  // namespace hvsock::daemon
