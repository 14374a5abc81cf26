// exec_session: HELLO and the request within a deadline, then one command,
// its pipes (or pty) and the frames around it.
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

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include <hvsock/unique_fd.hpp>

#include "agent/agent_protocol.hpp"
#include "agent/copy_session.hpp"

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

struct pipe_ends {
  unique_fd read, write;
};

result<pipe_ends> make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) < 0) return make_system_error(errno, "pipe");
  return pipe_ends{unique_fd(fds[0]), unique_fd(fds[1])};
}

// The command's side of its stdio: the pty's slave three times, or the
// three pipe ends. Every fd here is close-on-exec; only the dup2 copies on
// 0, 1 and 2 reach the command (the agent keeps 0..2 open, so none of
// these is one of them).
struct child_stdio {
  unique_fd in, out, err;
};

// In the command's child, before exec: closes every fd above 2 but `keep`.
void close_inherited(int keep) {
  const auto close_from_to = [](unsigned first, unsigned last) {
    if (first > last) return;
    if (::close_range(first, last, 0) == 0) return;
    // Kernels before 5.9: one by one, up to the limit.
    const long limit = std::min(::sysconf(_SC_OPEN_MAX), 1L << 20);
    for (long fd = first; fd <= std::min<long>(last, limit - 1); ++fd)
      ::close(static_cast<int>(fd));
  };
  if (keep < 3) {
    close_from_to(3, ~0U);
    return;
  }
  close_from_to(3, static_cast<unsigned>(keep) - 1);
  close_from_to(static_cast<unsigned>(keep) + 1, ~0U);
}

// Starts the command; an exec failure comes back as errno (the child
// writes it to a close-on-exec pipe). Whatever fails, every fd opened here
// is closed again.
result<command> start(const exec_request& r) {
  auto status = make_pipe();
  if (!status) return status.error();
  command c;
  child_stdio stdio;
  if (r.tty) {
    int master = -1, slave = -1;
    winsize ws{r.rows, r.columns, 0, 0};
    if (::openpty(&master, &slave, nullptr, nullptr, r.rows ? &ws : nullptr) < 0)
      return make_system_error(errno, "openpty");
    c.input.reset(master);
    stdio.in.reset(slave);
    // openpty has no flags argument: close-on-exec right after (this
    // process has one thread, so no exec can come in between).
    if (::fcntl(master, F_SETFD, FD_CLOEXEC) < 0 || ::fcntl(slave, F_SETFD, FD_CLOEXEC) < 0)
      return make_system_error(errno, "openpty");
    c.output.reset(::fcntl(master, F_DUPFD_CLOEXEC, 0));
    if (!c.output) return make_system_error(errno, "dup");
  } else {
    auto in = make_pipe();
    if (!in) return in.error();
    auto out = make_pipe();
    if (!out) return out.error();
    auto err = make_pipe();
    if (!err) return err.error();
    c.input = std::move(in->write);
    c.output = std::move(out->read);
    c.errors = std::move(err->read);
    stdio = {std::move(in->read), std::move(out->write), std::move(err->write)};
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
      ::ioctl(stdio.in.get(), TIOCSCTTY, 0);
      ::dup2(stdio.in.get(), 0);
      ::dup2(stdio.in.get(), 1);
      ::dup2(stdio.in.get(), 2);
    } else {
      ::setpgid(0, 0);  // signals from the client go to the whole command
      ::dup2(stdio.in.get(), 0);
      ::dup2(stdio.out.get(), 1);
      ::dup2(stdio.err.get(), 2);
    }
    // Ours are close-on-exec; what the agent inherited may not be: the
    // command gets its stdio and nothing else.
    close_inherited(status->write.get());
    int e = 0;
    if (!r.cwd.empty() && ::chdir(r.cwd.c_str()) < 0) e = errno;
    for (const auto& v : r.env) ::putenv(const_cast<char*>(v.c_str()));
    if (e == 0) {
      ::execvp(argv[0], argv.data());
      e = errno;
    }
    (void)!::write(status->write.get(), &e, sizeof e);
    ::_exit(127);
  }
  // The command's ends are the command's now: closed here, so its exit is
  // seen as EOF on output.
  stdio = {};
  status->write.reset();
  c.pid = pid;
  int e = 0;
  ssize_t n;
  while ((n = ::read(status->read.get(), &e, sizeof e)) < 0 && errno == EINTR) {
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

// Reads exactly out.size() bytes by `deadline`: 0 at a clean EOF before
// the first byte, timed_out past the deadline.
result<std::size_t> read_exact_before(int fd, std::span<std::byte> out,
                                      std::chrono::steady_clock::time_point deadline) {
  std::size_t got = 0;
  while (got < out.size()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return failure(errc::timed_out, "agent connection: too slow");
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(left.count(), 60000)));
    if (ready < 0 && errno != EINTR) return make_system_error(errno, "agent connection");
    if (ready <= 0) continue;
    const ssize_t n = ::recv(fd, out.data() + got, out.size() - got, MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return make_system_error(errno, "agent connection");
    if (n == 0) {
      if (got == 0) return std::size_t{0};
      return failure(errc::protocol_error, "agent protocol: the connection ended inside a frame");
    }
    got += static_cast<std::size_t>(n);
  }
  return got;
}

// read_frame with a deadline: the header, then exactly its payload (what
// follows the frame stays in the socket for whoever reads next).
result<frame> read_frame_before(int fd, std::chrono::steady_clock::time_point deadline) {
  constexpr std::size_t header_size = 5;
  std::vector<std::byte> bytes(header_size);
  auto head = read_exact_before(fd, bytes, deadline);
  if (!head) return head.error();
  if (*head == 0) return failure(errc::not_connected, "the agent connection closed");
  std::uint32_t length = 0;
  for (int i = 3; i >= 0; --i)
    length = (length << 8) | std::to_integer<std::uint32_t>(bytes[static_cast<std::size_t>(i)]);
  frame_reader reader;  // the same checks as every other frame
  reader.feed(bytes);
  if (auto checked = reader.next(); !checked) return checked.error();  // size and type
  bytes.resize(4 + std::size_t{length});
  if (length > 1) {
    auto rest = read_exact_before(fd, std::span(bytes).subspan(header_size), deadline);
    if (!rest) return rest.error();
    if (*rest == 0)
      return failure(errc::protocol_error, "agent protocol: the connection ended inside a frame");
  }
  frame_reader whole;
  whole.feed(bytes);
  auto f = whole.next();
  if (!f) return f.error();
  return std::move(**f);
}

}  // namespace

int run_exec_session(int sock, std::chrono::milliseconds request_timeout) {
  const auto deadline = std::chrono::steady_clock::now() + request_timeout;
  const auto too_slow = [&](const char* what) {
    refuse(sock,
           std::string("no ") + what + " within " +
               std::to_string(
                   std::chrono::duration_cast<std::chrono::seconds>(request_timeout).count()) +
               " s of connecting; closing",
           255);
    return 1;
  };
  auto hello = read_frame_before(sock, deadline);
  if (!hello) {
    if (hello.error().code() == make_error_code(errc::timed_out)) return too_slow("HELLO");
    if (hello.error().code() == make_error_code(errc::protocol_error))
      refuse(sock, hello.error().message(), 255);
    return 1;
  }
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
  auto request_frame = read_frame_before(sock, deadline);
  if (!request_frame) {
    if (request_frame.error().code() == make_error_code(errc::timed_out))
      return too_slow("request after HELLO");
    if (request_frame.error().code() == make_error_code(errc::protocol_error))
      refuse(sock, request_frame.error().message(), 255);
    return 1;
  }
  if (request_frame->type == frame_type::put || request_frame->type == frame_type::get)
    return run_copy_session(sock, *request_frame);
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
