// hvsock run --vm NAME -- CMD [ARG...]: runs CMD as a member of partition
// NAME. Membership is the control socket: the environment tells libhvsock
// (in CMD and everything it starts) which partition socket to use.
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "cli_common.hpp"
#include "protocol/runtime_paths.hpp"

namespace hvsock::cli {

void add_run_command(CLI::App& app, global_options& options) {
  struct run_args {
    std::string vm{detail::host_partition_name};
    std::vector<std::string> command;
  };
  auto args = std::make_shared<run_args>();
  auto* run = app.add_subcommand("run", "Run a command inside a partition (default: the host)");
  run->add_option("--vm", args->vm, "the partition to run in");
  run->add_option("CMD", args->command, "the command and its arguments (after --)")->required();
  run->callback([args, &options] {
    // Ask the switch, so a typo is an error here rather than a confusing
    // "not reachable" inside the program.
    auto client = open_management(options);
    const auto partitions = must(client.call("vm.list"));
    std::string control_socket;
    for (const auto& p : partitions)
      if (p.value("name", "") == args->vm) control_socket = p.value("control_socket", "");
    if (control_socket.empty())
      fail("no partition named \"" + args->vm + "\" (see: hvsock vm list)");
    ::setenv(detail::env_control_socket, control_socket.c_str(), 1);
    ::setenv(detail::env_partition, args->vm.c_str(), 1);
    ::setenv(detail::env_runtime_dir, runtime_dir(options).c_str(), 1);
    std::vector<char*> argv;
    for (auto& a : args->command) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    const int err = errno;
    fail("cannot run " + args->command[0] + ": " + std::strerror(err), err == ENOENT ? 127 : 126);
  });
}

}  // namespace hvsock::cli
