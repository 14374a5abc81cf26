// line_handshakes: sockets each waiting for one '\n'-terminated line, with a
// deadline: the two halves of hybrid vsock's handshake (the CONNECT a host
// program writes to hvsockd, the OK a VMM writes back). The line is read
// with peek (detail::read_hybrid_line), so bytes after it stay in the
// socket as the stream's first bytes.
//
// Each socket's outcome is reported once, through its callback: the line
// (without '\n'), or why there is none (read_hybrid_line's failure for EOF,
// an error or a line over hybrid_max_line bytes; timed_out at the
// deadline). The socket goes back with it, unwatched.
//
// Thread safety: none; runs on the event loop's thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>

#include <hvsock/result.hpp>
#include <hvsock/unique_fd.hpp>

#include "daemon/event_loop.hpp"

namespace hvsock::daemon {

class line_handshakes {
 public:
  using done_function = std::function<void(result<std::string> line, unique_fd socket)>;

  explicit line_handshakes(event_loop& loop) : loop_(loop) {}
  line_handshakes(const line_handshakes&) = delete;
  line_handshakes& operator=(const line_handshakes&) = delete;
  // Closes the sockets still waiting; their callbacks are not called.
  ~line_handshakes() { clear(); }

  // Waits for `socket`'s line for at most `timeout`. The line may be there
  // already: then `done` runs before this returns. An error means `socket`
  // could not be watched (and `done` is not called).
  result<void> add(unique_fd socket, std::chrono::milliseconds timeout, done_function done);
  std::size_t size() const { return pending_.size(); }
  // As the destructor.
  void clear();

 private:
  struct pending {
    unique_fd fd;
    event_loop::watch_id watch = 0;
    event_loop::timer_id timer = 0;
    std::string line;  // read so far
    done_function done;
  };
  void on_readable(std::uint64_t id);
  void finish(std::uint64_t id, result<std::string> outcome);

  event_loop& loop_;
  std::unordered_map<std::uint64_t, pending> pending_;
  std::uint64_t next_id_ = 1;
};

}  // namespace hvsock::daemon
