// service_registry: registration, lookup and enable/disable of services.
#include "daemon/service_registry.hpp"

#include <fmt/format.h>

namespace hvsock::daemon {
namespace {

failure unknown_service(const service_id& id) {
  return failure(errc::not_found, fmt::format("service {} is not registered", id.to_string()));
}

}  // namespace

service_registry::service_registry(std::size_t max_services) : max_services_(max_services) {}

result<void> service_registry::check_name(std::string_view name) {
  if (name.empty()) return failure(errc::invalid_argument, "a service name may not be empty");
  if (name.size() > max_name_length)
    return failure(errc::invalid_argument,
                   fmt::format("service name \"{}...\" is longer than {} characters",
                               name.substr(0, 32), max_name_length));
  for (char c : name) {
    if (c < 0x20 || c > 0x7e)
      return failure(errc::invalid_argument,
                     "a service name may only contain printable ASCII characters");
  }
  if (name.front() == ' ' || name.back() == ' ')
    return failure(errc::invalid_argument,
                   fmt::format("service name \"{}\" starts or ends with a blank", name));
  if (guid::parse(name))
    return failure(errc::invalid_argument,
                   fmt::format("service name \"{}\" is a GUID; choose a name that is not", name));
  return {};
}

result<const service_entry*> service_registry::register_service(const service_id& id,
                                                                std::string name, bool enabled) {
  if (auto ok = check_name(name); !ok) return ok.error();
  if (auto it = by_id_.find(id); it != by_id_.end())
    return failure(errc::already_exists, fmt::format("service {} is already registered as \"{}\"",
                                                     id.to_string(), it->second.name));
  if (auto it = id_by_name_.find(name); it != id_by_name_.end())
    return failure(errc::already_exists,
                   fmt::format("a service named \"{}\" is already registered ({})", name,
                               it->second.to_string()));
  if (by_id_.size() >= max_services_)
    return failure(errc::limit_reached,
                   fmt::format("the registry already has {} services (the limit)", max_services_));
  id_by_name_.emplace(name, id);
  auto [it, inserted] = by_id_.emplace(id, service_entry{id, std::move(name), enabled, {}});
  return &it->second;
}

const service_entry* service_registry::find(const service_id& id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &it->second;
}

const service_entry* service_registry::find_by_name(std::string_view name) const {
  auto it = id_by_name_.find(name);
  return it == id_by_name_.end() ? nullptr : find(it->second);
}

result<const service_entry*> service_registry::resolve(std::string_view text) const {
  if (auto id = guid::parse(text)) {
    if (const service_entry* s = find(*id)) return s;
    return unknown_service(*id);
  }
  if (const service_entry* s = find_by_name(text)) return s;
  return failure(errc::not_found,
                 fmt::format("no service is registered with the GUID or name \"{}\"", text));
}

result<void> service_registry::set_enabled(const service_id& id, bool enabled) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return unknown_service(id);
  it->second.enabled = enabled;
  return {};
}

result<void> service_registry::set_enabled_for(const service_id& id, const vm_id& partition,
                                               bool enabled) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return unknown_service(id);
  if (enabled)
    it->second.disabled_for.erase(partition);
  else
    it->second.disabled_for.insert(partition);
  return {};
}

result<void> service_registry::remove(const service_id& id) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return unknown_service(id);
  id_by_name_.erase(it->second.name);
  by_id_.erase(it);
  return {};
}

void service_registry::forget_partition(const vm_id& partition) {
  for (auto& [id, entry] : by_id_) entry.disabled_for.erase(partition);
}

std::vector<const service_entry*> service_registry::list() const {
  std::vector<const service_entry*> out;
  out.reserve(id_by_name_.size());
  for (const auto& [name, id] : id_by_name_) out.push_back(find(id));
  return out;
}

}  // namespace hvsock::daemon
