// switch_fixture: a real hvsockd in a fresh temporary directory, and helpers
// to drive it the way users do: the hvsock CLI as separate processes, and
// forked child processes using libhvsock inside chosen partitions.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <hvsock/guid.hpp>

#include "child_process.hpp"

namespace hvsock::test {

inline const std::string hvsockd_path = HVSOCKD_PATH;
inline const std::string hvsock_cli_path = HVSOCK_CLI_PATH;

class switch_fixture {
 public:
  // Makes the directories and starts the daemon; throws if it is not ready
  // within a few seconds.
  switch_fixture();
  ~switch_fixture();

  const std::string& root() const { return root_; }
  const std::string& state_dir() const { return state_dir_; }
  const std::string& runtime_dir() const { return runtime_dir_; }
  std::string control_socket(const std::string& partition) const;

  // `hvsock --runtime-dir R args...`
  run_result cli(const std::vector<std::string>& args, const std::string& input = {},
                 std::chrono::milliseconds timeout = std::chrono::seconds(30)) const;
  // The same, but fails the current test unless it exits 0; returns stdout
  // without the trailing newline.
  std::string cli_ok(const std::vector<std::string>& args) const;
  // Starts the CLI as a background process (listen, connect, run).
  std::unique_ptr<child_process> cli_async(const std::vector<std::string>& args) const;

  void start_daemon();
  // SIGTERM and wait; returns the daemon's exit status.
  exit_status stop_daemon();
  void kill_daemon();  // SIGKILL, as a crash would
  child_process& daemon() { return *daemon_; }

  // Creates a partition and returns its VmId text.
  std::string create_vm(const std::string& name, const std::string& parent = "",
                        const std::string& kind = "vm") const;
  // The VmId of partition `name` (from `hvsock vm list --json`).
  guid vm_id_of(const std::string& name) const;
  // Registers a service and returns its GUID text.
  std::string register_service(const std::string& name, const std::string& id = "") const;

 private:
  std::string root_;
  std::string state_dir_;
  std::string runtime_dir_;
  std::unique_ptr<child_process> daemon_;
};

// Runs `body` in a forked child process; its return value is the exit code.
pid_t fork_child(const std::function<int()>& body);
// Waits (bounded) for a forked child; kills it on timeout. Returns the exit
// code, or -1 for a signal or a timeout.
int wait_child(pid_t pid, std::chrono::milliseconds timeout = std::chrono::seconds(60));

// Number of fds open in process `pid` (from /proc/PID/fd).
int count_open_fds(pid_t pid);

}  // namespace hvsock::test
