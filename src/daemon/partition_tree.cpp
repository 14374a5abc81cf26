// partition_tree: validation and bookkeeping of the partition hierarchy.
#include "daemon/partition_tree.hpp"

#include <linux/vm_sockets.h>

#include <fmt/format.h>

namespace hvsock::daemon {
namespace {

constexpr std::string_view host_name = "host";
constexpr std::size_t max_name_length = 63;

bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

std::string describe(const partition& p) {
  return fmt::format("{} \"{}\"",
                     p.kind == partition_kind::container ? "container"
                     : p.kind == partition_kind::vm      ? "VM"
                                                         : "host",
                     p.name);
}

}  // namespace

std::string_view to_string(partition_kind kind) {
  switch (kind) {
    case partition_kind::host: return "host";
    case partition_kind::vm: return "vm";
    case partition_kind::container: return "container";
  }
  return "unknown";
}

std::optional<partition_kind> partition_kind_from_string(std::string_view text) {
  if (text == "host") return partition_kind::host;
  if (text == "vm") return partition_kind::vm;
  if (text == "container") return partition_kind::container;
  return std::nullopt;
}

partition_tree::partition_tree(vm_id host_id, std::size_t max_partitions)
    : max_partitions_(max_partitions) {
  partition host{
      std::string(host_name), host_id, partition_kind::host, host_cid, std::nullopt, false, {}, {}};
  name_by_id_.emplace(host_id, host.name);
  name_by_cid_.emplace(host_cid, host.name);
  by_name_.emplace(host.name, std::move(host));
}

result<void> partition_tree::check_name(std::string_view name) {
  if (name.empty()) return failure(errc::invalid_argument, "a partition name may not be empty");
  if (name.size() > max_name_length)
    return failure(errc::invalid_argument,
                   fmt::format("partition name \"{}...\" is longer than {} characters",
                               name.substr(0, 16), max_name_length));
  if (!is_alnum(name.front()))
    return failure(errc::invalid_argument,
                   fmt::format("partition name \"{}\" must start with a letter or digit", name));
  for (char c : name) {
    if (!is_alnum(c) && c != '.' && c != '_' && c != '-')
      return failure(errc::invalid_argument,
                     fmt::format("partition name \"{}\" may only contain letters, digits, '.', "
                                 "'_' and '-'",
                                 name));
  }
  if (name == host_name)
    return failure(errc::invalid_argument, "the name \"host\" is reserved for the host partition");
  return {};
}

result<void> partition_tree::check_id(const vm_id& id) {
  if (auto known = classify_vm_id(id))
    return failure(errc::invalid_argument,
                   fmt::format("VmId {} is the well-known {} VmId and cannot name a partition",
                               id.to_string(), well_known_name(*known)));
  return {};
}

namespace {

// sockaddr_un's sun_path holds 108 bytes, the terminating NUL included.
constexpr std::size_t max_socket_path = 107;

// An absolute path of at most `longest` bytes without control characters;
// `what` names it in the errors ("the QMP socket").
result<void> check_socket_path(std::string_view path, std::string_view what, std::size_t longest) {
  if (path.empty() || path.front() != '/')
    return failure(errc::invalid_argument, fmt::format("{} must be an absolute path, not \"{}\"",
                                                       what, path.substr(0, 200)));
  if (path.size() > longest)
    return failure(
        errc::invalid_argument,
        fmt::format("{} path is {} bytes long; at most {} fit here", what, path.size(), longest));
  for (char c : path)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      return failure(errc::invalid_argument,
                     fmt::format("{} path contains a control character", what));
  return {};
}

}  // namespace

result<void> partition_tree::check_qmp_socket(std::string_view path) {
  return check_socket_path(path, "the QMP socket", max_socket_path);
}

result<void> partition_tree::check_hybrid_vsock_socket(std::string_view path) {
  // Its listeners for the guest are "<path>_<port>", the port up to 10 digits.
  return check_socket_path(path, "the hybrid vsock socket", max_socket_path - 11);
}

std::uint32_t partition_tree::lowest_free_cid() const {
  std::uint32_t candidate = first_guest_cid;
  for (auto it = name_by_cid_.lower_bound(first_guest_cid); it != name_by_cid_.end(); ++it) {
    if (it->first != candidate) break;
    ++candidate;
  }
  return candidate;
}

result<const partition*> partition_tree::create(const partition_spec& spec) {
  if (auto ok = check_name(spec.name); !ok) return ok.error();
  if (by_name_.contains(spec.name))
    return failure(errc::already_exists,
                   fmt::format("a partition named \"{}\" already exists", spec.name));
  if (spec.kind == partition_kind::host)
    return failure(errc::invalid_argument, "there is only one host partition");
  const partition* parent = find(spec.parent);
  if (parent == nullptr)
    return failure(errc::unknown_partition,
                   fmt::format("parent partition \"{}\" does not exist", spec.parent));
  if (spec.kind == partition_kind::vm && parent->kind != partition_kind::host)
    return failure(errc::invalid_argument,
                   fmt::format("a VM's parent must be the host, not {} (a container may run "
                               "in a VM)",
                               describe(*parent)));
  if (spec.qemu && spec.kind != partition_kind::vm)
    return failure(errc::invalid_argument, "only a VM can be a QEMU guest, not a container");
  if (!spec.qmp_socket.empty()) {
    if (!spec.qemu)
      return failure(errc::invalid_argument,
                     "a QMP socket is only for a QEMU guest (create the VM as a QEMU guest)");
    if (auto ok = check_qmp_socket(spec.qmp_socket); !ok) return ok.error();
  }
  if (!spec.hybrid_vsock.empty()) {
    if (spec.kind != partition_kind::vm)
      return failure(errc::invalid_argument,
                     "only a VM can be behind a hybrid vsock socket, not a container");
    if (spec.qemu)
      return failure(errc::invalid_argument,
                     "a VM is either a QEMU guest or behind a hybrid vsock socket, not both");
    if (auto ok = check_hybrid_vsock_socket(spec.hybrid_vsock); !ok) return ok.error();
    for (const auto& [name, other] : by_name_)
      if (other.hybrid_vsock == spec.hybrid_vsock)
        return failure(errc::already_exists,
                       fmt::format("{} is behind the hybrid vsock socket {} already",
                                   describe(other), spec.hybrid_vsock));
  }
  if (spec.kind == partition_kind::container && parent->kind == partition_kind::container)
    return failure(
        errc::invalid_argument,
        fmt::format("a container runs in a VM or on the host, not in {}", describe(*parent)));

  vm_id id;
  if (spec.id) {
    if (auto ok = check_id(*spec.id); !ok) return ok.error();
    if (auto it = name_by_id_.find(*spec.id); it != name_by_id_.end())
      return failure(errc::already_exists,
                     fmt::format("VmId {} already belongs to partition \"{}\"",
                                 spec.id->to_string(), it->second));
    id = *spec.id;
  } else {
    // A collision of random v4 GUIDs is not a practical concern, but the
    // invariant is cheap to keep.
    do {
      id = guid::generate();
    } while (name_by_id_.contains(id) || classify_vm_id(id));
  }

  std::uint32_t cid;
  if (spec.cid) {
    cid = *spec.cid;
    if (cid == VMADDR_CID_HYPERVISOR || cid == VMADDR_CID_LOCAL || cid == VMADDR_CID_HOST ||
        cid == VMADDR_CID_ANY)
      return failure(errc::invalid_argument,
                     fmt::format("CID {} is reserved (0, 1, 2 and 0xffffffff cannot name a "
                                 "partition)",
                                 cid));
    if (auto it = name_by_cid_.find(cid); it != name_by_cid_.end())
      return failure(errc::already_exists,
                     fmt::format("CID {} already belongs to partition \"{}\"", cid, it->second));
  } else {
    cid = lowest_free_cid();
    if (cid == VMADDR_CID_ANY)  // only reachable with ~4 billion partitions
      return failure(errc::limit_reached, "no free CID left");
  }

  if (by_name_.size() >= max_partitions_)
    return failure(
        errc::limit_reached,
        fmt::format("the switch already has {} partitions (the limit)", max_partitions_));

  partition p{spec.name,  id,        spec.kind,       cid,
              parent->id, spec.qemu, spec.qmp_socket, spec.hybrid_vsock};
  name_by_id_.emplace(id, p.name);
  name_by_cid_.emplace(cid, p.name);
  auto [it, inserted] = by_name_.emplace(p.name, std::move(p));
  return &it->second;
}

result<void> partition_tree::check_removable(std::string_view name) const {
  const partition* p = find(name);
  if (p == nullptr)
    return failure(errc::unknown_partition, fmt::format("no partition is named \"{}\"", name));
  if (p->kind == partition_kind::host)
    return failure(errc::invalid_argument, "the host partition cannot be removed");
  if (auto children = children_of(*p); !children.empty())
    return failure(errc::invalid_argument,
                   fmt::format("{} still has {} child partition(s) (\"{}\" first); remove them "
                               "first",
                               describe(*p), children.size(), children.front()->name));
  return {};
}

result<void> partition_tree::set_qmp_socket(std::string_view name, std::string path) {
  auto it = by_name_.find(name);
  if (it == by_name_.end())
    return failure(errc::unknown_partition, fmt::format("no partition is named \"{}\"", name));
  if (!it->second.qemu)
    return failure(errc::invalid_argument,
                   fmt::format("{} is not a QEMU guest: only QEMU guests have a QMP socket",
                               describe(it->second)));
  if (!path.empty())
    if (auto ok = check_qmp_socket(path); !ok) return ok.error();
  it->second.qmp_socket = std::move(path);
  return {};
}

result<void> partition_tree::remove(std::string_view name) {
  if (auto ok = check_removable(name); !ok) return ok;
  auto it = by_name_.find(name);
  name_by_id_.erase(it->second.id);
  name_by_cid_.erase(it->second.cid);
  by_name_.erase(it);
  return {};
}

const partition& partition_tree::host() const { return by_name_.find(host_name)->second; }

const partition* partition_tree::find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &it->second;
}

const partition* partition_tree::find(const vm_id& id) const {
  auto it = name_by_id_.find(id);
  return it == name_by_id_.end() ? nullptr : find(it->second);
}

const partition* partition_tree::find_by_cid(std::uint32_t cid) const {
  auto it = name_by_cid_.find(cid);
  return it == name_by_cid_.end() ? nullptr : find(it->second);
}

const partition* partition_tree::parent_of(const partition& p) const {
  return p.parent ? find(*p.parent) : nullptr;
}

std::vector<const partition*> partition_tree::children_of(const partition& p) const {
  // Linear: the tree is small (max_partitions_) and this is not on the
  // connection path.
  std::vector<const partition*> out;
  for (const auto& [name, candidate] : by_name_)
    if (candidate.parent == p.id) out.push_back(&candidate);
  return out;
}

bool partition_tree::is_child_of(const partition& child, const partition& parent) {
  return child.parent == parent.id;
}

std::vector<const partition*> partition_tree::list() const {
  // One pass to group children (by name, as by_name_ is ordered), then a
  // breadth-first walk from the host.
  std::unordered_map<vm_id, std::vector<const partition*>> children;
  for (const auto& [name, p] : by_name_)
    if (p.parent) children[*p.parent].push_back(&p);
  std::vector<const partition*> out{&host()};
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (auto it = children.find(out[i]->id); it != children.end())
      out.insert(out.end(), it->second.begin(), it->second.end());
  }
  return out;
}

}  // namespace hvsock::daemon
