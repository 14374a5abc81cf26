// hvsock listen / hvsock connect: a netcat for hvsock. Both copy stdin to the
// socket and the socket to stdout, half-close the socket when stdin ends, and
// exit 0 once both directions are done.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <iostream>

#include "cli_common.hpp"
#include "sys/file_io.hpp"

namespace hvsock::cli {
namespace {

// The copy loop. Returns the exit code.
int copy_both_ways(stream& s) {
  std::array<char, 65536> buffer;
  bool stdin_open = true;
  bool socket_open = true;
  const int sock = s.native_handle();
  while (stdin_open || socket_open) {
    pollfd fds[2] = {{stdin_open ? STDIN_FILENO : -1, POLLIN, 0},
                     {socket_open ? sock : -1, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      fail(std::string("poll: ") + std::strerror(errno));
    }
    if (fds[0].revents != 0) {
      const ssize_t n = ::read(STDIN_FILENO, buffer.data(), buffer.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        stdin_open = false;
        (void)s.shutdown(shutdown_how::write);  // the peer sees EOF
      } else {
        must(s.write_all(buffer.data(), static_cast<std::size_t>(n)));
      }
    }
    if (fds[1].revents != 0) {
      auto n = s.read(buffer.data(), buffer.size());
      if (!n) fail(n.error());
      if (*n == 0) {
        socket_open = false;
      } else {
        must(detail::write_fully(STDOUT_FILENO, std::string_view(buffer.data(), *n), "stdout"));
      }
    }
  }
  return 0;
}

struct stream_args {
  std::string from = "any";
  std::string service;
  std::string target;
  int backlog = 1;
  int timeout_ms = static_cast<int>(default_connect_timeout.count());
};

}  // namespace

void add_stream_commands(CLI::App& app, global_options& options) {
  auto args = std::make_shared<stream_args>();

  auto* listen_cmd = app.add_subcommand(
      "listen",
      "Accept one connection to SERVICE in this partition, then copy stdin to it and it to "
      "stdout");
  listen_cmd->add_option("--from", args->from,
                         "who may connect: any, children, parent, loopback, or a VmId/partition "
                         "name");
  listen_cmd->add_option("SERVICE", args->service, "service GUID or registered name")->required();
  listen_cmd->callback([args, &options] {
    const endpoint local{resolve_vm(args->from, options), resolve_service(args->service, options)};
    auto l = must(listener::listen(
        local, {.backlog = args->backlog, .control_socket = control_socket(options)}));
    std::cerr << "listening on " << l.local_endpoint().to_string() << std::endl;
    auto s = must(l.accept());
    l.close();
    std::cerr << "connection from " << s.peer_endpoint().to_string() << std::endl;
    const int code = copy_both_ways(s);
    if (code != 0) fail("", code);
  });

  auto* connect_cmd = app.add_subcommand(
      "connect", "Connect to SERVICE in TARGET, then copy stdin to it and it to stdout");
  connect_cmd->add_option("TARGET", args->target, "parent, loopback, a partition name or a VmId")
      ->required();
  connect_cmd->add_option("SERVICE", args->service, "service GUID or registered name")->required();
  connect_cmd->add_option("--timeout", args->timeout_ms, "connect timeout in milliseconds")
      ->check(CLI::Range(1, 3600000));
  connect_cmd->callback([args, &options] {
    const endpoint target{resolve_vm(args->target, options),
                          resolve_service(args->service, options)};
    auto s = must(stream::connect(target, {.timeout = std::chrono::milliseconds(args->timeout_ms),
                                           .control_socket = control_socket(options)}));
    const int code = copy_both_ways(s);
    if (code != 0) fail("", code);
  });
}

}  // namespace hvsock::cli
