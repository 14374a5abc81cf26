#include "preload/socket_table.hpp"

#include <pthread.h>

#include "preload/real_calls.hpp"

namespace hvsock::preload {

emulated_socket::~emulated_socket() {
  if (reservation >= 0) real::close(reservation);
}

socket_table& socket_table::instance() {
  // Never destroyed: other libraries' destructors may still close sockets.
  static socket_table* const table = [] {
    auto* t = new socket_table;
    ::pthread_atfork([] { instance().lock_for_fork(); }, [] { instance().unlock_after_fork(); },
                     [] { instance().unlock_after_fork(); });
    return t;
  }();
  return *table;
}

std::shared_ptr<emulated_socket> socket_table::find(int fd) {
  std::lock_guard guard(lock_);
  auto it = sockets_.find(fd);
  return it == sockets_.end() ? nullptr : it->second;
}

void socket_table::set(int fd, std::shared_ptr<emulated_socket> s) {
  std::lock_guard guard(lock_);
  sockets_[fd] = std::move(s);
}

void socket_table::erase(int fd) {
  std::shared_ptr<emulated_socket> gone;  // released after the lock
  std::lock_guard guard(lock_);
  auto it = sockets_.find(fd);
  if (it == sockets_.end()) return;
  gone = std::move(it->second);
  sockets_.erase(it);
}

void socket_table::copy(int from, int to) {
  std::lock_guard guard(lock_);
  auto it = sockets_.find(from);
  if (it == sockets_.end()) {
    sockets_.erase(to);
    return;
  }
  sockets_[to] = it->second;
}

}  // namespace hvsock::preload
