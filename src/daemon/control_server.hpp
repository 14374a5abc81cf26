// control_server: the partitions' control sockets, where libhvsock asks the
// switch to connect and to listen (protocol: src/protocol/control_wire.hpp).
//
// Each partition has one AF_UNIX SOCK_SEQPACKET socket file at
// <runtime>/partitions/<name>/control.sock; having connected through it is what
// makes a client a member of that partition, so the file's mode and owner
// decide who may act as which partition. Each control connection does one
// job:
//   connect: route (router.hpp); on success make an AF_UNIX stream
//            socketpair, send the listener `incoming` with one end, reply to
//            the connector with the other, close the daemon's copies and the
//            connector's control connection. The daemon keeps no fd of the
//            stream and never sees its data. A connect into a QEMU guest is
//            answered later: the guest's vsock device (qemu_guest) gets one
//            end and the reply waits for the guest kernel's RESPONSE or RST;
//            the daemon moves that stream's data to and from the guest.
//   lookup:  a service or partition name, answered and closed (names are
//            resolved as the client's partition sees them).
//   bind:    validate and record the listener; the connection is then the
//            listener, answering each `incoming` with `accepted`. Its closing
//            unbinds. Incoming sent minus accepted received = pending, and a
//            connect finding pending >= backlog is refused (backlog_full).
// A listener's `accepted` messages are normally read by the event loop;
// where a decision depends on them (a backlog that looks full, an address
// still held by a listener that may have closed), drain_acks reads that
// listener's queued acks and its close first. No handler ever re-enters the
// message loop.
// Limits: each partition's socket admits at most max_clients_per_partition
// clients at once, then the daemon-wide budget (less the reserve it leaves
// to the management socket); a client over either is closed at accept, so
// one partition's flood is refused at its own socket while the others and
// the management socket still get in. A client that has sent nothing
// first_message_timeout after it was accepted is closed (a listener, once
// bound, and a connect waiting for a guest are past their first message and
// stay). Refusal log lines are rate-limited per partition (log_limiter); the
// counters are not.
// A client that sends anything malformed (wrong size or header, unexpected
// type, an attached fd, a truncated message) is logged and closed; nothing
// else is affected. Sends never block: a listener whose socket buffer is
// full refuses the connection as backlog_full.
//
// The class is one client table with its dispatch (control_server.cpp);
// its jobs live one per file: control_connect.cpp (connect, brokering the
// stream), control_listen.cpp (bind, listen, backlog accounting),
// control_guest_bridge.cpp (connects into and out of QEMU guests),
// control_hybrid.cpp (QEMU guests' hybrid vsock sockets, and guests'
// connects to host Unix listeners beside them),
// control_lookup.cpp (name lookups). socket_listener accepts the clients.
//
// Thread safety: none; runs on the event loop's thread.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include <sys/types.h>

#include <hvsock/endpoint.hpp>
#include <hvsock/unique_fd.hpp>

#include "daemon/event_loop.hpp"
#include "daemon/hybrid_vm.hpp"
#include "daemon/hybrid_vsock_listener.hpp"
#include "daemon/log_limiter.hpp"
#include "daemon/partition_counters.hpp"
#include "daemon/partition_tree.hpp"
#include "daemon/qemu_guest.hpp"
#include "daemon/qemu_replug.hpp"
#include "daemon/router.hpp"
#include "daemon/service_counters.hpp"
#include "daemon/service_registry.hpp"
#include "daemon/socket_broker.hpp"
#include "daemon/socket_listener.hpp"
#include "protocol/control_wire.hpp"
#include "sys/fd_passing.hpp"

namespace hvsock::daemon {

class control_server {
 public:
  // Ports of connectors' ephemeral service ids: from here up, wrapping.
  static constexpr std::uint32_t first_ephemeral_port = 0x80000000;
  // The largest message a brokered seqpacket pair should carry whole
  // (hvsock::max_seqpacket_message_size). Reached with SO_SNDBUFFORCE (CAP_NET_ADMIN);
  // without it net.core.wmem_max caps it.
  static constexpr int seqpacket_message_size = static_cast<int>(max_seqpacket_message_size);

  struct options {
    std::string runtime_dir;
    socket_file_options sockets;
    bool log_connections = false;  // a log line per brokered connection
    std::size_t max_clients_per_partition = 1024;
    // Shares of the daemon-wide client budget control clients leave free
    // (for the management socket).
    std::size_t management_reserve = 0;
    std::chrono::milliseconds first_message_timeout = std::chrono::seconds(10);
  };

  // All references must outlive the server.
  control_server(event_loop& loop, client_budget& budget, const partition_tree& partitions,
                 const service_registry& services, router& routes, service_counters& counters,
                 options opts, log_function log);
  control_server(const control_server&) = delete;
  control_server& operator=(const control_server&) = delete;
  // Closes every client and socket and removes the socket files.
  ~control_server();

  // Creates and starts serving `p`'s control socket.
  result<void> open_partition(const partition& p);
  // Closes the partition's clients (unbinding its listeners) and its socket,
  // and removes the socket file and its directory (the partition is
  // deleted). Unknown names are ignored.
  void close_partition(std::string_view name);
  // Closes every partition's socket, keeping their directories (the daemon
  // stops; isolated partitions keep theirs bind-mounted).
  void close_all();

  std::string socket_path(std::string_view partition_name) const;
  // A QEMU partition's vhost-user socket, and whether a QEMU is attached.
  std::string vhost_user_socket_path(std::string_view partition_name) const;
  // A QEMU partition's hybrid vsock socket (docs/hybrid-vsock.md).
  std::string hybrid_socket_path(std::string_view partition_name) const;
  bool guest_attached(std::string_view partition_name) const;
  std::size_t client_count() const { return clients_.size(); }
  // Brokered connections per partition (a deleted partition's are dropped).
  const partition_counters& partition_connections() const { return partition_counters_; }

  // At start-up: a QEMU that was attached to the previous hvsockd may still
  // be running with a dead vsock device. Guests with a QMP socket get their
  // device re-plugged (qemu_replug, started when the partition is opened);
  // for the others one line says that their QEMU must be restarted.
  void reattach_qemu_guests();
  // `p`'s QMP socket was set or forgotten: re-plugging follows the new one
  // (and starts at once, as when the partition is opened).
  void qmp_socket_changed(const partition& p);
  // The registry changed: hybrid vsock VMs listen for their guests'
  // connects on the ports of the services now registered and enabled.
  void services_changed();
  // Whether hybrid vsock VM `name`'s VMM socket is there (false if `name`
  // is no such VM).
  bool vmm_socket_present(std::string_view name) const;

 private:
  struct partition_socket {
    // The partition's own client budget and gate (parent: gate_); held by
    // pointer as the listener keeps a reference to the gate.
    std::unique_ptr<client_budget> budget;
    std::unique_ptr<client_gate> gate;
    std::unique_ptr<socket_listener> listener;
    std::uint32_t next_port = first_ephemeral_port;
    std::unordered_set<std::uint64_t> clients;
  };

  struct client {
    std::uint64_t id = 0;  // also its listener_handle once it listens
    std::string partition;
    unique_fd fd;
    event_loop::watch_id watch = 0;
    // Closes the client unless its first message comes first (0 once it has).
    event_loop::timer_id first_message_timer = 0;
    bool listening = false;
    socket_type type = socket_type::stream;  // a listener's: what it accepts
    endpoint bound{};
    std::uint32_t backlog = 0;
    std::uint32_t pending = 0;  // incoming sent, accepted not yet received
    // A connect into a QEMU guest waiting for the guest's answer, and the
    // end the reply will carry (none when the client's own socket was
    // connected).
    bool waiting_for_guest = false;
    unique_fd reply_fd;
  };

  // --- the client table and dispatch (control_server.cpp) ---
  // Takes a client accepted on `partition`'s socket and serves its first
  // message if it is there already.
  result<void> add_client(const std::string& partition, unique_fd fd);
  // Reads and handles up to messages_per_wakeup messages (event loop only).
  void on_client(std::uint64_t id);
  // Receives one message of `c` into `buffer`. nullopt when there is nothing
  // to read now, or when `c` was closed: by its peer (EOF, an error) or for a
  // malformed message (more than one fd, truncated); then `c` is gone.
  std::optional<detail::received_message> receive(client& c, std::span<std::byte> buffer);
  void handle_message(client& c, std::span<const std::byte> data, unique_fd attached);
  void refuse(client& c, const failure& why);
  // Counts and logs a refused connect; the service's counter is the one
  // `why`'s code maps to (refusal_reason_for) unless `reason` names it.
  void count_refusal(const std::string& partition, const endpoint& target, const failure& why,
                     std::optional<refusal_reason> reason = std::nullopt);
  void protocol_error(client& c, const std::string& what);
  void close_client(std::uint64_t id);
  // The first-message timeout fired: closes `id` if it is still silent.
  void on_silent_client(std::uint64_t id);
  // A refusal's log line, rate-limited per partition.
  void log_refusal(const std::string& partition, const std::string& line);
  // Arms the timer that logs the limiters' summaries when their windows end.
  void schedule_log_flush();

  // --- connect and brokering (control_connect.cpp) ---
  void handle_connect(client& c, const detail::wire::connect_request& request);
  void handle_connect_socket(client& c, const detail::wire::connect_socket_request& request,
                             unique_fd socket);
  // Routes a connect from `source` to `target`; a refusal is counted and
  // logged here, as is every refusal below.
  result<route_decision> route(const partition& source, const endpoint& target);
  // Checks that the decision's listener takes a connection of `type` now,
  // then gets the listener's end of the new connection from `open_stream`
  // and queues it.
  result<void> hand_to_listener(const partition& source, const endpoint& target,
                                const route_decision& decision, const endpoint& connector_local,
                                socket_type type,
                                const std::function<result<unique_fd>()>& open_stream);
  // Sends the connector its success reply (with `connector_end` if >= 0)
  // and closes its control connection.
  void reply_connected(client& c, const partition& source, const endpoint& target,
                       const endpoint& connector_local, const route_decision& decision,
                       int connector_end);
  std::uint32_t next_ephemeral_port(const client& c);
  result<socket_broker*> socket_broker_for_clients(socket_type type);
  // A new AF_UNIX pair of `type`: returns one end, puts the other in
  // `other_end`. A seqpacket pair's ends are sized for seqpacket_message_size.
  static result<unique_fd> make_pair(socket_type type, unique_fd& other_end);
  // A seqpacket connect into a hybrid vsock VM (its protocol carries
  // streams only): refused, counted and logged.
  void refuse_seqpacket_into_vm(client& c, const partition& source, const endpoint& target,
                                const route_decision& decision);
  // The socket inode the counters know a stream end by (0 if unknown).
  static ino_t inode_of(int fd);

  // --- bind, listen and backlog accounting (control_listen.cpp) ---
  void handle_bind(client& c, const detail::wire::bind_request& request);
  void handle_listen(client& c, const detail::wire::listen_request& request);
  // A listen_request or an accepted on a listener's connection (dispatch
  // turns away every other type).
  void handle_listener_message(client& c, detail::wire::message_type type,
                               std::span<const std::byte> data);
  // One `accepted`: one pending connection fewer.
  void take_ack(client& c, std::span<const std::byte> data);
  // Reads the listener's queued `accepted` messages, and its close if that
  // is next, with a buffer of its own; stops at anything else, which is
  // left for on_client. The listener may be closed (and gone) afterwards.
  void drain_acks(std::uint64_t listener_id);
  void log_listening(const client& c);

  // --- QEMU guests (control_guest_bridge.cpp) ---
  result<void> open_guest(const partition& p);
  // Replaces the partition's qemu_replug by one for its QMP socket (none
  // without one) and starts it.
  void start_replug(const partition& p);
  // close_partition without removing the directory.
  void close_socket(std::string_view name);
  // Starts the connect into a QEMU guest; on_guest_answer finishes it.
  void connect_into_guest(client& c, const partition& source, const endpoint& target,
                          const route_decision& decision, socket_type type, unique_fd device_end,
                          unique_fd connector_end);
  void on_guest_answer(std::uint64_t client_id, const std::string& source_name,
                       const endpoint& target, const route_decision& decision, socket_type type,
                       result<std::uint32_t> host_port, std::array<ino_t, 2> inodes);
  // A guest's connect of `type` to its parent's port dst_port from its port
  // src_port: the host-side socket, from an hvsock listener of that type or,
  // for a stream when none listens and the parent is the host, from a Unix
  // listener at <hybrid socket>_<dst_port>.
  result<unique_fd> connect_from_guest(const std::string& guest_name, std::uint32_t dst_port,
                                       std::uint32_t src_port, socket_type type);

  // --- hybrid vsock (control_hybrid.cpp) ---
  result<void> open_hybrid(const partition& p);
  // A host process asked the hybrid socket of VM `vm_name` for `port`:
  // routed as a connect from the host; OK is written on the guest's answer.
  void connect_from_hybrid(const std::string& vm_name, std::uint32_t port, unique_fd stream);
  // A Unix listener at <hybrid socket>_<port> of `guest_name`, connected; a
  // refusal when there is none (or it does not take the connection now).
  result<unique_fd> connect_hybrid_host_listener(const std::string& guest_name, std::uint32_t port);
  // Firecracker / Cloud Hypervisor VMs (hybrid_vm).
  result<void> open_hybrid_vm(const partition& p);
  // The service ports VM `p`'s guest may connect to on the host.
  std::set<std::uint32_t> hybrid_vm_ports(const partition& p) const;
  // A connect into a hybrid vsock VM: through its VMM's socket, with
  // `socket` (the client's own, for connect_socket) or a new one sent in
  // the reply. `c` must not be used after this call.
  void connect_into_hybrid_vm(client& c, const partition& source, const endpoint& target,
                              const route_decision& decision, unique_fd socket);
  // The VMM connected for its guest's connect to host port `port`.
  void connect_from_hybrid_vm(const std::string& vm_name, std::uint32_t port, unique_fd stream);

  // The partition a vsock CID names, as seen from `source` (1 and its own
  // CID are itself).
  result<vm_id> vm_for_cid(const partition& source, std::uint32_t cid) const;

  // --- name lookups (control_lookup.cpp) ---
  // Answers a name lookup as the client's partition sees it, then closes the
  // client.
  void handle_lookup(client& c, const detail::wire::lookup_request& request);

  event_loop& loop_;
  client_gate gate_;
  const partition_tree& partitions_;
  const service_registry& services_;
  router& router_;
  service_counters& counters_;
  partition_counters partition_counters_;
  options options_;
  log_function log_;

  std::map<std::string, partition_socket, std::less<>> sockets_;
  std::map<std::string, std::unique_ptr<qemu_guest>, std::less<>> guests_;
  std::map<std::string, std::unique_ptr<hybrid_vsock_listener>, std::less<>> hybrids_;
  std::map<std::string, std::unique_ptr<hybrid_vm>, std::less<>> hybrid_vms_;
  std::uint32_t next_hybrid_peer_port_ = first_ephemeral_port;  // guests' ports behind a VMM
  // QEMU guests with a QMP socket; after guests_, so destroyed first.
  std::map<std::string, std::unique_ptr<qemu_replug>, std::less<>> replugs_;
  std::unordered_map<std::uint64_t, client> clients_;
  // Opened at the first connect_socket_request of each type.
  std::optional<socket_broker> socket_broker_;
  std::optional<socket_broker> seqpacket_broker_;
  std::uint64_t next_client_id_ = 1;
  log_limiter refusal_log_;
  log_limiter silent_log_;  // the silent clients closed
  event_loop::timer_id log_flush_timer_ = 0;
  // on_client's; drain_acks has its own, so a handler never reuses it.
  std::array<std::byte, detail::wire::max_message_size + 1> buffer_{};
};

}  // namespace hvsock::daemon
