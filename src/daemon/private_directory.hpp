// private_directory: hvsockd's directories (state, runtime, one per
// partition) are created with a private mode and, existing already, must be
// the daemon's own and not writable by group or others: whoever can write
// them can replace its sockets or its registry (a pre-created
// world-writable /run/hvsock, say).
#pragma once

#include <sys/types.h>

#include <string>

#include <hvsock/result.hpp>

namespace hvsock::daemon {

// mkdir -p; the last component gets `mode` when this call creates it (an
// existing directory keeps the mode its owner chose).
result<void> make_directory(const std::string& path, mode_t mode);

// permission_denied unless `path` is a directory (not a symbolic link) owned
// by this process's euid and not writable by group or others; the message
// names `what` and says how to fix it.
result<void> check_private_directory(const std::string& path, const char* what);

}  // namespace hvsock::daemon
