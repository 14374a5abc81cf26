// exec_session: one command, its pipes (or pty) and the frames around it.
#include "agent/exec_session.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <hvsock/unique_fd.hpp>

#include "agent/agent_protocol.hpp"
#include "agent/file_transfer.hpp"

namespace hvsock::agent {
namespace {

// Output waiting for the socket, and input waiting for the command: past
// these the session stops reading, so a slow side slows the other.
constexpr std::size_t max_pending = 256 * 1024;

void set_non_blocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

void refuse(int sock, const std::string& why, int code) {
  (void)write_all(sock, encode_error(why));
  (void)write_all(sock, encode_exit({false, code}));
}

struct command {
  pid_t pid = -1;
  unique_fd input, output, errors;  // errors is empty with a tty (merged into output)
};

// Starts the command; an exec failure comes back as errno (the child
// writes it to a close-on-exec pipe).
result<command> start(const exec_request& r) {
  int status_pipe[2];
  if (::pipe2(status_pipe, O_CLOEXEC) < 0) return make_system_error(errno, "pipe");
  unique_fd status_r(status_pipe[0]), status_w(status_pipe[1]);
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  int master = -1, slave = -1;
  if (r.tty) {
    winsize ws{r.rows, r.columns, 0, 0};
    if (::openpty(&master, &slave, nullptr, nullptr, r.rows ? &ws : nullptr) < 0)
      return make_system_error(errno, "openpty");
    ::fcntl(master, F_SETFD, FD_CLOEXEC);
  } else if (::pipe2(in, O_CLOEXEC) < 0 || ::pipe2(out, O_CLOEXEC) < 0 ||
             ::pipe2(err, O_CLOEXEC) < 0) {
    return make_system_error(errno, "pipe");
  }
  std::vector<char*> argv;
  for (const auto& a : r.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);

  const pid_t pid = ::fork();
  if (pid < 0) return make_system_error(errno, "fork");
  if (pid == 0) {
    for (int s = 1; s < NSIG; ++s) ::signal(s, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (r.tty) {
      ::setsid();
      ::ioctl(slave, TIOCSCTTY, 0);
      ::dup2(slave, 0);
      ::dup2(slave, 1);
      ::dup2(slave, 2);
    } else {
      ::setpgid(0, 0);  // signals from the client go to the whole command
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      ::dup2(err[1], 2);
    }
    int e = 0;
    if (!r.cwd.empty() && ::chdir(r.cwd.c_str()) < 0) e = errno;
    for (const auto& v : r.env) ::putenv(const_cast<char*>(v.c_str()));
    if (e == 0) {
      ::execvp(argv[0], argv.data());
      e = errno;
    }
    (void)!::write(status_w.get(), &e, sizeof e);
    ::_exit(127);
  }
  status_w.reset();
  command c;
  c.pid = pid;
  if (r.tty) {
    ::close(slave);
    c.input.reset(master);
    c.output.reset(::dup(master));
  } else {
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    c.input.reset(in[1]);
    c.output.reset(out[0]);
    c.errors.reset(err[0]);
  }
  int e = 0;
  ssize_t n;
  while ((n = ::read(status_r.get(), &e, sizeof e)) < 0 && errno == EINTR) {
  }
  if (n == sizeof e) {
    ::waitpid(pid, nullptr, 0);
    return make_system_error(
        e, r.cwd.empty() || e != ENOENT ? "cannot run " + r.argv[0] : "cannot enter " + r.cwd);
  }
  return c;
}

class session {
 public:
  session(int sock, command cmd, bool tty) : sock_(sock), cmd_(std::move(cmd)), tty_(tty) {
    set_non_blocking(sock_);
    set_non_blocking(cmd_.input.get());
    set_non_blocking(cmd_.output.get());
    if (cmd_.errors) set_non_blocking(cmd_.errors.get());
    errors_eof_ = !cmd_.errors;
    pidfd_.reset(static_cast<int>(::syscall(SYS_pidfd_open, cmd_.pid, 0)));
  }

  int run() {
    while (!(exited_ && output_eof_ && errors_eof_ && to_client_.empty())) {
      if (client_gone_) {
        ::kill(-cmd_.pid, SIGHUP);  // as a terminal hang-up: nobody reads the output now
        ::kill(cmd_.pid, SIGHUP);
        reap(true);
        return 1;
      }
      if (!step()) return 1;
    }
    const auto exit_frame = encode_exit(status_);
    to_client_.insert(to_client_.end(), exit_frame.begin(), exit_frame.end());
    ::fcntl(sock_, F_SETFL, ::fcntl(sock_, F_GETFL) & ~O_NONBLOCK);
    return write_all(sock_, to_client_) ? 0 : 1;
  }

 private:
  enum { client, input, output, errors, child, count };

  bool step() {
    pollfd p[count] = {};
    p[client] = {sock_, 0, 0};
    if (to_command_.size() < max_pending) p[client].events |= POLLIN;
    if (!to_client_.empty()) p[client].events |= POLLOUT;
    p[input] = {cmd_.input ? cmd_.input.get() : -1,
                static_cast<short>(to_command_.empty() ? 0 : POLLOUT), 0};
    const bool room = to_client_.size() < max_pending;
    p[output] = {output_eof_ ? -1 : cmd_.output.get(), static_cast<short>(room ? POLLIN : 0), 0};
    p[errors] = {errors_eof_ ? -1 : cmd_.errors.get(), static_cast<short>(room ? POLLIN : 0), 0};
    p[child] = {exited_ || !pidfd_ ? -1 : pidfd_.get(), POLLIN, 0};
    // Without a pidfd (kernels before 5.3) the exit is polled for.
    const int timeout = !pidfd_ && !exited_ ? 100 : -1;
    if (::poll(p, count, timeout) < 0) return errno == EINTR;
    if (p[client].revents & (POLLIN | POLLHUP | POLLERR)) read_client();
    if (p[client].revents & POLLOUT) flush_client();
    if (p[input].revents & (POLLOUT | POLLERR | POLLHUP)) feed_command();
    if (p[output].revents & (POLLIN | POLLHUP | POLLERR))
      read_output(cmd_.output.get(), frame_type::stdout_data, output_eof_);
    if (p[errors].revents & (POLLIN | POLLHUP | POLLERR))
      read_output(cmd_.errors.get(), frame_type::stderr_data, errors_eof_);
    if ((p[child].revents & POLLIN) || (!pidfd_ && !exited_)) reap(false);
    return !broken_;
  }

  void read_client() {
    std::byte buf[65536];
    const ssize_t n = ::recv(sock_, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno != EAGAIN && errno != EINTR) client_gone_ = true;
      return;
    }
    if (n == 0) {
      client_gone_ = true;
      return;
    }
    reader_.feed(std::span(buf, static_cast<std::size_t>(n)));
    for (;;) {
      auto f = reader_.next();
      if (!f) {
        refuse_late(f.error().message());
        return;
      }
      if (!*f) return;
      handle(**f);
    }
  }

  void handle(const frame& f) {
    switch (f.type) {
      case frame_type::stdin_data:
        to_command_.insert(to_command_.end(), f.payload.begin(), f.payload.end());
        return;
      case frame_type::stdin_eof:
        input_eof_ = true;
        if (to_command_.empty()) close_input();
        return;
      case frame_type::signal:
        if (auto s = decode_signal(f.payload)) {
          // The command's process group (its session with a tty); the pid
          // alone if the child has not made its group yet.
          if (::kill(-cmd_.pid, *s) < 0) ::kill(cmd_.pid, *s);
        }
        return;
      case frame_type::winsize:
        if (auto w = decode_winsize(f.payload); w && tty_) {
          winsize ws{w->first, w->second, 0, 0};
          ::ioctl(cmd_.input.get(), TIOCSWINSZ, &ws);
        }
        return;
      default: refuse_late("unexpected frame during an exec");
    }
  }

  void refuse_late(const std::string& why) {
    const auto e = encode_error(why);
    (void)write_all(sock_, e);
    ::kill(-cmd_.pid, SIGKILL);
    reap(true);
    broken_ = true;
  }

  void feed_command() {
    while (!to_command_.empty()) {
      const ssize_t n = ::write(cmd_.input.get(), to_command_.data(), to_command_.size());
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        to_command_.clear();  // the command closed its stdin: drop the rest, as a pipe does
        break;
      }
      to_command_.erase(to_command_.begin(), to_command_.begin() + n);
    }
    if (input_eof_) close_input();
  }

  void close_input() {
    if (tty_) {
      // A terminal has no half-close: end of input is the EOF character.
      const char eof = 4;
      (void)!::write(cmd_.input.get(), &eof, 1);
      return;
    }
    cmd_.input.reset();
  }

  void read_output(int fd, frame_type type, bool& eof) {
    std::byte buf[max_data_payload];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {  // EOF, or EIO from a pty whose other side is all closed
      eof = true;
      return;
    }
    const auto f = encode(type, std::span(buf, static_cast<std::size_t>(n)));
    to_client_.insert(to_client_.end(), f.begin(), f.end());
    flush_client();
  }

  void flush_client() {
    while (!to_client_.empty()) {
      const ssize_t n = ::send(sock_, to_client_.data(), to_client_.size(), MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        client_gone_ = true;
        return;
      }
      to_client_.erase(to_client_.begin(), to_client_.begin() + n);
    }
  }

  void reap(bool wait) {
    if (exited_) return;
    int status = 0;
    const pid_t r = ::waitpid(cmd_.pid, &status, wait ? 0 : WNOHANG);
    if (r != cmd_.pid) return;
    exited_ = true;
    status_ = WIFSIGNALED(status) ? exit_status{true, WTERMSIG(status)}
                                  : exit_status{false, WEXITSTATUS(status)};
  }

  int sock_;
  command cmd_;
  bool tty_;
  unique_fd pidfd_;
  frame_reader reader_;
  std::vector<std::byte> to_client_, to_command_;
  bool input_eof_ = false, output_eof_ = false, errors_eof_ = false;
  bool exited_ = false, client_gone_ = false, broken_ = false;
  exit_status status_;
};

// hvsock cp: PUT receives a tree into the VM, GET sends one out; EXIT 0 or
// ERROR and EXIT 1 ends it.
int run_copy(int sock, const frame& request) {
  result<void> done;
  if (request.type == frame_type::put) {
    auto put = decode_put(request.payload);
    if (!put) {
      refuse(sock, put.error().message(), 1);
      return 1;
    }
    tree_receiver receiver(put->first, put->second, nullptr);
    done = receive_tree(sock, receiver);
  } else {
    auto source = decode_get(request.payload);
    if (!source) {
      refuse(sock, source.error().message(), 1);
      return 1;
    }
    done = send_tree(sock, *source, nullptr);
  }
  if (!done) {
    refuse(sock, done.error().message(), 1);
    return 1;
  }
  return write_all(sock, encode_exit({false, 0})) ? 0 : 1;
}

}  // namespace

int run_exec_session(int sock) {
  auto hello = read_frame(sock);
  if (!hello) return 1;
  if (hello->type != frame_type::hello) {
    refuse(sock, "the first frame must be HELLO", 255);
    return 1;
  }
  auto version = decode_hello(hello->payload);
  if (!version || *version != protocol_version) {
    refuse(sock,
           version ? "protocol version " + std::to_string(*version) + " is not " +
                         std::to_string(protocol_version)
                   : version.error().message(),
           255);
    return 1;
  }
  if (!write_all(sock, encode_hello())) return 1;
  auto request_frame = read_frame(sock);
  if (!request_frame) return 1;
  if (request_frame->type == frame_type::put || request_frame->type == frame_type::get)
    return run_copy(sock, *request_frame);
  if (request_frame->type != frame_type::exec) {
    refuse(sock, "expected an EXEC, PUT or GET request", 255);
    return 1;
  }
  auto request = decode_exec(request_frame->payload);
  if (!request) {
    refuse(sock, request.error().message(), 255);
    return 1;
  }
  auto started = start(*request);
  if (!started) {
    const bool missing = started.error().code() == std::errc::no_such_file_or_directory;
    refuse(sock, started.error().message(), missing ? 127 : 126);
    return 1;
  }
  return session(sock, std::move(*started), request->tty).run();
}

}  // namespace hvsock::agent
