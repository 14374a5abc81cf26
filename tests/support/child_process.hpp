// child_process: runs a program with pipes on stdin/stdout/stderr, for tests
// that drive hvsockd and the CLI as separate processes. Every wait is bounded
// so a hung child fails its test instead of hanging the suite.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace hvsock::test {

struct exit_status {
  int code = -1;   // exit code, or -1 when killed by a signal
  int signal = 0;  // the signal that ended it, or 0
  bool exited_normally() const { return code >= 0; }
};

class child_process {
 public:
  // Starts argv[0] (a path) with the current environment plus `env`.
  // stdin/stdout/stderr are pipes owned by this object.
  child_process(const std::vector<std::string>& argv,
                const std::map<std::string, std::string>& env = {});
  ~child_process();  // kills (SIGKILL) and reaps a child still running
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  pid_t pid() const { return pid_; }
  void write_stdin(const std::string& data);
  void close_stdin();

  // Reads stderr until a line containing `needle` appears (true) or the time
  // runs out / the child closes stderr (false). Everything read is kept.
  bool wait_for_stderr(const std::string& needle, std::chrono::milliseconds timeout);

  // Waits for exit, collecting stdout and stderr; kills it after `timeout`.
  exit_status wait(std::chrono::milliseconds timeout = std::chrono::seconds(30));
  void kill(int signal);

  const std::string& out() const { return out_; }
  const std::string& err() const { return err_; }

 private:
  // Reads what the child wrote; with until_exit, until both pipes close or
  // the time runs out, else one round.
  void drain(std::chrono::milliseconds timeout, bool until_exit);

  pid_t pid_ = -1;
  int stdin_ = -1;
  int stdout_ = -1;
  int stderr_ = -1;
  std::string out_;
  std::string err_;
  std::optional<exit_status> status_;
};

struct run_result {
  exit_status status;
  std::string out;
  std::string err;
};

// Runs to completion with `input` on stdin.
run_result run(const std::vector<std::string>& argv, const std::string& input = {},
               const std::map<std::string, std::string>& env = {},
               std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace hvsock::test
