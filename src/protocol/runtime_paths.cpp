#include "protocol/runtime_paths.hpp"

#include <unistd.h>

#include <cstdlib>
#include <fstream>

namespace hvsock::detail {
namespace {

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::string(v) : std::string();
}

}  // namespace

std::string default_runtime_dir() {
  if (auto v = env_or_empty(env_runtime_dir); !v.empty()) return v;
  if (::geteuid() == 0) return "/run/hvsock";
  if (auto xdg = env_or_empty("XDG_RUNTIME_DIR"); !xdg.empty()) return xdg + "/hvsock";
  return "/tmp/hvsock-" + std::to_string(::geteuid());
}

std::string default_state_dir() {
  if (auto v = env_or_empty(env_state_dir); !v.empty()) return v;
  if (::geteuid() == 0) return "/var/lib/hvsock";
  if (auto xdg = env_or_empty("XDG_STATE_HOME"); !xdg.empty()) return xdg + "/hvsock";
  if (auto home = env_or_empty("HOME"); !home.empty()) return home + "/.local/state/hvsock";
  return "/tmp/hvsock-state-" + std::to_string(::geteuid());
}

std::string management_socket_path(const std::string& runtime_dir) {
  return runtime_dir + "/hvsockd.sock";
}

std::string partitions_dir(const std::string& runtime_dir) { return runtime_dir + "/partitions"; }

std::string partition_dir(const std::string& runtime_dir, std::string_view partition) {
  return partitions_dir(runtime_dir) + "/" + std::string(partition);
}

std::string partition_socket_path(const std::string& runtime_dir, std::string_view partition) {
  return partition_dir(runtime_dir, partition) + "/control.sock";
}

std::string vhost_user_socket_path(const std::string& runtime_dir, std::string_view partition) {
  return runtime_dir + "/vhost-user/" + std::string(partition) + ".sock";
}

std::string hybrid_socket_path(const std::string& runtime_dir, std::string_view partition) {
  return runtime_dir + "/hybrid/" + std::string(partition) + ".sock";
}

std::string process_control_socket() {
  if (auto v = env_or_empty(env_control_socket); !v.empty()) return v;
  return partition_socket_path(default_runtime_dir(), host_partition_name);
}

std::string isolation_marker_path(const std::string& runtime_dir) {
  return runtime_dir + "/isolated-partition";
}

std::optional<isolated_partition_info> isolated_partition() {
  const std::string runtime_dir = default_runtime_dir();
  std::ifstream marker(isolation_marker_path(runtime_dir));
  std::string name;
  if (!marker || !std::getline(marker, name) || name.empty()) return std::nullopt;
  return isolated_partition_info{name, partition_socket_path(runtime_dir, name)};
}

}  // namespace hvsock::detail
