// hybrid_vsock_listener: a QEMU guest's vsock as Firecracker shows a guest's
// to host programs ("hybrid vsock", docs/hybrid-vsock.md). A host process
// connects to the Unix socket, writes "CONNECT <port>\n" and, once the
// guest's port accepted, reads "OK <host port>\n"; the connection is then
// the stream. This class serves the socket and reads the line; its owner
// routes the connection and answers.
//
// Per connection: the line must come within handshake_timeout and be at
// most hybrid_max_line bytes; bytes after its '\n' are left in the socket
// (they are the stream's first bytes). A malformed, over-long or late line,
// or EOF before it, closes that connection (no answer, as Firecracker
// does); nothing else is affected. Connections count against the control
// server's client gate until their line is read.
//
// Thread safety: none; runs on the event loop's thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <hvsock/result.hpp>
#include <hvsock/unique_fd.hpp>

#include "daemon/event_loop.hpp"
#include "daemon/line_handshakes.hpp"
#include "daemon/socket_listener.hpp"

namespace hvsock::daemon {

struct hybrid_handshake_limits {
  std::chrono::milliseconds handshake_timeout = std::chrono::seconds(5);
};

class hybrid_vsock_listener {
 public:
  // A well-formed line asked for `port`: the owner takes `stream` and
  // either writes the OK line into it or closes it (the refusal).
  using connect_function = std::function<void(std::uint32_t port, unique_fd stream)>;
  // A connection closed before its line was read: why, for the log.
  using refusal_function = std::function<void(const std::string& why)>;

  using limits = hybrid_handshake_limits;

  // Creates the socket file at `path` (a stale one is replaced). `loop` and
  // `gate` must outlive the listener.
  static result<std::unique_ptr<hybrid_vsock_listener>> open(
      event_loop& loop, client_gate& gate, const std::string& path,
      const socket_file_options& sockets, std::string name, connect_function on_connect,
      refusal_function on_refused, log_function log, limits lim = {});
  hybrid_vsock_listener(const hybrid_vsock_listener&) = delete;
  hybrid_vsock_listener& operator=(const hybrid_vsock_listener&) = delete;
  // Closes the connections still in their handshake and removes the file.
  ~hybrid_vsock_listener();

  const std::string& path() const { return listener_->path(); }
  std::size_t handshakes() const { return pending_.size(); }

 private:
  hybrid_vsock_listener(event_loop& loop, client_gate& gate, connect_function on_connect,
                        refusal_function on_refused, limits lim);
  result<void> admit(unique_fd client);
  void on_line(result<std::string> line, unique_fd client);

  client_gate& gate_;
  connect_function on_connect_;
  refusal_function on_refused_;
  limits limits_;
  line_handshakes pending_;  // before listener_: its sockets count against the gate
  std::unique_ptr<socket_listener> listener_;
};

}  // namespace hvsock::daemon
