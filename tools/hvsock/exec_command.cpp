// hvsock exec [-t] VM -- CMD [ARG...]: runs CMD in VM through its guest
// agent and returns its output and exit status as hvsock's own: stdin
// streamed in, stdout and stderr out separately, SIGINT/SIGTERM/SIGHUP
// passed on, and with -t a pseudo-terminal there (raw mode here, window
// size changes passed on). Exit status: the command's, 128+N when a signal
// N ended it, 255 when the agent could not be reached or went away.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <optional>
#include <vector>

#include "agent/agent_protocol.hpp"
#include "agent_client.hpp"
#include "cli_common.hpp"

namespace hvsock::cli {
namespace {

constexpr std::size_t max_pending = 256 * 1024;

int signal_pipe[2] = {-1, -1};

extern "C" void on_signal(int signo) {
  const int saved = errno;
  const unsigned char s = static_cast<unsigned char>(signo);
  (void)!::write(signal_pipe[1], &s, 1);
  errno = saved;
}

// The local terminal in raw mode for -t, restored however we leave.
class raw_terminal {
 public:
  raw_terminal() {
    if (::tcgetattr(STDIN_FILENO, &saved_) != 0) return;
    termios raw = saved_;
    ::cfmakeraw(&raw);
    active_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
  }
  ~raw_terminal() {
    if (active_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
  raw_terminal(const raw_terminal&) = delete;
  raw_terminal& operator=(const raw_terminal&) = delete;

 private:
  termios saved_{};
  bool active_ = false;
};

bool write_fd(int fd, std::span<const std::byte> data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, -1);
      continue;
    }
    if (n < 0) return false;
    data = data.subspan(static_cast<std::size_t>(n));
  }
  return true;
}

struct exec_args {
  std::string vm;
  std::vector<std::string> command;
  std::vector<std::string> env;
  std::string cwd;
  bool tty = false;
  int timeout_ms = 5000;
};

int run_exec(const exec_args& args, const global_options& options) {
  auto s = connect_agent(args.vm, std::chrono::milliseconds(args.timeout_ms), "exec " + args.vm,
                         options);
  const int sock = s.native_handle();

  agent::exec_request request{args.command, args.env, args.cwd, args.tty, 0, 0};
  std::optional<raw_terminal> raw;
  const bool stdin_is_tty = ::isatty(STDIN_FILENO);
  if (args.tty) {
    winsize ws{};
    if (::ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0) {
      request.rows = ws.ws_row;
      request.columns = ws.ws_col;
    }
  }
  if (!agent::write_all(sock, agent::encode_exec(request)))
    fail("exec " + args.vm + ": the agent went away", exit_agent_lost);
  if (args.tty && stdin_is_tty) raw.emplace();

  if (::pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
    fail("pipe: " + std::string(strerror(errno)));
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  for (int signo : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH}) ::sigaction(signo, &sa, nullptr);
  ::fcntl(sock, F_SETFL, ::fcntl(sock, F_GETFL) | O_NONBLOCK);

  agent::frame_reader reader;
  std::vector<std::byte> to_agent;
  bool stdin_eof = false;
  std::optional<agent::exit_status> status;
  std::string error;
  std::vector<std::byte> buf(agent::max_data_payload);
  while (!status) {
    pollfd p[3] = {{sock, POLLIN, 0}, {-1, POLLIN, 0}, {signal_pipe[0], POLLIN, 0}};
    if (!to_agent.empty()) p[0].events |= POLLOUT;
    if (!stdin_eof && to_agent.size() < max_pending) p[1].fd = STDIN_FILENO;
    if (::poll(p, 3, -1) < 0) {
      if (errno == EINTR) continue;
      fail("poll: " + std::string(strerror(errno)));
    }
    if (p[2].revents & POLLIN) {
      unsigned char signo;
      while (::read(signal_pipe[0], &signo, 1) == 1) {
        std::vector<std::byte> f;
        if (signo == SIGWINCH) {
          winsize ws{};
          if (!args.tty || ::ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) != 0) continue;
          f = agent::encode_winsize(ws.ws_row, ws.ws_col);
        } else {
          f = agent::encode_signal(signo);
        }
        to_agent.insert(to_agent.end(), f.begin(), f.end());
      }
    }
    if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      const ssize_t n = ::read(STDIN_FILENO, buf.data(), buf.size());
      if (n > 0) {
        const auto f = agent::encode(agent::frame_type::stdin_data,
                                     std::span(buf).first(static_cast<std::size_t>(n)));
        to_agent.insert(to_agent.end(), f.begin(), f.end());
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        stdin_eof = true;
        const auto f = agent::encode(agent::frame_type::stdin_eof);
        to_agent.insert(to_agent.end(), f.begin(), f.end());
      }
    }
    if ((p[0].revents & POLLOUT) && !to_agent.empty()) {
      const ssize_t n = ::send(sock, to_agent.data(), to_agent.size(), MSG_NOSIGNAL);
      if (n > 0) {
        to_agent.erase(to_agent.begin(), to_agent.begin() + n);
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        to_agent.clear();  // the reading side will see the end
      }
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      const ssize_t n = ::recv(sock, buf.data(), buf.size(), 0);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0) {
        raw.reset();
        fail("exec " + args.vm + ": the connection to the agent was lost" +
                 (error.empty() ? std::string() : " (" + error + ")"),
             exit_agent_lost);
      }
      reader.feed(std::span(buf).first(static_cast<std::size_t>(n)));
      for (;;) {
        auto f = reader.next();
        if (!f) {
          raw.reset();
          fail("exec " + args.vm + ": " + f.error().message(), exit_agent_lost);
        }
        if (!*f) break;
        const agent::frame& fr = **f;
        if (fr.type == agent::frame_type::stdout_data) {
          if (!write_fd(STDOUT_FILENO, fr.payload)) {
            // Nobody reads our output any more: stop the command, as a pipe would.
            const auto sig = agent::encode_signal(SIGPIPE);
            to_agent.insert(to_agent.end(), sig.begin(), sig.end());
          }
        } else if (fr.type == agent::frame_type::stderr_data) {
          (void)write_fd(STDERR_FILENO, fr.payload);
        } else if (fr.type == agent::frame_type::error) {
          error.assign(reinterpret_cast<const char*>(fr.payload.data()), fr.payload.size());
        } else if (fr.type == agent::frame_type::exit) {
          auto st = agent::decode_exit(fr.payload);
          if (!st) fail("exec " + args.vm + ": " + st.error().message(), exit_agent_lost);
          status = *st;
          break;
        }
      }
    }
  }
  raw.reset();
  if (!error.empty()) std::cerr << "hvsock: exec " << args.vm << ": " << error << "\n";
  return status->signaled ? 128 + status->code : status->code;
}

}  // namespace

void add_exec_command(CLI::App& app, global_options& options) {
  auto args = std::make_shared<exec_args>();
  auto* exec = app.add_subcommand(
      "exec",
      "Run a command in a VM through its guest agent; its output and exit status come back");
  exec->add_flag("-t,--tty", args->tty, "allocate a pseudo-terminal in the VM (interactive use)");
  exec->add_option("-e,--env", args->env, "NAME=VALUE for the command's environment (repeatable)");
  exec->add_option("-C,--cwd", args->cwd, "the command's working directory in the VM");
  exec->add_option("--timeout", args->timeout_ms, "connect timeout in milliseconds")
      ->check(CLI::Range(1, 3600000));
  completes_partition(
      exec->add_option("VM", args->vm, "the VM: a partition name or VmId")->required());
  completes_guest_command(
      exec->add_option("CMD", args->command, "the command and its arguments (after --)")
          ->required());
  exec->callback([args, &options] {
    for (const auto& e : args->env)
      if (e.find('=') == std::string::npos || e.front() == '=')
        fail("--env " + e + ": expected NAME=VALUE", exit_usage);
    const int code = run_exec(*args, options);
    throw cli_exit{code, ""};
  });
}

}  // namespace hvsock::cli
