// hvsock run --vm NAME -- CMD [ARG...]: runs CMD as a member of partition
// NAME. Membership is the control socket: the environment tells libhvsock
// (in CMD and everything it starts) which partition socket to use, and,
// unless --no-isolate, CMD runs in a sandbox where that socket is the only
// one of hvsockd's it can reach (partition_sandbox.hpp, docs/security.md).
// The host partition is not sandboxed: the host is trusted. Unless
// --no-preload, CMD also runs under libhvsock-preload.so, so its own
// AF_VSOCK and AF_HYPERV sockets work in the partition (docs/compatibility.md).
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "cli_common.hpp"
#include "partition_sandbox.hpp"
#include "preload_setup.hpp"
#include "protocol/runtime_paths.hpp"

namespace hvsock::cli {

namespace {

// Adds the shim to LD_PRELOAD, or fails when it cannot work: a missing
// library, or a static executable (LD_PRELOAD never reaches into those, and
// their vsock calls would go to the kernel instead).
void preload_into(const std::string& command) {
  std::vector<std::string> searched;
  const auto library = find_preload_library(searched);
  if (!library) {
    std::string where;
    for (const auto& s : searched) where += (where.empty() ? "" : ", ") + s;
    fail("libhvsock-preload.so not found (looked at " + where +
         "); set HVSOCK_PRELOAD_LIBRARY, or use --no-preload");
  }
  if (const auto path = resolve_command(command); path && is_static_executable(*path))
    fail(*path + " is statically linked, so the preload shim cannot reach its socket calls; " +
         "use --no-preload (fine for programs that use libhvsock)");
  std::string preload = *library;
  if (const char* existing = std::getenv("LD_PRELOAD"); existing != nullptr && *existing != '\0')
    preload += std::string(":") + existing;
  ::setenv("LD_PRELOAD", preload.c_str(), 1);
}

}  // namespace

void add_run_command(CLI::App& app, global_options& options) {
  struct run_args {
    std::string vm{detail::host_partition_name};
    bool no_preload = false;
    bool no_isolate = false;
    bool no_network = false;
    std::vector<std::string> command;
  };
  auto args = std::make_shared<run_args>();
  auto* run = app.add_subcommand("run", "Run a command inside a partition (default: the host)");
  completes_partition(run->add_option("--vm", args->vm, "the partition to run in"));
  run->add_flag("--no-preload", args->no_preload,
                "do not preload libhvsock-preload.so (CMD's own AF_VSOCK sockets then are "
                "the kernel's)");
  run->add_flag("--no-isolate", args->no_isolate,
                "run without the sandbox: CMD can then reach hvsockd's management socket and "
                "other partitions' sockets (a warning is printed)");
  run->add_flag("--no-network", args->no_network,
                "give the partition its own network namespace with only loopback up (default: "
                "the host's network)");
  completes_command(
      run->add_option("CMD", args->command, "the command and its arguments (after --)")
          ->required());
  run->callback([args, &options] {
    if (auto inside = detail::isolated_partition())
      fail("hvsock run is not available inside partition \"" + inside->name +
           "\": partitions are entered from the host");
    const bool host = args->vm == detail::host_partition_name;
    if (host && args->no_network)
      fail("--no-network needs a partition other than the host (the host keeps its network)",
           exit_usage);
    if (args->no_isolate && args->no_network)
      fail("--no-network and --no-isolate cannot be combined", exit_usage);
    // Ask the switch, so a typo is an error here rather than a confusing
    // "not reachable" inside the program. The connection is closed before
    // CMD starts: CMD must not inherit a way to the management socket.
    std::string control_socket, state_dir;
    std::uint32_t cid = 0;
    {
      auto client = open_management(options);
      const auto partitions = must(client.call("vm.list"));
      for (const auto& p : partitions)
        if (p.value("name", "") == args->vm) {
          control_socket = p.value("control_socket", "");
          cid = p.value("cid", 0u);
        }
      if (control_socket.empty())
        fail("no partition named \"" + args->vm + "\" (see: hvsock vm list)");
      state_dir = must(client.call("status")).value("state_dir", "");
    }
    if (!args->no_preload) preload_into(args->command.front());
    ::setenv(detail::env_control_socket, control_socket.c_str(), 1);
    ::setenv(detail::env_partition, args->vm.c_str(), 1);
    ::setenv(detail::env_runtime_dir, runtime_dir(options).c_str(), 1);
    ::setenv("HVSOCK_CID", std::to_string(cid).c_str(), 1);
    if (!host && !args->no_isolate) {
      if (control_socket != detail::partition_socket_path(runtime_dir(options), args->vm))
        fail("partition \"" + args->vm + "\"'s control socket " + control_socket +
             " is not in the runtime directory " + runtime_dir(options));
      run_isolated({.partition = args->vm,
                    .runtime_dir = runtime_dir(options),
                    .state_dir = state_dir,
                    .no_network = args->no_network},
                   args->command);
    }
    if (!host)
      std::cerr << "hvsock: warning: --no-isolate: partition \"" << args->vm
                << "\" can reach hvsockd's management socket and act as any partition" << std::endl;
    ::signal(SIGPIPE, SIG_DFL);  // the CLI ignores it; CMD must not inherit that
    std::vector<char*> argv;
    for (auto& a : args->command) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    const int err = errno;
    fail("cannot run " + args->command[0] + ": " + std::strerror(err), err == ENOENT ? 127 : 126);
  });
}

}  // namespace hvsock::cli
