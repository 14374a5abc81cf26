// vsock_connection: one virtio-vsock stream between a guest socket and a host
// stream fd, as a state machine driven by the device (vsock_device): packets
// from the guest (on_guest_packet), readiness of the host fd
// (on_host_writable, fill_rx) and control packets it wants sent
// (take_control). It never touches a virtqueue except to fill one receive
// chain the device hands it, and never talks to the event loop: the device
// asks wanted_events() and does the watching.
//
// Flow control follows the virtio spec ("Socket Device", buffer space
// management) both ways:
// - guest -> host: we advertise buf_alloc (a per-connection buffer) and
//   fwd_cnt (bytes written to the host fd). A RW payload is written straight
//   to the host fd; what the fd does not take (EAGAIN) is kept, but never more
//   than buf_alloc bytes: a guest that sends beyond the credit we gave it is
//   broken and gets an RST. CREDIT_UPDATE is sent when a quarter of the buffer
//   has been consumed since the last advertisement, when the guest's view of
//   its credit drops below one maximum packet, and on CREDIT_REQUEST; every
//   packet we send carries buf_alloc and fwd_cnt anyway.
// - host -> guest: we read from the host fd only when the guest has credit
//   (peer_buf_alloc - (tx_cnt - peer_fwd_cnt)) and the device has a receive
//   chain; the bytes go straight into that chain (no copy, nothing queued).
//
// Closing, modelled on Linux's virtio_transport_common.c so a Linux guest sees
// what it would see talking to the kernel's vhost-vsock:
// - guest SHUTDOWN(SEND): once buffered data is written, shutdown(fd, SHUT_WR)
//   (the host reader sees EOF).
// - guest SHUTDOWN(RCV): stop reading the host fd and shutdown(fd, SHUT_RD),
//   so a host writer gets EPIPE, as a Linux sender does after the peer's RCV
//   shutdown.
// - host fd EOF: SHUTDOWN(SEND) to the guest, after all data read before it.
// - both directions done (guest SEND + host EOF): the fd is closed and the
//   state dropped without an RST; the guest's close() then sends SHUTDOWN with
//   both flags, which the device answers with an RST as for any packet of an
//   unknown connection, which is exactly what the guest waits for.
// - the guest has said both SEND and RCV (at once, as Linux's close() does, or
//   one after the other): like Linux receiving SHUTDOWN_MASK, the connection is
//   over: the device sends RST so the guest can release its socket at once,
//   and data already accepted from the guest is still written to the host fd
//   (state draining) before it is closed, so close() after send() loses
//   nothing.
// - RST from the guest: the fd is closed at once, buffered data dropped.
// - host fd error (ECONNRESET, EPIPE, ...): RST to the guest.
//
// SEQPACKET connections (VIRTIO_VSOCK_F_SEQPACKET) carry messages; the host
// fd is then an AF_UNIX SOCK_SEQPACKET socket, one message per send/recv:
// - guest -> host: RW fragments are gathered until the one flagged EOM, and
//   the whole message goes to the host fd in one send (at once, straight from
//   guest memory, when it came in one packet and nothing waits before it).
//   A message the guest flagged EOR (its sender's MSG_EOR) carries the
//   preload shim's MSG_EOR mark: one fd (of /dev/null) passed with
//   SCM_RIGHTS beside it (src/preload; other receivers drop it unseen).
//   Credit is as for streams, over a buffer of seqpacket_buf_alloc bytes, so
//   the largest message a guest may send (Linux refuses one over its peer's
//   buf_alloc) is that many bytes.
// - host -> guest: one message is read whole (its size is peeked first) and
//   goes out in fragments as credit and receive chains allow, the last one
//   flagged EOM | EOR (libhvsock marks every message with MSG_EOR). A host
//   message larger than the guest's whole buffer (its SO_VM_SOCKETS_BUFFER_
//   SIZE) could never be taken by a Linux guest, which waits for the whole
//   message: the connection is reset instead of hanging.
// - the host fd has SO_PASSCRED: every message, an empty one too, comes with
//   credentials, and the end of the host's messages comes with none.
//
// Thread safety: none; owned by one device on the daemon's loop thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <vector>

#include <hvsock/socket_type.hpp>
#include <hvsock/unique_fd.hpp>

#include "virtio/split_virtqueue.hpp"
#include "virtio/vsock_packet.hpp"

namespace hvsock::virtio {

// A connection's identity on the device: the host-side port and the guest's
// port (the guest CID is the device's).
struct connection_key {
  std::uint32_t local_port = 0;  // host side (the guest's dst_port)
  std::uint32_t peer_port = 0;   // guest side (the guest's src_port)
  friend bool operator==(const connection_key&, const connection_key&) = default;
};

struct connection_key_hash {
  std::size_t operator()(const connection_key& k) const noexcept {
    return std::hash<std::uint64_t>{}((std::uint64_t{k.local_port} << 32) | k.peer_port);
  }
};

class vsock_connection {
 public:
  struct settings {
    std::uint64_t guest_cid = 0;
    std::uint32_t buf_alloc = 256 * 1024;  // what we advertise; the most we buffer
    // The same for SEQPACKET connections, which is also the largest message
    // a guest may send (hvsockd's host pairs carry 1 MiB messages).
    std::uint32_t seqpacket_buf_alloc = max_seqpacket_message_size;
    std::size_t max_payload = default_max_payload;
  };

  enum class state {
    connecting,   // host-initiated: REQUEST sent or pending, no RESPONSE yet
    established,  // data may flow (subject to shutdowns)
    draining,     // the guest is gone; writing what it sent to the host fd, then close
  };

  // What the device must do after a call.
  enum class verdict {
    keep,          // nothing beyond re-reading wanted_events()/has_control()
    connected,     // host-initiated connect answered with RESPONSE: report success
    refused,       // host-initiated connect answered with RST: report, forget (no RST)
    reset,         // send rst() to the guest, close the fd, forget the connection
    finished,      // over without an RST (both directions done, guest RST, drained)
    guest_closed,  // the guest shut down both ways: send rst(), then drain or forget
  };

  // A guest REQUEST accepted: `host` is the connected host socket
  // (non-blocking; SOCK_SEQPACKET for a SEQPACKET request). A RESPONSE is
  // pending.
  static vsock_connection accept(const settings& s, const virtio_vsock_hdr& request,
                                 unique_fd host);
  // A host-initiated connection of `type` from `local_port` to the guest's
  // `guest_port`. A REQUEST is pending.
  static vsock_connection connect(const settings& s, std::uint32_t local_port,
                                  std::uint32_t guest_port, vsock_type type, unique_fd host);

  vsock_connection(vsock_connection&&) noexcept = default;
  vsock_connection& operator=(vsock_connection&&) noexcept = default;

  // A packet from the guest addressed to this connection (addresses and type
  // already checked by the device, status ok). Updates the peer's credit from
  // its header whatever the op.
  verdict on_guest_packet(const parsed_packet& packet);

  // The host fd became writable (or reported an error): writes buffered data.
  verdict on_host_writable();

  // Fills `chain` (a receive chain with room for a header and at least one
  // payload byte) from the host fd. used: bytes to push_used(), 0 when the
  // chain was not used (give it back). would_block: nothing to read right
  // now (wait for EPOLLIN). A host EOF produces SHUTDOWN(SEND) in the chain.
  struct rx_fill {
    std::uint32_t used = 0;
    bool would_block = false;
    verdict next = verdict::keep;
  };
  rx_fill fill_rx(const descriptor_chain& chain);

  // Control packets waiting for a receive chain (REQUEST, RESPONSE,
  // CREDIT_UPDATE), highest priority first; at most one of each is ever
  // pending, so a connection's control backlog is bounded.
  bool has_control() const { return need_request_ || need_response_ || need_credit_update_; }
  // Precondition: has_control(). Stamps the current credit into the header.
  virtio_vsock_hdr take_control();

  // An RST for this connection (host to guest).
  virtio_vsock_hdr rst() const;

  // Whether host->guest data may be read now (established, host side not at
  // EOF, guest still receiving, RESPONSE already sent, guest has credit), or,
  // SEQPACKET, the rest of a message already read may go out.
  bool wants_read() const;
  // A message read from the host fd waits to go out (SEQPACKET): fill_rx has
  // work without the fd becoming readable.
  bool has_message_for_guest() const { return out_active_; }
  // EPOLLIN / EPOLLOUT this connection needs on its host fd.
  std::uint32_t wanted_events() const;

  // Switches to draining (after guest_closed with buffered data).
  void start_draining() { state_ = state::draining; }

  state current_state() const { return state_; }
  vsock_type type() const { return type_; }
  const connection_key& key() const { return key_; }
  int host_fd() const { return fd_.get(); }
  std::size_t buffered_bytes() const { return pending_.size() - pending_head_; }
  // The guest's credit for our data: what we may still send it.
  std::uint32_t peer_credit() const;

 private:
  vsock_connection(const settings& s, connection_key key, vsock_type type, unique_fd host,
                   state st);
  bool seqpacket() const { return type_ == vsock_type::seqpacket; }

  virtio_vsock_hdr addressed(vsock_op op) const;  // to the guest port, no credit
  virtio_vsock_hdr header(vsock_op op);           // addressed, credit stamped
  verdict on_established_packet(const parsed_packet& packet);
  verdict on_rw(const parsed_packet& packet);
  verdict on_message_fragment(const parsed_packet& packet);
  // Appends the payload to pending_ (compacting first, so it stays within
  // buf_alloc); `skip` bytes of it were written already.
  void keep_payload(const parsed_packet& packet, std::size_t skip);
  rx_fill fill_rx_message(const descriptor_chain& chain);
  // Reads the next host message whole into out_; false on EAGAIN.
  bool read_host_message(rx_fill& r);
  // Writes buffered data; false on a fatal fd error.
  bool flush();
  // shutdown(SHUT_WR) once the guest said SEND and the buffer is empty.
  void maybe_shut_write();
  void consider_credit_update();
  bool both_directions_done() const;

  settings settings_;
  connection_key key_;
  vsock_type type_;
  std::uint32_t buf_alloc_;  // settings_.buf_alloc or seqpacket_buf_alloc
  unique_fd fd_;
  state state_;

  // Guest -> host.
  std::uint32_t rx_cnt_ = 0;        // payload bytes received from the guest
  std::uint32_t fwd_cnt_ = 0;       // of those, written to the host fd
  std::uint32_t last_adv_fwd_ = 0;  // fwd_cnt as last told to the guest
  std::vector<std::byte> pending_;  // received, not yet written: [pending_head_, size)
  std::size_t pending_head_ = 0;
  bool guest_send_closed_ = false;  // guest said SHUTDOWN(SEND)
  bool guest_rcv_closed_ = false;   // guest said SHUTDOWN(RCV)
  bool write_shut_ = false;         // shutdown(fd, SHUT_WR) done
  // SEQPACKET: pending_ holds whole messages of these sizes (and whether
  // each ended with EOR), oldest first, then partial_ bytes of one still
  // being gathered.
  struct gathered {
    std::size_t size;
    bool eor;
  };
  std::deque<gathered> messages_;
  std::size_t partial_ = 0;

  // Host -> guest.
  std::uint32_t tx_cnt_ = 0;  // payload bytes sent to the guest
  std::uint32_t peer_buf_alloc_ = 0;
  std::uint32_t peer_fwd_cnt_ = 0;
  bool host_eof_ = false;  // EOF read from the host fd (SHUTDOWN(SEND) sent)
  // SEQPACKET: the host message going out, out_[out_sent_..] not sent yet.
  std::vector<std::byte> out_;
  std::size_t out_sent_ = 0;
  bool out_active_ = false;

  bool need_request_ = false;
  bool need_response_ = false;
  bool need_credit_update_ = false;
};

}  // namespace hvsock::virtio
