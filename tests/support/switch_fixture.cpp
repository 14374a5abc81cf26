#include "switch_fixture.hpp"

#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <stdexcept>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "protocol/runtime_paths.hpp"

namespace hvsock::test {

switch_fixture::switch_fixture() {
  // Short paths: AF_UNIX socket paths are limited to 107 bytes.
  char tmpl[] = "/tmp/hvst-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
  root_ = tmpl;
  state_dir_ = root_ + "/state";
  runtime_dir_ = root_ + "/run";
  start_daemon();
}

switch_fixture::~switch_fixture() {
  if (daemon_) {
    daemon_->kill(SIGTERM);
    daemon_->wait(std::chrono::seconds(10));
  }
  std::error_code ignored;
  std::filesystem::remove_all(root_, ignored);
}

std::string switch_fixture::control_socket(const std::string& partition) const {
  return detail::partition_socket_path(runtime_dir_, partition);
}

void switch_fixture::start_daemon() {
  daemon_ = std::make_unique<child_process>(std::vector<std::string>{
      hvsockd_path, "--state-dir", state_dir_, "--runtime-dir", runtime_dir_});
  if (!daemon_->wait_for_stderr("ready", std::chrono::seconds(10)))
    throw std::runtime_error("hvsockd did not become ready: " + daemon_->err());
}

exit_status switch_fixture::stop_daemon() {
  daemon_->kill(SIGTERM);
  return daemon_->wait(std::chrono::seconds(10));
}

void switch_fixture::kill_daemon() {
  daemon_->kill(SIGKILL);
  daemon_->wait(std::chrono::seconds(10));
}

run_result switch_fixture::cli(const std::vector<std::string>& args, const std::string& input,
                               std::chrono::milliseconds timeout) const {
  std::vector<std::string> argv{hvsock_cli_path, "--runtime-dir", runtime_dir_};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, input, {}, timeout);
}

std::string switch_fixture::cli_ok(const std::vector<std::string>& args) const {
  auto r = cli(args);
  std::string joined;
  for (const auto& a : args) joined += a + " ";
  EXPECT_EQ(r.status.code, 0) << "hvsock " << joined << "failed: " << r.err;
  std::string out = r.out;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::unique_ptr<child_process> switch_fixture::cli_async(
    const std::vector<std::string>& args) const {
  std::vector<std::string> argv{hvsock_cli_path, "--runtime-dir", runtime_dir_};
  argv.insert(argv.end(), args.begin(), args.end());
  return std::make_unique<child_process>(argv);
}

std::string switch_fixture::create_vm(const std::string& name, const std::string& parent,
                                      const std::string& kind) const {
  std::vector<std::string> args{"vm", "create", name, "--kind", kind};
  if (!parent.empty()) {
    args.push_back("--parent");
    args.push_back(parent);
  }
  return cli_ok(args);
}

std::string switch_fixture::register_service(const std::string& name, const std::string& id) const {
  std::vector<std::string> args{"service", "register", "--name", name};
  if (!id.empty()) {
    args.push_back("--id");
    args.push_back(id);
  }
  return cli_ok(args);
}

guid switch_fixture::vm_id_of(const std::string& name) const {
  const auto list = nlohmann::json::parse(cli_ok({"vm", "list", "--json"}));
  for (const auto& p : list)
    if (p.at("name") == name) return guid::parse(p.at("id").get<std::string>()).value();
  throw std::runtime_error("no partition named " + name);
}

pid_t fork_child(const std::function<int()>& body) {
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    int code = 99;
    try {
      code = body();
    } catch (...) {
      code = 98;
    }
    ::_exit(code);
  }
  return pid;
}

int wait_child(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int raw = 0;
  while (::waitpid(pid, &raw, WNOHANG) != pid) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &raw, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
}

int count_open_fds(pid_t pid) {
  int count = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    (void)entry;
    ++count;
  }
  return count;
}

}  // namespace hvsock::test
