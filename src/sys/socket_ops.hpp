// Thin, errno-preserving wrappers over the socket calls libhvsock and hvsockd
// share: AF_UNIX connect by path, waiting for readiness with a deadline, and
// the non-blocking flag. Every fd they create is CLOEXEC.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include <hvsock/result.hpp>
#include <hvsock/unique_fd.hpp>

namespace hvsock::detail {

// Connects an AF_UNIX socket of `type` (SOCK_STREAM, SOCK_SEQPACKET) to the
// socket file at `path`. The error names the path; a missing or refusing
// socket is errc::daemon_unavailable, EACCES is errc::permission_denied.
result<unique_fd> connect_unix(const std::string& path, int type);

// Waits until `fd` is ready for `events` (POLLIN/POLLOUT). nullopt waits
// forever. Returns errc::timed_out when the time runs out. EINTR restarts
// with the remaining time.
result<void> wait_ready(int fd, short events, std::optional<std::chrono::milliseconds> timeout);

result<void> set_non_blocking(int fd, bool enabled);
bool is_non_blocking(int fd);

}  // namespace hvsock::detail
