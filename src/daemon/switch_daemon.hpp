// switch_daemon: hvsockd assembled. start() prepares everything that can
// fail (directories, the state lock, the state file, the sockets) so that a
// daemon that starts is one that serves; run() serves until SIGINT/SIGTERM;
// destruction removes the socket files.
//
// Start-up, in order: create the state and runtime directories (and
// <runtime>/partitions); take an exclusive flock on <state-dir>/lock (a
// second daemon on the same state is refused); refuse to start if a daemon
// answers on the management socket; remove stale socket files; load the
// state (a corrupt file is an error and is left untouched; no file means a
// fresh host partition, saved at once so its VmId is stable); raise the
// soft RLIMIT_NOFILE to the hard limit; open every partition's control
// socket (and QEMU partitions' vhost-user sockets) and the management
// socket, then, if asked, the metrics listener (logging "metrics on
// http://ADDR:PORT/metrics"); start re-plugging the vsock devices of QEMU
// guests that have a QMP socket (qemu_replug.hpp; it goes on once run()
// runs the loop).
//
// Thread safety: none; create, run and destroy on one thread, the process's
// only one (signals are taken through a signalfd).
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include <hvsock/result.hpp>
#include <hvsock/unique_fd.hpp>

#include "daemon/control_server.hpp"
#include "daemon/event_loop.hpp"
#include "daemon/management_server.hpp"
#include "daemon/metrics_http_server.hpp"
#include "daemon/partition_tree.hpp"
#include "daemon/router.hpp"
#include "daemon/service_counters.hpp"
#include "daemon/service_registry.hpp"
#include "daemon/state_store.hpp"

namespace hvsock::daemon {

struct daemon_limits {
  std::size_t max_clients = 4096;  // control + management connections open at once
  // Control connections open at once through one partition's socket.
  std::size_t max_clients_per_partition = 1024;
  std::size_t max_partitions = partition_tree::default_max_partitions;
  std::size_t max_services = service_registry::default_max_services;
};

struct daemon_options {
  std::string state_dir;
  std::string runtime_dir;
  socket_file_options sockets;  // mode and owner of every socket file
  daemon_limits limits;
  bool log_connections = false;  // a log line per brokered connection
  // Where to serve GET /metrics over HTTP (--metrics-listen); none: nowhere.
  std::optional<tcp_listen_address> metrics_listen;
  log_function log;  // required: where the daemon's lines go
};

class switch_daemon {
 public:
  static result<std::unique_ptr<switch_daemon>> start(daemon_options options);
  switch_daemon(const switch_daemon&) = delete;
  switch_daemon& operator=(const switch_daemon&) = delete;
  ~switch_daemon();

  // Serves until SIGINT or SIGTERM (then returns the signal number) or until
  // the event loop fails.
  result<int> run();

  std::size_t partition_count() const { return partitions_->size(); }
  std::size_t service_count() const { return services_->size(); }
  // Control and management connections open now.
  std::size_t client_count() const { return budget_.used(); }
  // For periodic work of the process around the switch (systemd's
  // watchdog): timers run on the switch's own thread, between events.
  event_loop& loop() { return *loop_; }

 private:
  switch_daemon(daemon_options options, unique_fd lock, std::unique_ptr<event_loop> loop,
                switch_state state);
  result<void> open_sockets();

  daemon_options options_;
  unique_fd lock_;
  std::unique_ptr<event_loop> loop_;
  client_budget budget_;
  std::unique_ptr<partition_tree> partitions_;
  std::unique_ptr<service_registry> services_;
  state_store store_;
  router router_;
  service_counters counters_;
  // Servers last: they refer to everything above and are destroyed first.
  std::unique_ptr<control_server> control_;
  std::unique_ptr<management_server> management_;
  std::unique_ptr<metrics_http_server> metrics_;  // renders management_'s stats
};

}  // namespace hvsock::daemon
