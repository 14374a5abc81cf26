// qmp_client: one conversation with a QEMU over its QMP socket (QEMU's JSON
// management protocol), on hvsockd's event loop. Nothing here blocks: the
// connect is non-blocking, replies and events arrive through callbacks, and
// every command has a deadline.
//
// The conversation: QEMU greets ({"QMP": ...}); the client answers with
// qmp_capabilities; once QEMU accepts it, `ready` is called and execute()
// may send commands. Each command carries an "id" and its handler gets the
// "return" value or QEMU's error ({"error": {"class", "desc"}}) as an
// errc::protocol_error failure naming the command; a command error leaves
// the connection usable. Events ({"event": ...}) go to `on_event`.
//
// Anything that ends the conversation (nobody listening on the socket, the
// connection closed, a line that is not a JSON object, a reply to no command,
// a line longer than max_line, a deadline missed) calls `on_failure` once
// with a one-line reason; afterwards the client does nothing more. When
// nobody listens on the socket (no file, or refused: QEMU is not running)
// the failure's code is errc::daemon_unavailable.
//
// Callbacks may destroy the client.
//
// Thread safety: none; runs on the event loop's thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include <hvsock/result.hpp>
#include <hvsock/unique_fd.hpp>

#include "daemon/event_loop.hpp"

namespace hvsock::daemon {

class qmp_client {
 public:
  using json = nlohmann::json;
  using reply_handler = std::function<void(result<json> reply)>;

  struct options {
    // For the greeting, and for each command's reply.
    std::chrono::milliseconds reply_timeout{5000};
    std::size_t max_line = 4 * 1024 * 1024;
  };

  struct callbacks {
    std::function<void()> ready;
    std::function<void(const json& event)> on_event;
    std::function<void(const failure& why)> on_failure;
  };

  // Starts connecting to the QMP socket at `path`. Fails at once only when
  // no socket can be created or the path is not a socket address; other
  // connect errors arrive through on_failure, on a later turn of the loop.
  static result<std::unique_ptr<qmp_client>> connect(event_loop& loop, std::string path,
                                                     callbacks handlers, options opts);
  static result<std::unique_ptr<qmp_client>> connect(event_loop& loop, std::string path,
                                                     callbacks handlers) {
    return connect(loop, std::move(path), std::move(handlers), options{});
  }
  qmp_client(const qmp_client&) = delete;
  qmp_client& operator=(const qmp_client&) = delete;
  ~qmp_client();

  // Sends {"execute": command, "arguments": arguments (unless null), "id"}.
  // Only after `ready`.
  void execute(const std::string& command, json arguments, reply_handler done);

  const std::string& path() const { return path_; }

 private:
  struct pending_command {
    std::string command;
    reply_handler done;
    event_loop::timer_id deadline = 0;
  };

  qmp_client(event_loop& loop, std::string path, callbacks handlers, options opts);

  void on_socket(std::uint32_t events);
  // False once the conversation has failed or the client was destroyed.
  bool read_available();
  bool handle_line(std::string_view line);
  void send(const json& message);
  bool flush();
  void update_interest();
  void fail(failure why);
  result<event_loop::timer_id> arm_deadline(std::string what);

  event_loop& loop_;
  std::string path_;
  callbacks handlers_;
  options options_;
  unique_fd fd_;
  event_loop::watch_id watch_ = 0;
  std::uint32_t events_ = 0;
  std::string in_;
  std::string out_;
  bool greeted_ = false;
  bool failed_ = false;
  event_loop::timer_id greeting_deadline_ = 0;
  event_loop::timer_id connect_failure_timer_ = 0;
  std::uint64_t next_id_ = 1;
  std::map<std::uint64_t, pending_command> pending_;
  // Shared with callers' stack frames: false once the client is destroyed,
  // so code running after a callback knows not to touch it.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace hvsock::daemon
