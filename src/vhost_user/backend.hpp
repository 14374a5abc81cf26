// backend: one vhost-user back-end session, i.e. one front-end (QEMU)
// connection on a vhost-user socket, as described in QEMU's
// docs/interop/vhost-user.rst. It negotiates features, maps the guest's
// memory table, keeps each vring's set-up (size, addresses, base, kick/call
// eventfds, enabled) and tells the device (device_hooks) when a ring starts
// and stops; the device does the virtqueue work.
//
// The owner watches the connection's fd and calls on_readable() when it is
// readable; replies are written synchronously (they are a few bytes, and the
// front-end waits for each). The owner also watches each started ring's kick
// fd: that is the device's business, not the session's. When on_readable()
// fails (any malformed or unsupported message, or a front-end breaking the
// protocol's rules) or reports that the front-end closed, the owner calls
// disconnect() and drops the session; nothing else is affected. A new
// front-end connection gets a new session, which starts from scratch.
//
// Ring lifecycle. A ring *runs* (on_ring_started) when it has a size, ring
// addresses that translate into guest memory, and a SET_VRING_KICK (an fd, or
// the "no fd: poll" flag), and it is enabled. Following the spec, rings are
// enabled from the start unless VHOST_USER_F_PROTOCOL_FEATURES was
// negotiated, in which case SET_VRING_ENABLE turns them on and off. A running
// ring stops (on_ring_stopped, which returns the device's last_avail_idx) on
// GET_VRING_BASE, on SET_VRING_ENABLE 0, before any change to its set-up or to
// the memory table (it restarts afterwards, with fresh pointers), on
// RESET_OWNER and on disconnect(). GET_VRING_BASE also forgets the kick fd, so
// a ring starts again only after the front-end sets it up again.
//
// Thread safety: none; one session is used on the daemon's loop thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <hvsock/result.hpp>
#include <hvsock/unique_fd.hpp>

#include "vhost_user/message.hpp"
#include "virtio/guest_memory.hpp"

namespace hvsock::vhost_user {

// The largest split ring the back-end accepts (the virtio maximum).
inline constexpr std::uint32_t max_ring_size = 32768;
// virtio-vsock's queues: rx 0 (device to driver), tx 1, event 2. QEMU's
// vhost-user-vsock keeps the event queue for itself ("the event queue belongs
// to QEMU") and only ever sets up rings 0 and 1; ring 2 is accepted for
// front-ends that do hand it over.
inline constexpr std::size_t vsock_queue_count = 3;

// What a device needs to run one split ring. The spans and the kick fd stay
// valid until on_ring_stopped() for this ring returns. With split_virtqueue:
// create(*memory, {num, {desc_user_addr, avail_user_addr, used_user_addr},
// address_space::frontend_virtual, base}).
struct ring_info {
  std::uint32_t index = 0;
  std::uint32_t num = 0;         // ring size: a power of two, <= max_ring_size
  std::uint16_t base = 0;        // last_avail_idx to resume from
  std::uint32_t addr_flags = 0;  // SET_VRING_ADDR flags (bit 0: log used-ring writes)
  // The front-end's addresses as it sent them (its virtual addresses).
  std::uint64_t desc_user_addr = 0;
  std::uint64_t avail_user_addr = 0;
  std::uint64_t used_user_addr = 0;
  std::uint64_t log_guest_addr = 0;
  // The same rings in this process, sized for `num` (avail and used include
  // the trailing event-index field): 16*num, 6 + 2*num and 6 + 8*num bytes.
  std::span<std::byte> desc;
  std::span<std::byte> avail;
  std::span<std::byte> used;
  int kick_fd = -1;  // -1: the front-end sent no fd, the device must poll
  // For translating descriptor addresses (guest-physical).
  const virtio::guest_memory* memory = nullptr;
};

// Implemented by the device (the owner). Called from inside on_readable() and
// disconnect(), never re-entrantly.
class device_hooks {
 public:
  virtual ~device_hooks() = default;
  // The ring may be processed now. A failure ends the session.
  virtual result<void> on_ring_started(std::uint32_t index, const ring_info& ring) = 0;
  // The ring must not be touched any more (pointers and kick fd go away
  // after this returns). Returns the next available index the device would
  // have processed (last_avail_idx), which GET_VRING_BASE reports.
  virtual std::uint16_t on_ring_stopped(std::uint32_t index) = 0;
  // The front-end reset the device (RESET_OWNER) or went away (disconnect):
  // drop all device state, e.g. reset every guest connection. Rings have
  // already been stopped.
  virtual void on_reset() = 0;
};

struct backend_options {
  std::size_t queue_count = vsock_queue_count;  // 1..256
  // Device feature bits to offer on top of VIRTIO_F_VERSION_1 and
  // VHOST_USER_F_PROTOCOL_FEATURES (e.g. VIRTIO_RING_F_INDIRECT_DESC).
  std::uint64_t device_features = 0;
  // The device's config space, returned by GET_CONFIG (vsock: vsock_config()).
  std::vector<std::byte> config;
};

// virtio-vsock's config space: guest_cid, a little-endian u64.
std::vector<std::byte> vsock_config(std::uint64_t guest_cid);

class vhost_user_backend {
 public:
  enum class status { open, peer_closed };

  // `connection` is the accepted front-end socket (AF_UNIX stream; it should
  // be non-blocking). `hooks` must outlive the session. Throws
  // std::invalid_argument if queue_count is 0 or above 256.
  vhost_user_backend(unique_fd connection, device_hooks& hooks, backend_options options);
  vhost_user_backend(const vhost_user_backend&) = delete;
  vhost_user_backend& operator=(const vhost_user_backend&) = delete;
  // Releases memory and fds without calling any hook: call disconnect() first
  // if rings may be running.
  ~vhost_user_backend();

  int fd() const { return connection_.get(); }

  // Handles every complete message available on the connection (up to a
  // batch limit, so one front-end cannot hog the loop; level-triggered
  // polling brings the owner back). peer_closed: the front-end closed the
  // connection between messages. A failure names the request and what was
  // wrong with it.
  result<status> on_readable();

  // Stops every running ring, calls on_reset() and releases the memory
  // table, the eventfds and the connection. Idempotent.
  void disconnect();

  // Signals the front-end that ring `index` has used buffers (writes its call
  // eventfd). No-op when the front-end gave no call fd. The fd can change
  // while the ring runs (QEMU swaps it when masking interrupts), so the
  // device asks here each time rather than keeping it.
  result<void> notify_used(std::uint32_t index) const;
  int call_fd(std::uint32_t index) const;

  // Introspection, for the owner and tests.
  std::uint64_t offered_features() const { return offered_features_; }
  std::uint64_t acked_features() const { return acked_features_; }
  std::uint64_t acked_protocol_features() const { return acked_protocol_features_; }
  bool owned() const { return owned_; }
  bool ring_running(std::uint32_t index) const;
  const virtio::guest_memory& memory() const { return memory_; }

  static constexpr std::uint64_t offered_protocol_features =
      (std::uint64_t{1} << protocol_feature_reply_ack) |
      (std::uint64_t{1} << protocol_feature_config);

 private:
  struct vring {
    std::uint32_t num = 0;  // 0: not set
    bool has_addr = false;
    vring_addr addr;
    std::uint16_t base = 0;
    bool kick_set = false;  // SET_VRING_KICK seen since the last GET_VRING_BASE
    unique_fd kick;
    unique_fd call;
    unique_fd err;
    bool enabled = false;  // SET_VRING_ENABLE's last word
    bool running = false;
  };

  result<void> handle(message& m);
  result<void> handle_mem_table(message& m);
  result<void> handle_vring_fd(message& m);
  result<void> handle_get_config(const message& m);
  result<void> reply(request code, const payload& body);
  result<void> reply_ack(request code, bool ok);

  result<vring*> ring_at(request code, std::uint32_t index);
  result<void> require_owner(request code) const;
  // Brings every ring's running state in line with its set-up.
  result<void> reconcile();
  result<ring_info> describe(std::uint32_t index) const;
  void stop_ring(std::uint32_t index);
  void stop_all();
  bool protocol_features_negotiated() const;

  unique_fd connection_;
  device_hooks& hooks_;
  backend_options options_;
  message_reader reader_;
  std::uint64_t offered_features_ = 0;
  std::uint64_t acked_features_ = 0;
  std::uint64_t acked_protocol_features_ = 0;
  bool owned_ = false;
  virtio::guest_memory memory_;
  std::vector<vring> rings_;
};

}  // namespace hvsock::vhost_user
