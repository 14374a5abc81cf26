// management_server: the management socket (<runtime>/hvsockd.sock) the CLI
// uses to manage the registry and the partitions and read the counters.
// Newline-delimited JSON over AF_UNIX SOCK_STREAM, one response line per
// request line, in order; docs/management-protocol.md is the reference.
//
// Every change is saved (state_store) before the OK goes out; a change that
// cannot be saved is rolled back in memory and reported as an error, so the
// daemon never reports something it would forget on restart.
//
// Clients are never waited on: sockets are non-blocking, a request line is
// at most max_line bytes (longer: the client is logged and closed), requests
// are not read while a client has more than output_pause bytes of unread
// responses, and a client with more than max_output unsent bytes is
// dropped.
//
// Thread safety: none; runs on the event loop's thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include <hvsock/result.hpp>
#include <hvsock/unique_fd.hpp>

#include "daemon/control_server.hpp"
#include "daemon/event_loop.hpp"
#include "daemon/partition_tree.hpp"
#include "daemon/service_counters.hpp"
#include "daemon/service_registry.hpp"
#include "daemon/socket_listener.hpp"
#include "daemon/state_store.hpp"

namespace hvsock::daemon {

class management_server {
 public:
  static constexpr std::size_t max_line = 64 * 1024;
  static constexpr std::size_t output_pause = 256 * 1024;
  static constexpr std::size_t max_output = 64 * 1024 * 1024;

  // What the server manages; all references must outlive it.
  struct context {
    partition_tree& partitions;
    service_registry& services;
    const state_store& store;
    service_counters& counters;
    control_server& control;
    std::string state_dir;
    std::string runtime_dir;
    std::string version;
    // For the uptime in "stats" (the daemon builds the context as it starts).
    event_loop::clock::time_point started = event_loop::clock::now();
  };

  management_server(event_loop& loop, client_budget& budget, context ctx, log_function log);
  management_server(const management_server&) = delete;
  management_server& operator=(const management_server&) = delete;
  ~management_server();

  // Creates the socket file and starts serving it.
  result<void> open(const std::string& path, const socket_file_options& options);
  // Closes every client and the socket, and removes the socket file.
  void close();

  // One request line in, one response line out (no newline). Public so the
  // protocol can be tested without a socket.
  std::string handle_line(std::string_view line);

  // The "stats" result (counters, partitions, switch-wide figures); also
  // what the metrics endpoint renders.
  nlohmann::ordered_json stats_report();

 private:
  // Ordered, so responses read in a natural order ("ok" first).
  using json = nlohmann::ordered_json;

  struct client {
    unique_fd fd;
    event_loop::watch_id watch = 0;
    std::string in;
    std::string out;
    bool eof = false;          // the client shut down its sending side
    std::uint32_t events = 0;  // what the loop watches for now
  };

  result<json> dispatch(const json& request);
  result<json> status() const;
  result<json> service_register(const json& request);
  result<json> service_list() const;
  result<json> service_set_enabled(const json& request, bool enabled);
  result<json> service_remove(const json& request);
  // Registers a list of services at once, or none of them.
  result<json> service_import(const json& request);
  result<json> vm_create(const json& request);
  result<json> vm_list() const;
  result<json> vm_remove(const json& request);
  result<json> vm_set(const json& request);
  json describe(const service_entry& s) const;
  json describe(const partition& p) const;
  // Saves the state; on failure restores the snapshot taken before the change.
  result<void> commit(const partition_tree& old_partitions, const service_registry& old_services);

  // Takes a client from the socket_listener.
  result<void> add_client(unique_fd fd);
  void on_client(std::uint64_t id, std::uint32_t events);
  // Handles the complete lines in the client's input, as output room allows.
  // False when the client was closed.
  bool process_input(std::uint64_t id);
  bool flush(std::uint64_t id);
  void update_interest(std::uint64_t id);
  void close_client(std::uint64_t id, const std::string& why = {});

  event_loop& loop_;
  const client_budget& budget_;  // read for "status"; gate_ admits and releases
  client_gate gate_;
  context ctx_;
  log_function log_;
  std::unique_ptr<socket_listener> listener_;
  std::unordered_map<std::uint64_t, client> clients_;
  std::uint64_t next_client_id_ = 1;
};

}  // namespace hvsock::daemon
