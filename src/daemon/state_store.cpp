// state_store: JSON (de)serialization of the switch state and the atomic
// file replacement that persists it.
#include "daemon/state_store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <stdexcept>
#include <utility>
#include <vector>

#include <hvsock/unique_fd.hpp>

#include "sys/file_io.hpp"

namespace hvsock::daemon {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

// Thrown (and caught within this file) when the content is not valid state;
// the message says where and what.
struct invalid_state : std::runtime_error {
  using std::runtime_error::runtime_error;
};

const json& member(const json& object, const char* key, const std::string& where) {
  auto it = object.find(key);
  if (it == object.end()) throw invalid_state(fmt::format("{}: \"{}\" is missing", where, key));
  return *it;
}

std::string string_member(const json& object, const char* key, const std::string& where) {
  const json& v = member(object, key, where);
  if (!v.is_string()) throw invalid_state(fmt::format("{}: \"{}\" must be a string", where, key));
  return v.get<std::string>();
}

guid guid_member(const json& object, const char* key, const std::string& where) {
  auto parsed = guid::parse(string_member(object, key, where));
  if (!parsed)
    throw invalid_state(fmt::format("{}: \"{}\": {}", where, key, parsed.error().message()));
  return *parsed;
}

const json& array_member(const json& object, const char* key, const std::string& where) {
  const json& v = member(object, key, where);
  if (!v.is_array()) throw invalid_state(fmt::format("{}: \"{}\" must be an array", where, key));
  return v;
}

void check(const result<void>& r, const std::string& where) {
  if (!r) throw invalid_state(fmt::format("{}: {}", where, r.error().message()));
}

switch_state parse_state(const json& root, const state_limits& limits) {
  if (!root.is_object()) throw invalid_state("the top level must be a JSON object");
  const json& format = member(root, "format", "top level");
  if (!format.is_number_integer() || format.get<long long>() != state_store::format_version)
    throw invalid_state(fmt::format("\"format\" is {}, this hvsockd only reads format {}",
                                    format.dump(), state_store::format_version));

  const json& host = member(root, "host", "top level");
  if (!host.is_object()) throw invalid_state("\"host\" must be an object");
  const vm_id host_id = guid_member(host, "id", "host");
  check(partition_tree::check_id(host_id), "host");
  switch_state state{partition_tree(host_id, limits.max_partitions),
                     service_registry(limits.max_services)};

  // Parents must exist before their children; a hand-edited file may list
  // them in any order, so keep adding until no progress is made.
  std::vector<std::pair<partition_spec, std::string>> pending;
  const json& partitions = array_member(root, "partitions", "top level");
  for (std::size_t i = 0; i < partitions.size(); ++i) {
    const json& p = partitions[i];
    std::string where = fmt::format("partitions[{}]", i);
    if (!p.is_object()) throw invalid_state(where + ": must be an object");
    partition_spec spec;
    spec.name = string_member(p, "name", where);
    where += fmt::format(" (\"{}\")", spec.name);
    const std::string kind = string_member(p, "kind", where);
    auto parsed_kind = partition_kind_from_string(kind);
    if (!parsed_kind || *parsed_kind == partition_kind::host)
      throw invalid_state(
          fmt::format("{}: \"kind\" is \"{}\", expected \"vm\" or \"container\"", where, kind));
    spec.kind = *parsed_kind;
    spec.parent = string_member(p, "parent", where);
    spec.id = guid_member(p, "id", where);
    const json& cid = member(p, "cid", where);
    if (!cid.is_number_unsigned() || cid.get<unsigned long long>() > 0xffffffffULL)
      throw invalid_state(where + ": \"cid\" must be an integer from 0 to 4294967295");
    spec.cid = cid.get<std::uint32_t>();
    // "backend" is optional: absent means an emulated partition.
    if (auto backend = p.find("backend"); backend != p.end()) {
      if (!backend->is_string() ||
          (*backend != "qemu" && *backend != "emulated" && *backend != "hybrid"))
        throw invalid_state(where + ": \"backend\" must be \"emulated\", \"qemu\" or \"hybrid\"");
      spec.qemu = *backend == "qemu";
      if (*backend == "hybrid") {
        auto path = p.find("hybrid_vsock");
        if (path == p.end() || !path->is_string())
          throw invalid_state(where + ": a \"hybrid\" partition needs \"hybrid_vsock\", a path");
        spec.hybrid_vsock = path->get<std::string>();
        if (spec.hybrid_vsock.empty()) throw invalid_state(where + ": \"hybrid_vsock\" is empty");
      }
    }
    // "qmp_socket" is optional too (partition_tree::create checks it).
    if (auto qmp = p.find("qmp_socket"); qmp != p.end() && !qmp->is_null()) {
      if (!qmp->is_string()) throw invalid_state(where + ": \"qmp_socket\" must be a string");
      spec.qmp_socket = qmp->get<std::string>();
    }
    pending.emplace_back(std::move(spec), std::move(where));
  }
  while (!pending.empty()) {
    std::vector<std::pair<partition_spec, std::string>> waiting;
    for (auto& [spec, where] : pending) {
      if (state.partitions.find(spec.parent) == nullptr) {
        waiting.emplace_back(std::move(spec), std::move(where));
        continue;
      }
      auto created = state.partitions.create(spec);
      if (!created) throw invalid_state(fmt::format("{}: {}", where, created.error().message()));
    }
    if (waiting.size() == pending.size()) {
      const auto& [spec, where] = waiting.front();
      throw invalid_state(
          fmt::format("{}: parent \"{}\" is not a partition (or the parents form a cycle)", where,
                      spec.parent));
    }
    pending = std::move(waiting);
  }

  const json& services = array_member(root, "services", "top level");
  for (std::size_t i = 0; i < services.size(); ++i) {
    const json& s = services[i];
    std::string where = fmt::format("services[{}]", i);
    if (!s.is_object()) throw invalid_state(where + ": must be an object");
    const service_id id = guid_member(s, "id", where);
    std::string name = string_member(s, "name", where);
    where += fmt::format(" (\"{}\")", name);
    const json& enabled = member(s, "enabled", where);
    if (!enabled.is_boolean()) throw invalid_state(where + ": \"enabled\" must be true or false");
    auto added = state.services.register_service(id, std::move(name), enabled.get<bool>());
    if (!added) throw invalid_state(fmt::format("{}: {}", where, added.error().message()));
    const json& disabled_for = array_member(s, "disabled_for", where);
    for (const json& vm : disabled_for) {
      if (!vm.is_string()) throw invalid_state(where + ": \"disabled_for\" must hold VmId strings");
      auto vm_guid = guid::parse(vm.get<std::string>());
      if (!vm_guid)
        throw invalid_state(fmt::format("{}: disabled_for: {}", where, vm_guid.error().message()));
      if (state.partitions.find(*vm_guid) == nullptr)
        throw invalid_state(fmt::format("{}: disabled_for names VmId {}, which is no partition",
                                        where, vm_guid->to_string()));
      check(state.services.set_enabled_for(id, *vm_guid, false), where);
    }
  }
  return state;
}

}  // namespace

state_store::state_store(std::string state_dir)
    : dir_(std::move(state_dir)), path_(dir_ + "/state.json") {}

std::string state_store::serialize(const partition_tree& partitions,
                                   const service_registry& services) {
  ordered_json root;
  root["format"] = format_version;
  root["host"] = ordered_json{{"id", partitions.host().id.to_string()}};
  ordered_json list = ordered_json::array();
  for (const partition* p : partitions.list()) {
    if (p->kind == partition_kind::host) continue;
    ordered_json entry;
    entry["name"] = p->name;
    entry["id"] = p->id.to_string();
    entry["kind"] = std::string(to_string(p->kind));
    entry["parent"] = partitions.parent_of(*p)->name;
    entry["cid"] = p->cid;
    if (p->qemu) entry["backend"] = "qemu";
    if (!p->hybrid_vsock.empty()) {
      entry["backend"] = "hybrid";
      entry["hybrid_vsock"] = p->hybrid_vsock;
    }
    if (!p->qmp_socket.empty()) entry["qmp_socket"] = p->qmp_socket;
    list.push_back(std::move(entry));
  }
  root["partitions"] = std::move(list);
  ordered_json service_list = ordered_json::array();
  for (const service_entry* s : services.list()) {
    ordered_json entry;
    entry["id"] = s->id.to_string();
    entry["name"] = s->name;
    entry["enabled"] = s->enabled;
    ordered_json disabled = ordered_json::array();
    for (const vm_id& vm : s->disabled_for) disabled.push_back(vm.to_string());
    entry["disabled_for"] = std::move(disabled);
    service_list.push_back(std::move(entry));
  }
  root["services"] = std::move(service_list);
  return root.dump(2) + "\n";
}

result<switch_state> state_store::parse(std::string_view text, const std::string& origin,
                                        const state_limits& limits) {
  const std::string advice = " (fix or move the file away; hvsockd does not overwrite it)";
  json root;
  try {
    root = json::parse(text);
  } catch (const json::exception& e) {
    return failure(errc::invalid_argument,
                   fmt::format("state file {} is not valid JSON: {}{}", origin, e.what(), advice));
  }
  try {
    return parse_state(root, limits);
  } catch (const invalid_state& e) {
    return failure(errc::invalid_argument,
                   fmt::format("state file {} is invalid: {}{}", origin, e.what(), advice));
  } catch (const json::exception& e) {
    return failure(errc::invalid_argument,
                   fmt::format("state file {} is invalid: {}{}", origin, e.what(), advice));
  }
}

result<std::optional<switch_state>> state_store::load(const state_limits& limits) const {
  unique_fd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) {
    if (errno == ENOENT) return std::optional<switch_state>();
    return make_system_error(errno, "cannot read state file " + path_);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) < 0) return make_system_error(errno, "stat " + path_);
  if (!S_ISREG(st.st_mode))
    return failure(errc::invalid_argument, "state file " + path_ + " is not a regular file");
  auto text = detail::read_to_end(fd.get(), path_);
  if (!text) return text.error().with_context("cannot read state file");
  auto state = parse(*text, path_, limits);
  if (!state) return state.error();
  return std::optional<switch_state>(std::move(*state));
}

result<void> state_store::save(const partition_tree& partitions,
                               const service_registry& services) const {
  if (auto ok = detail::replace_file(path_, serialize(partitions, services), 0600); !ok)
    return ok.error().with_context("save state");
  return {};
}

}  // namespace hvsock::daemon
