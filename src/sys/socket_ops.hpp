// Thin, errno-preserving wrappers over the socket calls libhvsock and hvsockd
// share: AF_UNIX addresses, connect and listen by path, waiting for readiness
// with a deadline, and the non-blocking flag. Every fd they create is
// CLOEXEC.
//
// Thread safety: the functions keep no state; any thread may call them.
#pragma once

#include <sys/types.h>
#include <sys/un.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include <hvsock/result.hpp>
#include <hvsock/stream.hpp>
#include <hvsock/unique_fd.hpp>

namespace hvsock::detail {

// The address of the socket file at `path` (NUL-terminated in sun_path).
// errc::invalid_argument, naming the path, when it is empty or does not fit.
result<sockaddr_un> unix_address(std::string_view path);

// Connects an AF_UNIX socket of `type` (SOCK_STREAM, SOCK_SEQPACKET) to the
// socket file at `path`. The error names the path; a missing or refusing
// socket is errc::daemon_unavailable, EACCES is errc::permission_denied.
result<unique_fd> connect_unix(const std::string& path, int type);

// Who may connect through a socket file: its mode and, optionally, owner.
struct socket_file_options {
  mode_t mode = 0600;
  std::optional<uid_t> owner_uid;
  std::optional<gid_t> owner_gid;
};

// A non-blocking, CLOEXEC AF_UNIX socket of `type` listening at `path`
// (an existing socket file there is replaced: the caller has made sure it
// is stale; any other file there is errc::address_in_use). Mode and owner are set before listen(),
// so nobody connects while the file has the umask's mode. On failure no socket file is left behind.
result<unique_fd> listen_unix(const std::string& path, int type,
                              const socket_file_options& options);

// Whether a socket listens at the socket file `path`, found without
// connecting to it (a connect is a client the listener sees): from the
// kernel's table of Unix sockets, /proc/net/unix, where a listening socket
// has Flags 00010000 (__SO_ACCEPTCON) and St 01 (SS_UNCONNECTED) and its
// Path as it was bound.
// - listening: a listener's path is `path`, or is absolute and names the
//   same file (bound through a symlinked directory, say);
// - unknown: the table cannot be read, or a listener's path is relative
//   with `path`'s file name (relative to a working directory not known
//   here): only a connect can tell;
// - none_seen: no listener there in the table. The table is the caller's
//   network namespace's: a listener in another one does not show, so a
//   caller that must not take a live socket confirms with a connect.
enum class unix_listener_state { listening, none_seen, unknown };
unix_listener_state unix_listener_at(const std::string& path);
// The same, given the table's text (for tests).
unix_listener_state unix_listener_in_table(std::string_view table, const std::string& path);

// Waits until `fd` is ready for `events` (POLLIN/POLLOUT). nullopt waits
// forever. Returns errc::timed_out when the time runs out. EINTR restarts
// with the remaining time.
result<void> wait_ready(int fd, short events, std::optional<std::chrono::milliseconds> timeout);

result<void> set_non_blocking(int fd, bool enabled);
// shutdown(2) with hvsock's direction; `what` names the peer in errors.
result<void> shutdown_socket(int fd, shutdown_how how, const std::string& what);
bool is_non_blocking(int fd);

}  // namespace hvsock::detail
