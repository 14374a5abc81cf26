// socket_listener: one listening AF_UNIX socket file served on the event
// loop, the accept half every hvsockd server shares (the partitions' control
// sockets, the management socket).
//
// The socket file is created with the caller's mode and owner
// (listen_unix), accepted from with accept4 (non-blocking, CLOEXEC;
// event_loop::accept), at most accepts_per_wakeup per wake-up so one busy
// socket cannot starve the rest of the loop. Every client is admitted
// against a client_gate: over its budget the connection is closed at once
// (the client reads EOF, the refusal) and the gate logs its limit line once
// per episode, not once per client. Gates chain: a partition's control
// socket has a gate of its own (its per-partition budget) whose parent is
// the control server's daemon-wide gate, which leaves a reserve of the
// shared budget to the management socket.
//
// Thread safety: none; runs on the event loop's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <hvsock/result.hpp>
#include <hvsock/unique_fd.hpp>

#include "daemon/event_loop.hpp"

namespace hvsock::daemon {

// Admission of clients against a budget, for one socket or for all the
// sockets of a server. `limit_line` is logged when a client is refused here,
// once per episode: from the first refusal until a client is admitted again.
// With a `parent`, a client must be admitted by both (this gate first, so a
// client refused here takes nothing from the parent); `keep_free` shares of
// the budget are left to other gates on it (a reserve).
class client_gate {
 public:
  // `budget` and `parent` must outlive the gate.
  client_gate(client_budget& budget, std::string limit_line, log_function log,
              client_gate* parent = nullptr, std::size_t keep_free = 0)
      : budget_(budget),
        limit_line_(std::move(limit_line)),
        log_(std::move(log)),
        parent_(parent),
        keep_free_(keep_free) {}
  client_gate(const client_gate&) = delete;
  client_gate& operator=(const client_gate&) = delete;

  // Takes one client's share of the budget (and of the parent's); false
  // (and the log line, once per episode) when either is spent.
  bool admit();
  // Gives back an admitted client's share when that client closes.
  void release() {
    budget_.release();
    if (parent_ != nullptr) parent_->release();
  }
  std::size_t used() const { return budget_.used(); }

 private:
  client_budget& budget_;
  std::string limit_line_;
  log_function log_;
  client_gate* parent_;
  std::size_t keep_free_;
  bool limit_logged_ = false;
};

class socket_listener {
 public:
  static constexpr int accepts_per_wakeup = 64;

  // Receives each admitted client. Returning an error turns the client
  // away: the listener logs "<name>: <error>", closes it and releases its
  // share of the gate. Otherwise the handler's owner calls gate.release()
  // when it closes the client. The handler may not destroy the listener.
  using accept_handler = std::function<result<void>(unique_fd client)>;

  // Creates the socket file at `path` (any stale file there is replaced)
  // and starts serving it. `name` starts the log lines about this socket.
  // `loop` and `gate` must outlive the listener.
  static result<std::unique_ptr<socket_listener>> open(event_loop& loop, client_gate& gate,
                                                       const std::string& path, int type,
                                                       const socket_file_options& options,
                                                       std::string name, log_function log,
                                                       accept_handler on_accept);
  socket_listener(const socket_listener&) = delete;
  socket_listener& operator=(const socket_listener&) = delete;
  // Stops serving, closes the socket and removes the socket file (the
  // clients already accepted are not affected).
  ~socket_listener();

  const std::string& path() const { return path_; }

 private:
  socket_listener(event_loop& loop, client_gate& gate, std::string path, unique_fd fd,
                  std::string name, log_function log, accept_handler on_accept);
  void on_readable();

  event_loop& loop_;
  client_gate& gate_;
  std::string path_;
  unique_fd fd_;
  std::string name_;
  log_function log_;
  accept_handler on_accept_;
  event_loop::watch_id watch_ = 0;
};

}  // namespace hvsock::daemon
