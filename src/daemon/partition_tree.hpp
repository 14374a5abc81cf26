// partition_tree: the partitions the switch knows and how they nest.
//
// The host is the root (name "host", CID 2, a VmId generated once and then
// persisted). VMs are children of the host; containers run in a VM or on the
// host. Every partition has a unique name, VmId and vsock CID. The tree only
// keeps the bookkeeping and enforces its invariants; sockets and persistence
// live elsewhere.
//
// Thread safety: none; a plain value (copyable, so callers can snapshot it
// and roll back a change that could not be persisted). Pointers returned by
// lookups stay valid until that partition is removed or the tree is assigned.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <hvsock/result.hpp>
#include <hvsock/vm_id.hpp>

namespace hvsock::daemon {

enum class partition_kind { host, vm, container };

// "host", "vm", "container".
std::string_view to_string(partition_kind kind);
std::optional<partition_kind> partition_kind_from_string(std::string_view text);

struct partition {
  std::string name;
  vm_id id;
  partition_kind kind = partition_kind::vm;
  std::uint32_t cid = 0;
  std::optional<vm_id> parent;  // nullopt only for the host
  // A real QEMU guest behind a vhost-user-vsock socket, instead of processes
  // joining through a control socket. Only VMs can be.
  bool qemu = false;
  // The QMP socket of that QEMU (absolute path; empty: none), through which
  // hvsockd re-plugs the guest's vsock device after hvsockd restarts.
  std::string qmp_socket;
  // A Firecracker / Cloud Hypervisor VM: its VMM's hybrid vsock socket
  // (absolute path; empty: not such a VM). Only VMs of the host can be.
  std::string hybrid_vsock;

  // Whether the partition's own kernel has its listeners (a QEMU guest or a
  // hybrid vsock VM), so connections to it go to a vsock port there.
  bool has_own_kernel() const { return qemu || !hybrid_vsock.empty(); }
  // "emulated", "qemu" or "hybrid": how the switch reaches the partition.
  std::string_view backend() const {
    return qemu ? "qemu" : !hybrid_vsock.empty() ? "hybrid" : "emulated";
  }
};

// What a caller asks for; unset id/cid are chosen by the tree.
struct partition_spec {
  std::string name;
  partition_kind kind = partition_kind::vm;
  std::string parent{"host"};
  std::optional<vm_id> id;
  std::optional<std::uint32_t> cid;
  bool qemu = false;
  std::string qmp_socket;    // only for a QEMU guest
  std::string hybrid_vsock;  // only for a VM that is neither emulated nor QEMU
};

class partition_tree {
 public:
  static constexpr std::uint32_t host_cid = 2;
  static constexpr std::uint32_t first_guest_cid = 3;
  static constexpr std::size_t default_max_partitions = 1024;  // the host included

  // Precondition: check_id(host_id) succeeds (the state loader checks it).
  explicit partition_tree(vm_id host_id, std::size_t max_partitions = default_max_partitions);

  // [A-Za-z0-9][A-Za-z0-9._-]{0,62}; "host" is reserved. The name becomes a
  // socket file name, so nothing else is allowed.
  static result<void> check_name(std::string_view name);
  // A partition's VmId may be neither zero nor one of the well-known VmIds.
  static result<void> check_id(const vm_id& id);
  // A QMP socket path: absolute, short enough for a Unix socket address,
  // no control characters.
  static result<void> check_qmp_socket(std::string_view path);
  // A VMM's hybrid vsock socket path: the same, with room for "_<port>".
  static result<void> check_hybrid_vsock_socket(std::string_view path);

  // Adds a VM (parent must be the host) or a container (parent a VM or the
  // host). Errors: invalid_argument (name, kind, parent kind, CID),
  // already_exists (name, VmId or CID taken), unknown_partition (parent),
  // limit_reached. On error the tree is unchanged.
  result<const partition*> create(const partition_spec& spec);

  // Whether remove(name) would succeed: the host and partitions with
  // children cannot be removed (invalid_argument), unknown names are
  // unknown_partition.
  result<void> check_removable(std::string_view name) const;
  result<void> remove(std::string_view name);
  // Records (or, with an empty path, forgets) a QEMU guest's QMP socket.
  // Errors: unknown_partition, invalid_argument (not a QEMU guest, a bad
  // path); on error the tree is unchanged.
  result<void> set_qmp_socket(std::string_view name, std::string path);

  const partition& host() const;
  const partition* find(std::string_view name) const;
  const partition* find(const vm_id& id) const;
  const partition* find_by_cid(std::uint32_t cid) const;
  const partition* parent_of(const partition& p) const;
  std::vector<const partition*> children_of(const partition& p) const;
  // True when `child` is a direct child of `parent`.
  static bool is_child_of(const partition& child, const partition& parent);

  // Every partition, the host first, then each parent before its children
  // (children by name), so the list can be replayed through create().
  std::vector<const partition*> list() const;
  std::size_t size() const { return by_name_.size(); }
  std::size_t max_partitions() const { return max_partitions_; }

 private:
  std::uint32_t lowest_free_cid() const;

  std::size_t max_partitions_;
  std::map<std::string, partition, std::less<>> by_name_;
  std::unordered_map<vm_id, std::string> name_by_id_;
  std::map<std::uint32_t, std::string> name_by_cid_;
};

}  // namespace hvsock::daemon
