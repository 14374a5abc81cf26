// partition_sandbox: what `hvsock run --vm NAME` puts around a command so
// that an emulated partition is a boundary and not a label (docs/security.md).
//
// The command and everything it starts run in their own mount, PID, UTS and
// IPC namespaces (and network namespace with no_network), and in a user
// namespace below the one that set the mounts up, which makes those mounts
// locked: they cannot be unmounted, remounted writable or bound without
// their covers from inside, also by a process that is root there.
//
//   - hvsockd's runtime directory is covered by a read-only tmpfs holding
//     only partitions/NAME/ (the directory of the partition's control socket,
//     bind-mounted read-only, so a restarted hvsockd's socket shows) and the marker
//     `isolated-partition`; the management socket, the socket broker, the vhost-user sockets and
//     every other partition's control socket are not there.
//   - hvsockd's state directory (the registry) is covered by an empty
//     read-only tmpfs.
//   - /proc is a new procfs of the partition's PID namespace (every other
//     procfs mount is removed or covered), so no process outside the
//     partition, its /proc/PID/root or cwd, can be reached; the kernel's
//     switches in /proc (sysrq-trigger, sys, ...) and /sys are read-only.
//   - The working directory is entered again by path, and inherited
//     directory and O_PATH descriptors are closed: both would still point
//     below the covers.
//   - The hostname is the partition's name.
//
// The file system is otherwise the host's, with the caller's own rights.
// Run as root, the user namespace maps every id to itself; run by another
// user, it needs unprivileged user namespaces and maps that user only.
//
// The calling process must be single-threaded. Not a library: it ends the
// process.
#pragma once

#include <string>
#include <vector>

namespace hvsock::cli {

struct sandbox_options {
  std::string partition;    // its name: the hostname and the marker
  std::string runtime_dir;  // covered, but for the partition's control socket
  std::string state_dir;    // covered entirely
  bool no_network = false;  // own network namespace with only loopback up
};

// Exit status when setting the sandbox up fails (as env(1) and container
// runtimes use 125 for "the wrapper failed, not the command").
inline constexpr int exit_sandbox_failed = 125;

// Runs `command` (execvp semantics) in the sandbox and ends this process the
// way the command ended: its exit status, or the same signal. Signals sent
// to this process are passed on to the command. Throws cli_exit if the
// sandbox cannot be set up before anything runs.
[[noreturn]] void run_isolated(const sandbox_options& options,
                               const std::vector<std::string>& command);

}  // namespace hvsock::cli
