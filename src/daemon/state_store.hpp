// state_store: the switch's persistent state (partitions and service
// registry) in <state-dir>/state.json, pretty-printed JSON a person can read:
//
//   {"format": 1,
//    "host": {"id": "<vmid>"},
//    "partitions": [{"name", "id", "kind": "vm"|"container", "parent": "<name>", "cid",
//                    optional "backend": "qemu", "qmp_socket": "<path>"}],
//    "services": [{"id", "name", "enabled", "disabled_for": ["<vmid>", ...]}]}
//
// save() is atomic: a crash (even kill -9) leaves either the old or the new
// file. load() never repairs anything: a file it cannot read or trust is an
// error naming the file and the problem, and the daemon stops rather than
// overwrite state it did not understand.
//
// Thread safety: none; one store per state directory, used from one thread.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <hvsock/result.hpp>

#include "daemon/partition_tree.hpp"
#include "daemon/service_registry.hpp"

namespace hvsock::daemon {

struct switch_state {
  partition_tree partitions;
  service_registry services;
};

struct state_limits {
  std::size_t max_partitions = partition_tree::default_max_partitions;
  std::size_t max_services = service_registry::default_max_services;
};

class state_store {
 public:
  static constexpr int format_version = 1;

  explicit state_store(std::string state_dir);

  const std::string& file_path() const { return path_; }

  // The saved state, or nullopt when there is no state file yet. Errors:
  // the file exists but cannot be read, is not JSON, or its content is
  // invalid (system error code, or errc::invalid_argument); the message names
  // the file and what is wrong.
  result<std::optional<switch_state>> load(const state_limits& limits = {}) const;

  // Writes state.json.tmp, fsyncs it, renames it over state.json and fsyncs
  // the directory.
  result<void> save(const partition_tree& partitions, const service_registry& services) const;

  // The JSON text save() writes, and its inverse (`origin` names the text in
  // error messages).
  static std::string serialize(const partition_tree& partitions, const service_registry& services);
  static result<switch_state> parse(std::string_view text, const std::string& origin,
                                    const state_limits& limits = {});

 private:
  std::string dir_;
  std::string path_;
};

}  // namespace hvsock::daemon
