// hvsock listen / hvsock connect: a netcat for hvsock. Both copy stdin to the
// socket and the socket to stdout, half-close the socket when stdin ends, and
// exit 0 once both directions are done. With --seqpacket the connection keeps
// message boundaries: each line of stdin is one message (without its
// newline), and each message received is printed as one line. With -r/--recv-only (as ncat's) they
// never read stdin and half-close at once; so does a command started in the
// background of an interactive shell whose stdin is the terminal, which
// would otherwise be stopped by the terminal (SIGTTIN) and never half-close.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <deque>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <hvsock/message_socket.hpp>

#include "cli_common.hpp"
#include "sys/file_io.hpp"

namespace hvsock::cli {
namespace {

// The socket for poll, or -1 when nothing is wanted from it: poll reports
// POLLHUP whatever the events asked, and a closed peer would spin the loop.
int socket_fd_if(int sock, short wanted) { return wanted != 0 ? sock : -1; }

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
    const auto wanted = static_cast<short>((socket_open ? POLLIN : 0) | (pending ? POLLOUT : 0));
    pollfd fds[2] = {{stdin_open && !pending ? STDIN_FILENO : -1, POLLIN, 0},
                     {socket_fd_if(sock, wanted), wanted, 0}};
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

// The copy loop for messages: stdin lines out, messages in. Lines wait in
// `out` while the peer's queue is full; stdin is not read meanwhile.
int copy_messages(message_socket& s, bool read_stdin) {
  must(s.set_non_blocking(true));
  const std::size_t limit = must(s.max_message_size());
  std::vector<std::byte> in_buffer(std::max<std::size_t>(limit, 65536));
  std::array<char, 65536> read_buffer;
  std::string partial;  // stdin after its last newline
  std::deque<std::string> out;
  bool stdin_open = read_stdin;
  bool socket_open = true;
  bool write_shut = false;
  const int sock = s.native_handle();
  // A line longer than a message can be is refused as soon as it is seen
  // (before its end, if it has one): stdin is read no further, the lines
  // before it are sent, then hvsock fails saying so.
  std::size_t lines = 0;  // lines of stdin taken so far
  std::optional<std::string> too_long;
  auto take_line = [&](std::string line) {
    ++lines;
    if (line.size() <= limit) return out.push_back(std::move(line));
    too_long = "line " + std::to_string(lines) + " of stdin is longer than " +
               std::to_string(limit) +
               " bytes, the largest message this socket carries (with --seqpacket, a line is "
               "one message); it was not sent, nor anything after it";
    stdin_open = false;
  };
  for (;;) {
    if (too_long && out.empty()) fail(*too_long);
    if (!stdin_open && out.empty() && !write_shut) {
      (void)s.shutdown(shutdown_how::write);  // the peer sees the end
      write_shut = true;
    }
    if (!stdin_open && out.empty() && !socket_open) return 0;
    const auto wanted =
        static_cast<short>((socket_open ? POLLIN : 0) | (out.empty() ? 0 : POLLOUT));
    pollfd fds[2] = {{stdin_open && out.empty() ? STDIN_FILENO : -1, POLLIN, 0},
                     {socket_fd_if(sock, wanted), wanted, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      fail(std::string("poll: ") + std::strerror(errno));
    }
    if (fds[0].revents != 0) {
      const ssize_t n = ::read(STDIN_FILENO, read_buffer.data(), read_buffer.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        stdin_open = false;
        if (!partial.empty()) take_line(std::exchange(partial, {}));
      } else {
        partial.append(read_buffer.data(), static_cast<std::size_t>(n));
        for (std::size_t eol; !too_long && (eol = partial.find('\n')) != std::string::npos;) {
          take_line(partial.substr(0, eol));
          partial.erase(0, eol + 1);
        }
        // Too long already, before its end: no need to wait for the rest.
        if (!too_long && partial.size() > limit) take_line(std::exchange(partial, {}));
      }
    }
    while (!out.empty()) {
      auto sent = s.send(out.front());
      if (!sent && sent.error().code() == errc::would_block) break;
      if (!sent) fail(sent.error());
      out.pop_front();
    }
    if (socket_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      auto got = s.receive(in_buffer);
      if (!got) {
        if (got.error().code() != errc::would_block) fail(got.error());
      } else if (got->end_of_stream) {
        socket_open = false;
      } else {
        if (got->truncated())
          std::cerr << "hvsock: a message of " << got->length << " bytes was cut to " << got->size
                    << std::endl;
        std::string line(reinterpret_cast<const char*>(in_buffer.data()), got->size);
        line += '\n';
        must(detail::write_fully(STDOUT_FILENO, line, "stdout"));
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
  bool seqpacket = false;
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
  listen_cmd->add_flag("--seqpacket", args->seqpacket,
                       "keep message boundaries (SOCK_SEQPACKET): a line of stdin is one "
                       "message, a message received is printed as one line");
  listen_cmd->callback([args, &options] {
    const endpoint local{resolve_vm(args->from, options), resolve_service(args->service, options)};
    const listen_options how{.backlog = args->backlog, .control_socket = control_socket(options)};
    if (args->seqpacket) {
      auto l = must(message_listener::listen(local, how));
      std::cerr << "listening on " << l.local_endpoint().to_string() << " (seqpacket)" << std::endl;
      auto s = must(l.accept());
      l.close();
      std::cerr << "connection from " << s.peer_endpoint().to_string() << std::endl;
      const int code = copy_messages(s, reads_stdin(args->recv_only));
      if (code != 0) fail("", code);
      return;
    }
    auto l = must(listener::listen(local, how));
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
  connect_cmd->add_flag("--seqpacket", args->seqpacket,
                        "keep message boundaries (SOCK_SEQPACKET): a line of stdin is one "
                        "message, a message received is printed as one line");
  connect_cmd->callback([args, &options] {
    const endpoint target{resolve_vm(args->target, options),
                          resolve_service(args->service, options)};
    const connect_options how{.timeout = std::chrono::milliseconds(args->timeout_ms),
                              .control_socket = control_socket(options)};
    if (args->seqpacket) {
      auto s = must(message_socket::connect(target, how));
      const int code = copy_messages(s, reads_stdin(args->recv_only));
      if (code != 0) fail("", code);
      return;
    }
    auto s = must(stream::connect(target, how));
    const int code = copy_both_ways(s, reads_stdin(args->recv_only));
    if (code != 0) fail("", code);
  });
}

}  // namespace hvsock::cli
