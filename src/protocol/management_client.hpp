// A client for hvsockd's management socket (newline-delimited JSON; see
// docs/management-protocol.md). Used by the CLI and the tests. One request at
// a time per client; not thread-safe.
#pragma once

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include <hvsock/result.hpp>
#include <hvsock/unique_fd.hpp>

namespace hvsock::detail {

class management_client {
 public:
  // Connects to <runtime_dir>/hvsockd.sock. errc::daemon_unavailable when no
  // daemon answers there.
  static result<management_client> open(
      const std::string& runtime_dir, std::chrono::milliseconds timeout = std::chrono::seconds(5));

  // Sends {"op": op, ...args} and returns the "result" member, or the
  // daemon's error (code and message) when "ok" is false.
  result<nlohmann::json> call(const std::string& op,
                              nlohmann::json args = nlohmann::json::object());

 private:
  management_client(unique_fd fd, std::chrono::milliseconds timeout)
      : fd_(std::move(fd)), timeout_(timeout) {}

  unique_fd fd_;
  std::chrono::milliseconds timeout_;
  std::string pending_;  // bytes read past the last line
};

}  // namespace hvsock::detail
