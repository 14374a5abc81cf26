// vsock_device: the virtio-vsock device for one guest (one guest CID), i.e.
// the muxer between the guest's rx (0) and tx (1) virtqueues and the host
// stream fds of its connections (vsock_connection, one per stream). QEMU's
// vhost-user-vsock keeps the event queue (2) for itself, so it is not here.
//
// What drives it (all on hvsockd's single loop thread):
// - on_tx_kick(): the guest queued packets. Each tx chain is parsed
//   (vsock_packet), handled, and returned to the guest at once (a payload is
//   written to the host fd or copied into the connection's buffer first).
//   What a guest can make one packet cost is bounded (one syscall, at most
//   one queued reply), and data it may send is bounded by our credit.
// - on_rx_kick(): the guest posted receive buffers; pending packets go out.
// - Budget: hvsockd has one thread for every guest and client, so a guest
//   that keeps its tx ring full must not keep it. Each wake-up (a call of
//   any entry point, e.g. one kick) handles at most tx_budget_chains tx
//   chains (or tx_budget_bytes of them) and fills at most rx_budget_chains
//   rx chains; then the device stops, writes its own "resume" eventfd
//   (watched through the fd_watcher only while a resume is due) and carries
//   on when the loop comes back to it, after the other ready fds were served.
// - host fd readiness: the device watches each connection's host fd through
//   an fd_watcher (hvsockd's event_loop, or a test's poll loop).
// - on_tick(now): expires host-initiated connects and draining connections.
// The owner wires the rings: start_queue() when the vhost-user session starts
// a ring (on_ring_started), stop_queue() when it stops one, reset() on the
// session's on_reset (RESET_OWNER, front-end gone) and when it drops the
// device; it reads each ring's kick eventfd and calls the matching on_*_kick.
//
// The host side is abstract (vsock_host_side): the device knows nothing of
// routing or the registry. A guest REQUEST to CID 2 port P asks the host side
// for a connected stream; a host process reaches a guest port through
// connect_to_guest().
//
// Packet rules (the same as Linux's vhost-vsock, vhost_vsock_handle_tx_kick):
// a packet whose src_cid is not the guest's CID or whose dst_cid is not the
// host (2) is dropped without an answer (the guest only reaches the host over
// this device; other VMs are unreachable). A malformed packet is dropped. A
// type other than STREAM and SEQPACKET, or an unknown op, is answered with RST
// (never an RST to an RST); so is a packet whose type is not its connection's
// (as Linux does, without touching the connection).
// A packet for no known connection is answered with RST, unless it is a
// REQUEST, which opens one (or is refused with RST: every refusal is an RST).
// A REQUEST for a live connection resets it.
//
// Receive path priorities: stateless packets (RSTs for unknown or dropped
// connections) first, then per-connection control packets (REQUEST, RESPONSE,
// CREDIT_UPDATE), then data, round robin over connections whose host fd is
// readable. Data is read from a host fd only when a receive chain is in hand
// and the guest has credit, straight into the chain, so data is never queued
// here; control packets are coalesced per connection (at most one of each
// kind), and stateless ones are queued up to max_pending_control (beyond that
// they are dropped and counted: the guest's own timeout recovers).
//
// Resource bounds: at most max_connections connections (including draining
// ones) and buf_alloc buffered bytes each; a REQUEST beyond that gets RST.
//
// Failure: a guest that breaks the ring rules (pop fails, errc::protocol_error)
// or whose memory goes away under the device (a SIGBUS or EFAULT on a guest
// page, caught by guest_memory_guard: errc::io_error) makes on_*_kick fail;
// the device has then already reset itself (every host fd closed) and
// stopped using its rings, and the fault handler (set_fault_handler) was
// told, also for faults found outside on_*_kick (host events, resumes). The
// owner should end the session (memory gone) or wait for the front-end to set
// the rings up again (start_queue).
//
// Thread safety: none; one loop thread. Callbacks (notify, done, the host
// side, fd_watcher) are called on that thread; a connect_to_guest `done` may
// call back into the device.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include <hvsock/result.hpp>
#include <hvsock/socket_type.hpp>
#include <hvsock/unique_fd.hpp>

#include "virtio/split_virtqueue.hpp"
#include "virtio/vsock_connection.hpp"
#include "virtio/vsock_packet.hpp"

namespace hvsock::virtio {

// What the daemon provides: the host ends of guest-initiated connections.
class vsock_host_side {
 public:
  virtual ~vsock_host_side() = default;
  // The guest (src_port) asks for host port dst_port (a guest connect to CID
  // 2) with a socket of `type`. Returns a connected AF_UNIX socket (CLOEXEC;
  // made non-blocking here if it is not; SOCK_SEQPACKET for a SEQPACKET
  // connect) whose other end went to a host listener of that type, or the
  // reason for refusing (unregistered, disabled, no listener, another type,
  // ...), which becomes an RST.
  virtual result<unique_fd> open_to_host(std::uint32_t dst_port, std::uint32_t src_port,
                                         vsock_type type) = 0;
};

// The device's view of an event loop: level-triggered readiness of fds. It is
// the shape of hvsockd's daemon::event_loop (see loop_fd_watcher), kept
// abstract so the device is testable without the daemon.
class fd_watcher {
 public:
  using handler = std::function<void(std::uint32_t events)>;
  using watch_id = std::uint64_t;
  virtual ~fd_watcher() = default;
  virtual result<watch_id> watch(int fd, std::uint32_t events, handler on_event) = 0;
  virtual result<void> modify(watch_id id, std::uint32_t events) = 0;
  // Must be safe from inside a handler, including the handler's own watch.
  virtual void unwatch(watch_id id) = 0;
};

// Adapts any loop with event_loop's watch/modify/unwatch (hvsockd's
// daemon::event_loop) to fd_watcher: loop_fd_watcher<daemon::event_loop>.
template <class Loop>
class loop_fd_watcher final : public fd_watcher {
 public:
  explicit loop_fd_watcher(Loop& loop) : loop_(loop) {}
  result<watch_id> watch(int fd, std::uint32_t events, handler on_event) override {
    auto r = loop_.watch(fd, events, std::move(on_event));
    if (!r) return r.error();
    return static_cast<watch_id>(*r);
  }
  result<void> modify(watch_id id, std::uint32_t events) override {
    return loop_.modify(id, events);
  }
  void unwatch(watch_id id) override { loop_.unwatch(id); }

 private:
  Loop& loop_;
};

struct vsock_device_options {
  std::uint64_t guest_cid = 3;
  std::size_t max_connections = 1024;
  std::uint32_t buf_alloc = 256 * 1024;  // per-connection receive buffer we advertise
  // The same for SEQPACKET connections: also the largest message a guest may
  // send (Linux refuses a message over its peer's buffer).
  std::uint32_t seqpacket_buf_alloc = max_seqpacket_message_size;
  std::size_t max_payload = default_max_payload;
  std::size_t max_pending_control = 4096;            // stateless packets waiting for rx buffers
  std::chrono::milliseconds connect_timeout{10000};  // host-initiated connects
  std::chrono::milliseconds drain_timeout{30000};    // writing a closed guest's data
  // Host-side ports for host-initiated connections are taken from here up
  // (wrapping below 0xffffffff, VMADDR_PORT_ANY).
  std::uint32_t first_ephemeral_port = 49152;
  // Work between two turns of the loop (see "Budget" above).
  std::size_t tx_budget_chains = 256;
  std::size_t tx_budget_bytes = 1 << 20;
  std::size_t rx_budget_chains = 256;
};

struct vsock_device_stats {
  std::uint64_t packets_dropped = 0;  // malformed, misaddressed, ignored
  std::uint64_t resets_sent = 0;      // RSTs queued for the guest
  std::uint64_t control_dropped = 0;  // stateless packets lost to a full queue
  std::uint64_t connections_opened = 0;
  std::uint64_t connections_refused = 0;  // guest REQUESTs refused
  std::uint64_t budget_yields = 0;        // times the device stopped for the loop's next turn
};

class vsock_device {
 public:
  // Called after used buffers were published on `queue_index` and the guest
  // wants to hear about it (the owner calls vhost_user_backend::notify_used).
  using notify_function = std::function<void(std::uint16_t queue_index)>;
  // Ok: the host-side port the connection uses.
  using connect_handler = std::function<void(result<std::uint32_t>)>;
  // The device reset itself because of the guest (see "Failure" above).
  using fault_handler = std::function<void(const failure& why)>;

  // `host` and `watcher` must outlive the device.
  vsock_device(const vsock_device_options& options, vsock_host_side& host, fd_watcher& watcher,
               notify_function notify);
  vsock_device(const vsock_device&) = delete;
  vsock_device& operator=(const vsock_device&) = delete;
  // Closes every host fd without calling any connect handler.
  ~vsock_device();

  // Uses `queue` as the rx (vsock_rx_queue) or tx (vsock_tx_queue) ring and
  // processes what is already in it. Other indices are refused
  // (invalid_argument). A failure of the processing is as for on_*_kick.
  result<void> start_queue(std::uint16_t index, split_virtqueue queue);
  // Stops using ring `index` (connections stay; their traffic waits for the
  // ring to start again) and returns its last_avail_idx for GET_VRING_BASE.
  // No chain is ever left in flight between calls, so the index is exact.
  std::uint16_t stop_queue(std::uint16_t index);
  // Device reset: every connection ends (host fds closed: the host side sees
  // EOF or ECONNRESET), pending host-initiated connects complete with an
  // error, rings are forgotten. The device can be started again.
  void reset();

  result<void> on_tx_kick();
  result<void> on_rx_kick();

  // Called (on the loop's thread, possibly inside any entry point) each time
  // the device resets itself because of the guest. It must not call back
  // into the device; defer that to a later turn.
  void set_fault_handler(fault_handler on_fault) { on_fault_ = std::move(on_fault); }

  // Connects `host_stream` (the host end, an AF_UNIX socket of `type`: a
  // SOCK_SEQPACKET one for vsock_type::seqpacket; made non-blocking) to the
  // guest's port `guest_port`: a REQUEST from a fresh host-side port.
  // `done` is called exactly once, possibly before this returns: the host-side
  // port on the guest's RESPONSE (data then flows), errc::connection_refused on its RST
  // or a device reset, errc::timed_out after connect_timeout (see on_tick),
  // errc::limit_reached when max_connections are open. On failure the
  // device closes host_stream after `done` returns.
  void connect_to_guest(std::uint32_t guest_port, unique_fd host_stream, vsock_type type,
                        connect_handler done);

  // Expires connects and draining connections older than their timeouts.
  // Call every second or so.
  void on_tick(std::chrono::steady_clock::time_point now = std::chrono::steady_clock::now());

  std::uint64_t guest_cid() const { return options_.guest_cid; }
  // Live connections, draining ones included.
  std::size_t connection_count() const { return entries_.size(); }
  const vsock_device_stats& stats() const { return stats_; }
  bool queue_running(std::uint16_t index) const;

 private:
  struct entry {
    entry(std::uint64_t i, vsock_connection c) : id(i), conn(std::move(c)) {}
    std::uint64_t id = 0;
    vsock_connection conn;
    fd_watcher::watch_id watch = 0;  // 0: not watched
    std::uint32_t watched_events = 0;
    bool in_rx_ready = false;  // queued in rx_ready_ (host fd believed readable)
    bool in_control = false;   // queued in control_ready_
    bool keyed = true;         // present in by_key_ (false once draining)
    connect_handler done;      // host-initiated, until answered
    std::chrono::steady_clock::time_point deadline{};
  };

  entry* find(std::uint64_t id);
  entry& add(vsock_connection conn);
  void destroy(entry& e);
  // Brings queues and the fd watch in line with the connection's needs.
  void settle(entry& e);
  void apply(entry& e, vsock_connection::verdict v);
  void complete(entry& e, result<std::uint32_t> outcome);
  void queue_stateless(const virtio_vsock_hdr& h);
  void on_host_event(std::uint64_t id, std::uint32_t events);

  void handle_tx(const descriptor_chain& chain);
  void accept_request(const virtio_vsock_hdr& h);
  result<void> process_tx();
  result<void> pump_rx();
  result<void> fault(const failure& f);
  // The guest's memory faulted since the last check (guest_memory_guard).
  result<void> check_memory();
  // Budget spent: arranges to come back on a later turn of the loop and
  // returns true; false if it cannot (then the allowance is refilled).
  bool yield_to_loop();
  // Starts a wake-up: a fresh budget, no stale memory fault.
  void begin_entry();
  void on_resume();
  // Ends a public entry point: notifications, then connect handlers.
  void finish();

  vsock_device_options options_;
  vsock_connection::settings settings_;
  vsock_host_side& host_;
  fd_watcher& watcher_;
  notify_function notify_;

  std::optional<split_virtqueue> rx_;
  std::optional<split_virtqueue> tx_;
  bool rx_pushed_ = false;
  bool tx_pushed_ = false;

  std::unordered_map<std::uint64_t, entry> entries_;
  std::unordered_map<connection_key, std::uint64_t, connection_key_hash> by_key_;
  std::uint64_t next_id_ = 1;
  std::uint32_t next_port_;

  std::deque<virtio_vsock_hdr> stateless_;
  std::deque<std::uint64_t> control_ready_;
  std::deque<std::uint64_t> rx_ready_;

  fault_handler on_fault_;
  // Spent in this wake-up (see "Budget").
  std::size_t tx_chains_spent_ = 0;
  std::size_t tx_bytes_spent_ = 0;
  std::size_t rx_chains_spent_ = 0;
  unique_fd resume_fd_;                    // eventfd, made on the first yield
  fd_watcher::watch_id resume_watch_ = 0;  // 0: no resume due

  std::vector<std::function<void()>> completions_;
  bool finishing_ = false;
  vsock_device_stats stats_;
};

}  // namespace hvsock::virtio
