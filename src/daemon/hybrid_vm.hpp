// hybrid_vm: a Firecracker or Cloud Hypervisor VM as a partition, reached
// through its VMM's hybrid vsock socket (docs/hybrid-vsock.md).
//
// Host side to guest: connect() connects a socket to the VMM's socket,
// writes "CONNECT <port>\n" and waits for "OK <host port>\n" (a close, a
// malformed answer or none within the timeout is a refusal); the socket is
// then the stream, and hvsockd keeps no fd of it. Guest to host: the VMM
// connects to "<socket>_<P>" for the guest's connects to host port P; this
// class listens there for exactly the ports set_ports() names (the
// registered, enabled services) and hands each accepted connection on.
//
// Thread safety: none; runs on the event loop's thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include <hvsock/result.hpp>
#include <hvsock/unique_fd.hpp>

#include "daemon/event_loop.hpp"
#include "daemon/line_handshakes.hpp"
#include "daemon/socket_listener.hpp"

namespace hvsock::daemon {

class hybrid_vm {
 public:
  // The handshake's end: the host port from OK and the connected socket,
  // or why not (the socket is then closed).
  using answer = std::function<void(result<std::uint32_t> host_port, unique_fd stream)>;
  // The guest connected to host port `port`: the owner routes `stream` or
  // closes it (the refusal the guest sees).
  using guest_connect = std::function<void(std::uint32_t port, unique_fd stream)>;

  // `loop` and `gate` must outlive it.
  hybrid_vm(event_loop& loop, client_gate& gate, std::string name, std::string vmm_socket,
            socket_file_options sockets, guest_connect on_guest_connect, log_function log,
            std::chrono::milliseconds handshake_timeout = std::chrono::seconds(5));
  hybrid_vm(const hybrid_vm&) = delete;
  hybrid_vm& operator=(const hybrid_vm&) = delete;
  // Drops the handshakes under way (their answers are not called) and
  // removes the "<socket>_<P>" files.
  ~hybrid_vm();

  const std::string& vmm_socket() const { return vmm_socket_; }
  // Whether a Unix socket file is at vmm_socket (the VM is probably up).
  bool vmm_socket_present() const;

  // Connects `stream` (an unconnected AF_UNIX stream socket; a new one when
  // empty) to guest port `guest_port`. `done` is called exactly once,
  // possibly before this returns.
  void connect(std::uint32_t guest_port, unique_fd stream, answer done);

  // Listens on "<socket>_<P>" for each P in `ports` and on no other; a port
  // that cannot be listened on is logged and left out.
  void set_ports(const std::set<std::uint32_t>& ports);
  std::set<std::uint32_t> ports() const;

 private:
  // The VMM's line in answer to CONNECT guest_port, as `done` wants it.
  result<std::uint32_t> host_port_of(std::uint32_t guest_port, result<std::string> line) const;
  std::string port_socket(std::uint32_t port) const;
  // Whether another program listens at the socket file `path`: from
  // /proc/net/unix when it shows a listener there, else with a connect
  // (non-blocking), which a stale socket refuses.
  static bool another_listener_at(const std::string& path);

  event_loop& loop_;
  client_gate& gate_;
  std::string name_;
  std::string vmm_socket_;
  socket_file_options sockets_;
  guest_connect on_guest_connect_;
  log_function log_;
  std::chrono::milliseconds handshake_timeout_;
  line_handshakes handshakes_;
  std::map<std::uint32_t, std::unique_ptr<socket_listener>> listeners_;
  // Ports where another program listens, by the inode of its socket file:
  // logged once per file.
  std::map<std::uint32_t, ino_t> foreign_ports_;
};

}  // namespace hvsock::daemon
