// socket_table: which fds of this process are emulated vsock / AF_HYPERV
// sockets (or the /dev/vsock placeholder), and their state. Fds made by dup
// share one state, as they share one open file. Every other fd is not here,
// and the shim passes it straight to the C library.
//
// Thread safety: all members are safe to call from any thread; the lock is
// held only for the map itself. After fork() the child's table is a copy
// (the lock is taken around fork, so the copy is consistent).
//
// Fork safety: a forked child of a threaded program has only the thread
// that forked; a lock another thread held at that moment stays held. So the
// table and the sockets' state live in memory of their own (not malloc's,
// whose locks the shim cannot take around fork: ASan's allocator does not
// guard against that itself), and in the child a socket's lock still held
// is made anew.
#pragma once

#include <sys/time.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <unordered_map>

#include <hvsock/endpoint.hpp>

namespace hvsock::preload {

// connecting: a non-blocking connect hvsockd has not answered yet (or whose
// answer the shim has not read): emulated_socket::connect_control.
enum class socket_state { unbound, bound, listening, connecting, connected };

// How many sockets of this process are `connecting`: while any is, the
// shim's poll/select/epoll wrappers read hvsockd's answers first.
inline std::atomic<int> pending_connect_count{0};

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

  std::mutex lock;         // one operation at a time per socket (connect vs. bind, ...)
  int family = 0;          // AF_VSOCK or af_hyperv; 0 for the /dev/vsock placeholder
  int type = SOCK_STREAM;  // or SOCK_SEQPACKET (AF_VSOCK only): the AF_UNIX fd's type too
  socket_state state = socket_state::unbound;
  // As the application sees it: sockaddr_vm fields for AF_VSOCK, endpoints
  // for AF_HYPERV (both kept, each family reports its own).
  vsock_address local_vsock, peer_vsock;
  endpoint local{}, peer{};
  int reservation = -1;  // bound, not yet listening: the control connection holding the address
  std::uint32_t backlog = 0;  // listening: as sent to hvsockd, to listen again after a restart
  std::uint64_t listen_generation = 0;  // listening: bumped each time it listens again
  // While hvsockd is away: the next pause before trying again, and whether
  // that was said on stderr.
  std::uint32_t relisten_delay_ms = 0;
  bool relisten_said = false;
  bool shut_down = false;   // shutdown() was called (getpeername then says ENOTCONN)
  bool write_shut = false;  // shutdown(SHUT_WR or SHUT_RDWR) was called
  int pending_error = 0;    // a non-blocking connect's refusal, for SO_ERROR
  // connecting: the control connection hvsockd answers on, the fd the
  // connect was made on, the address asked for, and whether a connect
  // meanwhile already said EALREADY. connect_pending mirrors the state for
  // readers without the lock.
  int connect_control = -1;
  int connect_fd = -1;
  vsock_address connect_peer;
  bool connect_repeated = false;
  std::atomic<bool> connect_pending{false};
  // A connected SOCK_SEQPACKET socket: its data calls take the shim's path
  // (data_calls in emulation.hpp). Read without the lock by those calls.
  std::atomic<bool> message_data{false};
  timeval connect_timeout{2, 0};  // vsock's default
  std::uint64_t buffer_size = 262144, buffer_min = 128, buffer_max = 262144;
};

// Pages from mmap, pooled; one lock, which fork handlers can take.
class fork_safe_memory final : public std::pmr::memory_resource {
 public:
  void lock() { lock_.lock(); }
  void unlock() { lock_.unlock(); }

 private:
  struct pages final : std::pmr::memory_resource {
    void* do_allocate(std::size_t bytes, std::size_t alignment) override;
    void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override;
    bool do_is_equal(const memory_resource& other) const noexcept override {
      return this == &other;
    }
  };
  void* do_allocate(std::size_t bytes, std::size_t alignment) override;
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override;
  bool do_is_equal(const memory_resource& other) const noexcept override { return this == &other; }

  std::mutex lock_;
  pages pages_;
  std::pmr::unsynchronized_pool_resource pool_{&pages_};
};

class socket_table {
 public:
  // Made when the shim loads (prepare_shim), before the program has threads.
  static socket_table& instance();

  // A new socket's state (not in the table yet).
  std::shared_ptr<emulated_socket> make_socket();

  std::shared_ptr<emulated_socket> find(int fd);
  void set(int fd, std::shared_ptr<emulated_socket> s);
  // Up to `room` sockets with a connect pending (connect_pending).
  std::size_t pending_connects(std::shared_ptr<emulated_socket>* out, std::size_t room);

  // Forgets fd (its state goes with the last fd using it).
  void erase(int fd);
  // Makes `to` share `from`'s state (dup); forgets `to`'s old state.
  void copy(int from, int to);

  // Whether fd may be an emulated SOCK_SEQPACKET socket: lock-free, for the
  // data calls (write, send, recvmsg, ...) every fd of the process makes.
  // False for every other fd; when true, find() tells the rest.
  bool maybe_seqpacket(int fd) const noexcept {
    if (fd < 0) return false;
    if (fd >= marked_fds) return high_seqpacket_.load(std::memory_order_relaxed);
    const auto bit = std::uint64_t{1} << (fd % 64);
    return (seqpacket_[fd / 64].load(std::memory_order_relaxed) & bit) != 0;
  }

  void lock_for_fork();
  void unlock_in_parent();
  void unlock_in_child();

 private:
  void mark(int fd, const emulated_socket* s);  // with lock_ held

  static constexpr int marked_fds = 1 << 16;
  std::array<std::atomic<std::uint64_t>, marked_fds / 64> seqpacket_{};
  std::atomic<bool> high_seqpacket_{false};  // a seqpacket fd was at marked_fds or above
  std::mutex lock_;                          // before memory_'s, when both are taken
  fork_safe_memory memory_;
  std::pmr::unordered_map<int, std::shared_ptr<emulated_socket>> sockets_{&memory_};
};

}  // namespace hvsock::preload
