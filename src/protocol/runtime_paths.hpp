// Where hvsockd keeps its sockets and state, shared by the daemon, the
// library and the CLI so that all three agree without configuration.
//
//   runtime dir  HVSOCK_RUNTIME_DIR, else /run/hvsock for root, else
//                $XDG_RUNTIME_DIR/hvsock, else /tmp/hvsock-<uid>
//   state dir    HVSOCK_STATE_DIR, else /var/lib/hvsock for root, else
//                $XDG_STATE_HOME/hvsock, else ~/.local/state/hvsock
//   <runtime>/hvsockd.sock              management socket (CLI)
//   <runtime>/partitions/<name>/control.sock
//                                       a partition's control socket, in a
//                                       directory of its own that outlives
//                                       the daemon (an isolated partition
//                                       has that directory bind-mounted, so
//                                       a restarted daemon's socket shows)
//   <runtime>/vhost-user/<name>.sock    a QEMU partition's vhost-user socket
//   <runtime>/hybrid/<name>.sock        a QEMU partition's hybrid vsock socket
//                                       (docs/hybrid-vsock.md); host
//                                       listeners for its guest at
//                                       <name>.sock_<port> beside it
//
// Inside an isolated partition (`hvsock run --vm NAME`) the runtime dir is a
// read-only stand-in holding only partitions/<NAME>/ (the real directory,
// bind-mounted read-only) and the marker file `isolated-partition` with NAME in it.
//
// A process's partition: HVSOCK_CONTROL_SOCKET (set by `hvsock run`), else
// the host partition's control socket.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace hvsock::detail {

inline constexpr std::string_view host_partition_name = "host";
inline constexpr const char* env_runtime_dir = "HVSOCK_RUNTIME_DIR";
inline constexpr const char* env_state_dir = "HVSOCK_STATE_DIR";
inline constexpr const char* env_control_socket = "HVSOCK_CONTROL_SOCKET";
inline constexpr const char* env_partition = "HVSOCK_PARTITION";

std::string default_runtime_dir();
std::string default_state_dir();
std::string management_socket_path(const std::string& runtime_dir);
std::string partitions_dir(const std::string& runtime_dir);
std::string partition_dir(const std::string& runtime_dir, std::string_view partition);
std::string partition_socket_path(const std::string& runtime_dir, std::string_view partition);
// A QEMU partition's vhost-user-vsock socket: <runtime>/vhost-user/<name>.sock
std::string vhost_user_socket_path(const std::string& runtime_dir, std::string_view partition);
// A QEMU partition's hybrid vsock socket: <runtime>/hybrid/<name>.sock
std::string hybrid_socket_path(const std::string& runtime_dir, std::string_view partition);

// The control socket this process uses when the caller names none.
std::string process_control_socket();

// <runtime>/isolated-partition: the marker `hvsock run` leaves in the
// runtime dir it shows an isolated partition.
std::string isolation_marker_path(const std::string& runtime_dir);

struct isolated_partition_info {
  std::string name;
  std::string control_socket;
};
// The partition this process is isolated in, read from the marker in
// default_runtime_dir(); nullopt outside isolated partitions. Only used to
// word errors: the isolation itself is the mount namespace, not this file.
std::optional<isolated_partition_info> isolated_partition();

}  // namespace hvsock::detail
