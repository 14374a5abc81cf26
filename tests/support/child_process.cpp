#include "child_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

extern char** environ;

namespace hvsock::test {
namespace {

void make_pipe(int fds[2]) {
  if (::pipe2(fds, O_CLOEXEC) < 0) throw std::runtime_error("pipe2 failed");
}

exit_status decode(int raw) {
  exit_status s;
  if (WIFEXITED(raw)) s.code = WEXITSTATUS(raw);
  if (WIFSIGNALED(raw)) s.signal = WTERMSIG(raw);
  return s;
}

}  // namespace

child_process::child_process(const std::vector<std::string>& argv,
                             const std::map<std::string, std::string>& env) {
  int in[2], out[2], err[2];
  make_pipe(in);
  make_pipe(out);
  make_pipe(err);
  // Build everything the child needs before fork: only async-signal-safe
  // calls may run between fork and exec.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry(*e);
    const auto eq = entry.find('=');
    if (eq != std::string::npos && env.count(entry.substr(0, eq)) != 0) continue;
    env_strings.push_back(entry);
  }
  for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp, args;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& a : argv_copy) args.push_back(a.data());
  args.push_back(nullptr);

  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    ::dup2(in[0], STDIN_FILENO);
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(err[1], STDERR_FILENO);
    ::signal(SIGPIPE, SIG_DFL);
    ::execve(args[0], args.data(), envp.data());
    const char msg[] = "child_process: exec failed\n";
    (void)!::write(STDERR_FILENO, msg, sizeof msg - 1);
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  stdin_ = in[1];
  stdout_ = out[0];
  stderr_ = err[0];
}

child_process::~child_process() {
  if (!status_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int raw;
    ::waitpid(pid_, &raw, 0);
  }
  for (int fd : {stdin_, stdout_, stderr_})
    if (fd >= 0) ::close(fd);
}

void child_process::write_stdin(const std::string& data) {
  // Keep reading the child's output while writing, so a child that answers
  // as it reads cannot deadlock against us on full pipes.
  std::size_t done = 0;
  while (done < data.size()) {
    pollfd fds[3] = {{stdin_, POLLOUT, 0}, {stdout_, POLLIN, 0}, {stderr_, POLLIN, 0}};
    if (::poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("poll on child pipes failed");
    }
    if (fds[1].revents != 0 || fds[2].revents != 0) drain(std::chrono::milliseconds(0), false);
    if (fds[0].revents & (POLLERR | POLLHUP)) throw std::runtime_error("child closed its stdin");
    if (fds[0].revents == 0) continue;
    const ssize_t n =
        ::write(stdin_, data.data() + done, std::min<std::size_t>(data.size() - done, 65536));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("write to child stdin: ") + std::strerror(errno));
    }
    done += static_cast<std::size_t>(n);
  }
}

void child_process::close_stdin() {
  if (stdin_ >= 0) ::close(stdin_);
  stdin_ = -1;
}

void child_process::drain(std::chrono::milliseconds timeout, bool until_exit) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (stdout_ >= 0 || stderr_ >= 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 && until_exit) return;
    pollfd fds[2] = {{stdout_, POLLIN, 0}, {stderr_, POLLIN, 0}};
    const int rc = ::poll(fds, 2, static_cast<int>(std::max<long>(left.count(), 0)));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) return;
    char buf[65536];
    for (int i = 0; i < 2; ++i) {
      if (fds[i].revents == 0) continue;
      int& fd = i == 0 ? stdout_ : stderr_;
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) {
        ::close(fd);
        fd = -1;
      } else {
        (i == 0 ? out_ : err_).append(buf, static_cast<std::size_t>(n));
      }
    }
    if (!until_exit) return;
  }
}

bool child_process::wait_for_stderr(const std::string& needle, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (err_.find(needle) == std::string::npos) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || stderr_ < 0) return false;
    drain(left, false);
  }
  return true;
}

exit_status child_process::wait(std::chrono::milliseconds timeout) {
  if (status_) return *status_;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  drain(timeout, true);
  int raw = 0;
  for (;;) {
    if (::waitpid(pid_, &raw, WNOHANG) == pid_) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &raw, 0);
      err_ += "\n[child_process: killed after timeout]\n";
      break;
    }
    ::usleep(1000);
  }
  status_ = decode(raw);
  return *status_;
}

void child_process::kill(int signal) {
  if (!status_) ::kill(pid_, signal);
}

run_result run(const std::vector<std::string>& argv, const std::string& input,
               const std::map<std::string, std::string>& env, std::chrono::milliseconds timeout) {
  child_process child(argv, env);
  if (!input.empty()) child.write_stdin(input);
  child.close_stdin();
  auto status = child.wait(timeout);
  return {status, child.out(), child.err()};
}

}  // namespace hvsock::test
