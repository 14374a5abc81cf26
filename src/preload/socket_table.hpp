// socket_table: which fds of this process are emulated vsock / AF_HYPERV
// sockets (or the /dev/vsock placeholder), and their state. Fds made by dup
// share one state, as they share one open file. Every other fd is not here,
// and the shim passes it straight to the C library.
//
// Thread safety: all members are safe to call from any thread; the lock is
// held only for the map itself. After fork() the child's table is a copy
// (the lock is taken around fork, so the copy is consistent).
#pragma once

#include <sys/time.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>

#include <hvsock/endpoint.hpp>

namespace hvsock::preload {

enum class socket_state { unbound, bound, listening, connected };

// What a vsock-style getsockname/getpeername reports: a CID and a port.
struct vsock_address {
  std::uint32_t cid = VMADDR_CID_ANY;
  std::uint32_t port = VMADDR_PORT_ANY;
};

struct emulated_socket {
  emulated_socket() = default;
  emulated_socket(const emulated_socket&) = delete;
  emulated_socket& operator=(const emulated_socket&) = delete;
  ~emulated_socket();  // gives up a reservation still held

  std::mutex lock;  // one operation at a time per socket (connect vs. bind, ...)
  int family = 0;   // AF_VSOCK or af_hyperv; 0 for the /dev/vsock placeholder
  socket_state state = socket_state::unbound;
  // As the application sees it: sockaddr_vm fields for AF_VSOCK, endpoints
  // for AF_HYPERV (both kept, each family reports its own).
  vsock_address local_vsock, peer_vsock;
  endpoint local{}, peer{};
  int reservation = -1;    // bound, not yet listening: the control connection holding the address
  bool shut_down = false;  // shutdown() was called (getpeername then says ENOTCONN)
  int pending_error = 0;   // a non-blocking connect's refusal, for SO_ERROR
  timeval connect_timeout{2, 0};  // vsock's default
  std::uint64_t buffer_size = 262144, buffer_min = 128, buffer_max = 262144;
};

class socket_table {
 public:
  static socket_table& instance();

  std::shared_ptr<emulated_socket> find(int fd);
  void set(int fd, std::shared_ptr<emulated_socket> s);
  // Forgets fd (its state goes with the last fd using it).
  void erase(int fd);
  // Makes `to` share `from`'s state (dup); forgets `to`'s old state.
  void copy(int from, int to);

  void lock_for_fork() { lock_.lock(); }
  void unlock_after_fork() { lock_.unlock(); }

 private:
  std::mutex lock_;
  std::unordered_map<int, std::shared_ptr<emulated_socket>> sockets_;
};

}  // namespace hvsock::preload
