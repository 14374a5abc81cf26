// hvsock listen / hvsock connect: a netcat for hvsock. Both copy stdin to the
// socket and the socket to stdout, half-close the socket when stdin ends, and
// exit 0 once both directions are done. With -r/--recv-only (as ncat's) they
// never read stdin and half-close at once; so does a command started in the
// background of an interactive shell whose stdin is the terminal, which
// would otherwise be stopped by the terminal (SIGTTIN) and never half-close.
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

// The copy loop. The socket is non-blocking so that neither direction can
// stall the other: a peer that writes a lot before it reads (as `cat` in a
// pipe does) must not deadlock against our own pending writes. Returns the
// exit code.
int copy_both_ways(stream& s, bool read_stdin) {
  must(s.set_non_blocking(true));
  std::array<char, 65536> in_buffer;   // socket -> stdout
  std::array<char, 65536> out_buffer;  // stdin -> socket
  std::size_t out_begin = 0, out_end = 0;
  bool stdin_open = read_stdin;
  bool socket_open = true;
  const int sock = s.native_handle();
  if (!stdin_open) (void)s.shutdown(shutdown_how::write);  // nothing will be sent
  for (;;) {
    const bool pending = out_begin < out_end;
    if (!stdin_open && !pending && !socket_open) return 0;
    pollfd fds[2] = {
        {stdin_open && !pending ? STDIN_FILENO : -1, POLLIN, 0},
        {sock, static_cast<short>((socket_open ? POLLIN : 0) | (pending ? POLLOUT : 0)), 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      fail(std::string("poll: ") + std::strerror(errno));
    }
    if (fds[0].revents != 0) {
      const ssize_t n = ::read(STDIN_FILENO, out_buffer.data(), out_buffer.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        stdin_open = false;
        (void)s.shutdown(shutdown_how::write);  // the peer sees EOF
      } else {
        out_begin = 0;
        out_end = static_cast<std::size_t>(n);
      }
    }
    if ((fds[1].revents & POLLOUT) != 0 && pending) {
      auto n =
          s.write(std::as_bytes(std::span(out_buffer.data() + out_begin, out_end - out_begin)));
      if (!n && n.error().code() != errc::would_block) fail(n.error());
      if (n) out_begin += *n;
    }
    if (socket_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      auto n = s.read(in_buffer.data(), in_buffer.size());
      if (!n) {
        if (n.error().code() != errc::would_block) fail(n.error());
      } else if (*n == 0) {
        socket_open = false;
      } else {
        must(detail::write_fully(STDOUT_FILENO, std::string_view(in_buffer.data(), *n), "stdout"));
      }
    }
  }
}

// Whether to copy stdin: not with --recv-only, and not from a terminal whose
// foreground is another process group (a job in the background).
bool reads_stdin(bool recv_only) {
  if (recv_only) return false;
  if (!::isatty(STDIN_FILENO)) return true;
  const pid_t foreground = ::tcgetpgrp(STDIN_FILENO);
  return foreground < 0 || foreground == ::getpgrp();
}

struct stream_args {
  std::string from = "any";
  std::string service;
  std::string target;
  int backlog = 1;
  bool recv_only = false;
  int timeout_ms = static_cast<int>(default_connect_timeout.count());
};

}  // namespace

void add_stream_commands(CLI::App& app, global_options& options) {
  auto args = std::make_shared<stream_args>();

  auto* listen_cmd = app.add_subcommand(
      "listen",
      "Accept one connection to SERVICE in this partition, then copy stdin to it and it to "
      "stdout");
  completes_partition(listen_cmd->add_option(
                          "--from", args->from,
                          "who may connect: any, children, parent, loopback, or a VmId/partition "
                          "name"),
                      {"any", "children", "parent", "loopback"});
  completes_service(listen_cmd
                        ->add_option("SERVICE", args->service,
                                     "service GUID, vsock port number or registered name")
                        ->required());
  listen_cmd->add_flag("-r,--recv-only", args->recv_only,
                       "only receive: never read stdin, half-close at once (also the default for "
                       "a background job whose stdin is the terminal)");
  listen_cmd->callback([args, &options] {
    const endpoint local{resolve_vm(args->from, options), resolve_service(args->service, options)};
    auto l = must(listener::listen(
        local, {.backlog = args->backlog, .control_socket = control_socket(options)}));
    std::cerr << "listening on " << l.local_endpoint().to_string() << std::endl;
    auto s = must(l.accept());
    l.close();
    std::cerr << "connection from " << s.peer_endpoint().to_string() << std::endl;
    const int code = copy_both_ways(s, reads_stdin(args->recv_only));
    if (code != 0) fail("", code);
  });

  auto* connect_cmd = app.add_subcommand(
      "connect", "Connect to SERVICE in TARGET, then copy stdin to it and it to stdout");
  completes_partition(
      connect_cmd
          ->add_option("TARGET", args->target, "parent, loopback, a partition name or a VmId")
          ->required(),
      {"parent", "loopback"});
  completes_service(connect_cmd
                        ->add_option("SERVICE", args->service,
                                     "service GUID, vsock port number or registered name")
                        ->required());
  connect_cmd->add_option("--timeout", args->timeout_ms, "connect timeout in milliseconds")
      ->check(CLI::Range(1, 3600000));
  connect_cmd->add_flag("-r,--recv-only", args->recv_only,
                        "only receive: never read stdin, half-close at once (also the default "
                        "for a background job whose stdin is the terminal)");
  connect_cmd->callback([args, &options] {
    const endpoint target{resolve_vm(args->target, options),
                          resolve_service(args->service, options)};
    auto s = must(stream::connect(target, {.timeout = std::chrono::milliseconds(args->timeout_ms),
                                           .control_socket = control_socket(options)}));
    const int code = copy_both_ways(s, reads_stdin(args->recv_only));
    if (code != 0) fail("", code);
  });
}

}  // namespace hvsock::cli
