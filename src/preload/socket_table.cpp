#include "preload/socket_table.hpp"

#include <pthread.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <new>

#include "preload/real_calls.hpp"

namespace hvsock::preload {

void* fork_safe_memory::pages::do_allocate(std::size_t bytes, std::size_t alignment) {
  (void)alignment;  // pages are aligned beyond anything the pool asks for
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  return p;
}

void fork_safe_memory::pages::do_deallocate(void* p, std::size_t bytes, std::size_t) {
  ::munmap(p, bytes);
}

void* fork_safe_memory::do_allocate(std::size_t bytes, std::size_t alignment) {
  std::lock_guard guard(lock_);
  return pool_.allocate(bytes, alignment);
}

void fork_safe_memory::do_deallocate(void* p, std::size_t bytes, std::size_t alignment) {
  std::lock_guard guard(lock_);
  pool_.deallocate(p, bytes, alignment);
}

emulated_socket::~emulated_socket() {
  if (reservation >= 0) real::close(reservation);
  if (connect_control >= 0) {
    real::close(connect_control);
    pending_connect_count.fetch_sub(1, std::memory_order_relaxed);
  }
}

std::size_t socket_table::pending_connects(std::shared_ptr<emulated_socket>* out,
                                           std::size_t room) {
  std::lock_guard guard(lock_);
  std::size_t n = 0;
  for (auto& entry : sockets_) {
    if (n == room) break;
    if (!entry.second->connect_pending.load(std::memory_order_acquire)) continue;
    bool seen = false;  // dups share one state
    for (std::size_t i = 0; i < n && !seen; ++i) seen = out[i] == entry.second;
    if (!seen) out[n++] = entry.second;
  }
  return n;
}

socket_table& socket_table::instance() {
  // Never destroyed: other libraries' destructors may still close sockets.
  static socket_table* const table = [] {
    auto* t = new socket_table;
    ::pthread_atfork([] { instance().lock_for_fork(); }, [] { instance().unlock_in_parent(); },
                     [] { instance().unlock_in_child(); });
    return t;
  }();
  return *table;
}

std::shared_ptr<emulated_socket> socket_table::make_socket() {
  return std::allocate_shared<emulated_socket>(
      std::pmr::polymorphic_allocator<emulated_socket>(&memory_));
}

void socket_table::lock_for_fork() {
  lock_.lock();
  memory_.lock();
}

void socket_table::unlock_in_parent() {
  memory_.unlock();
  lock_.unlock();
}

void socket_table::unlock_in_child() {
  // Only the thread that forked lives on, and it is in fork(), not in a
  // call on a socket: a socket lock held now was held by a thread the child
  // does not have, and would stop the child's next call on that socket
  // forever. What that call had changed so far stays (the parent may go on
  // changing the shared socket itself anyway).
  for (auto& entry : sockets_) {
    std::mutex& held = entry.second->lock;
    if (held.try_lock())
      held.unlock();
    else
      new (&held) std::mutex;
  }
  memory_.unlock();
  lock_.unlock();
}

std::shared_ptr<emulated_socket> socket_table::find(int fd) {
  std::lock_guard guard(lock_);
  auto it = sockets_.find(fd);
  return it == sockets_.end() ? nullptr : it->second;
}

void socket_table::mark(int fd, const emulated_socket* s) {
  const bool seqpacket = s != nullptr && s->family == AF_VSOCK && s->type == SOCK_SEQPACKET;
  if (fd < 0) return;
  if (fd >= marked_fds) {
    if (seqpacket) high_seqpacket_.store(true, std::memory_order_relaxed);
    return;
  }
  const auto bit = std::uint64_t{1} << (fd % 64);
  if (seqpacket)
    seqpacket_[fd / 64].fetch_or(bit, std::memory_order_relaxed);
  else
    seqpacket_[fd / 64].fetch_and(~bit, std::memory_order_relaxed);
}

void socket_table::set(int fd, std::shared_ptr<emulated_socket> s) {
  std::lock_guard guard(lock_);
  mark(fd, s.get());
  sockets_[fd] = std::move(s);
}

void socket_table::erase(int fd) {
  std::shared_ptr<emulated_socket> gone;  // released after the lock
  std::lock_guard guard(lock_);
  auto it = sockets_.find(fd);
  if (it == sockets_.end()) return;
  mark(fd, nullptr);
  gone = std::move(it->second);
  sockets_.erase(it);
}

void socket_table::copy(int from, int to) {
  std::lock_guard guard(lock_);
  auto it = sockets_.find(from);
  if (it == sockets_.end()) {
    sockets_.erase(to);
    mark(to, nullptr);
    return;
  }
  mark(to, it->second.get());
  sockets_[to] = it->second;
}

}  // namespace hvsock::preload
