// service_counters: per-service performance counters (the figures Hyper-V
// shows under a service's ElementName): connections accepted, refused by
// reason, and active.
//
// The daemon keeps no fd of a brokered stream, so "active" cannot be
// tracked by watching the stream. Instead the counters remember the socket
// inode numbers of both ends of each brokered socketpair and, when asked
// (and every prune_interval new connections, to bound memory), drop the
// pairs of which neither inode still appears in /proc/net/unix. "Active"
// therefore means: at least one end is still open somewhere.
//
// Thread safety: none; used from the daemon's loop thread.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <system_error>
#include <unordered_map>
#include <unordered_set>

#include <hvsock/result.hpp>
#include <hvsock/service_id.hpp>
#include <hvsock/socket_type.hpp>

namespace hvsock::daemon {

// type_mismatch: the listener takes the other socket type (a seqpacket
// connect to a stream listener, or the reverse), or the target carries only
// streams (a hybrid vsock VM). Its error code is connection_refused, as for
// no_listener: the caller names it (control_server::count_refusal).
enum class refusal_reason {
  disabled,
  no_listener,
  backlog_full,
  unreachable,
  type_mismatch,
  other
};

// The counter a refused connection goes to, from the refusal's error code.
// (service_not_registered is not here: those go to the aggregate count.)
refusal_reason refusal_reason_for(const std::error_code& code);

struct service_stats {
  std::uint64_t accepted = 0;
  std::uint64_t accepted_seqpacket = 0;  // of `accepted`, those keeping message boundaries
  std::uint64_t active = 0;
  std::uint64_t refused_disabled = 0;
  std::uint64_t refused_no_listener = 0;
  std::uint64_t refused_backlog_full = 0;
  std::uint64_t refused_unreachable = 0;
  std::uint64_t refused_type_mismatch = 0;
  std::uint64_t refused_other = 0;
};

class service_counters {
 public:
  static constexpr std::size_t prune_interval = 4096;
  // A hard cap on remembered pairs, should /proc/net/unix be unreadable
  // (the oldest are forgotten first).
  static constexpr std::size_t max_tracked = 1 << 20;

  explicit service_counters(std::string proc_net_unix = "/proc/net/unix");

  // A brokered connection for `service` whose socketpair ends have inodes a, b.
  void record_accepted(const service_id& service, ino_t a, ino_t b,
                       socket_type type = socket_type::stream);
  void record_refused(const service_id& service, refusal_reason reason);
  // A refusal for a service that is not registered (one aggregate count, so
  // unregistered GUIDs cannot grow the table).
  void record_unregistered_refused() { ++unregistered_refused_; }
  // Drops the counters of a removed service.
  void forget(const service_id& service);

  // Re-reads /proc/net/unix and forgets the pairs that are gone.
  result<void> refresh_active();
  // The same with a given set of live inodes (for tests).
  void prune(const std::unordered_set<ino_t>& live);

  // The counters; `active` is as of the last refresh (or prune).
  service_stats stats(const service_id& service) const;
  std::uint64_t unregistered_refused() const { return unregistered_refused_; }
  std::size_t tracked() const { return tracked_.size(); }

  // The inode column of a /proc/net/unix style file.
  static result<std::unordered_set<ino_t>> read_unix_inodes(const std::string& path);

 private:
  struct tracked_pair {
    service_id service;
    ino_t a;
    ino_t b;
  };

  void untrack(const tracked_pair& t);

  std::string proc_net_unix_;
  std::unordered_map<service_id, service_stats> stats_;  // active = its pairs in tracked_
  std::deque<tracked_pair> tracked_;
  std::size_t since_prune_ = 0;
  std::uint64_t unregistered_refused_ = 0;
};

}  // namespace hvsock::daemon
