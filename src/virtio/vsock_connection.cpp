#include "virtio/vsock_connection.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "sys/fd_passing.hpp"
#include "virtio/guest_memory_guard.hpp"

namespace hvsock::virtio {
namespace {

constexpr std::uint16_t op_value(vsock_op op) { return static_cast<std::uint16_t>(op); }

// sendmsg with MSG_NOSIGNAL: a host peer that went away must give EPIPE, not
// kill the daemon with SIGPIPE. Returns bytes written, 0 on EAGAIN, -errno.
ssize_t send_iov(int fd, iovec* iov, std::size_t count) {
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = count;
  for (;;) {
    const ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    return -errno;
  }
}

// The fd whose presence marks a message's MSG_EOR for the preload shim
// (src/preload/emulation.cpp): /dev/null, opened once; -1 if it cannot be.
int eor_marker() {
  static const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  return fd;
}

// One message to a SOCK_SEQPACKET fd, all or nothing: 1 sent, 0 on EAGAIN,
// -errno. `eor`: with the shim's MSG_EOR mark.
int send_message(int fd, std::span<const iovec> message, bool eor) {
  const int marker = eor ? eor_marker() : -1;
  auto sent = detail::send_message(
      fd, message, marker >= 0 ? std::span(&marker, 1) : std::span<const int>(), MSG_DONTWAIT);
  // Too many fds in flight for hvsockd's user: the message goes, its mark does not.
  if (!sent && marker >= 0 &&
      sent.error().code() == std::error_code(ETOOMANYREFS, std::system_category()))
    sent = detail::send_message(fd, message, std::span<const int>(), MSG_DONTWAIT);
  if (sent) return 1;
  if (sent.error().code() == make_error_code(errc::would_block)) return 0;
  const auto& code = sent.error().code();
  return code.category() == std::system_category() ? -code.value() : -EIO;
}

// recvmsg on the host fd with room for the SO_PASSCRED credentials only:
// fds a host process passes along are never installed here (the kernel
// drops what does not fit and flags MSG_CTRUNC).
struct host_message {
  ssize_t length = -1;  // -1: errno says why
  bool credentials = false;
};
host_message receive_host_message(int fd, iovec* iov, std::size_t count, int flags) {
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = count;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  host_message m;
  do {
    m.length = ::recvmsg(fd, &msg, flags | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (m.length < 0 && errno == EINTR);
  if (m.length >= 0) m.credentials = msg.msg_controllen > 0 || (msg.msg_flags & MSG_CTRUNC) != 0;
  return m;
}

}  // namespace

vsock_connection::vsock_connection(const settings& s, connection_key key, vsock_type type,
                                   unique_fd host, state st)
    : settings_(s),
      key_(key),
      type_(type),
      buf_alloc_(type == vsock_type::seqpacket ? s.seqpacket_buf_alloc : s.buf_alloc),
      fd_(std::move(host)),
      state_(st) {
  if (seqpacket()) {
    const int on = 1;
    (void)::setsockopt(fd_.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on);
    // A message from the guest goes to the host in one send, which Linux
    // refuses above the send buffer less 32 bytes (unix_dgram_sendmsg); it
    // doubles the value set. Without CAP_NET_ADMIN, wmem_max caps it.
    const int wanted = static_cast<int>((buf_alloc_ + 4096) / 2);
    if (::setsockopt(fd_.get(), SOL_SOCKET, SO_SNDBUFFORCE, &wanted, sizeof wanted) < 0)
      (void)::setsockopt(fd_.get(), SOL_SOCKET, SO_SNDBUF, &wanted, sizeof wanted);
  }
}

vsock_connection vsock_connection::accept(const settings& s, const virtio_vsock_hdr& request,
                                          unique_fd host) {
  const auto type = request.type == static_cast<std::uint16_t>(vsock_type::seqpacket)
                        ? vsock_type::seqpacket
                        : vsock_type::stream;
  vsock_connection c(s, {request.dst_port, request.src_port}, type, std::move(host),
                     state::established);
  c.peer_buf_alloc_ = request.buf_alloc;
  c.peer_fwd_cnt_ = request.fwd_cnt;
  c.need_response_ = true;
  return c;
}

vsock_connection vsock_connection::connect(const settings& s, std::uint32_t local_port,
                                           std::uint32_t guest_port, vsock_type type,
                                           unique_fd host) {
  vsock_connection c(s, {local_port, guest_port}, type, std::move(host), state::connecting);
  c.need_request_ = true;
  return c;
}

virtio_vsock_hdr vsock_connection::addressed(vsock_op op) const {
  virtio_vsock_hdr h;
  h.src_cid = vmaddr_cid_host;
  h.dst_cid = settings_.guest_cid;
  h.src_port = key_.local_port;
  h.dst_port = key_.peer_port;
  h.type = static_cast<std::uint16_t>(type_);
  h.op = op_value(op);
  return h;
}

virtio_vsock_hdr vsock_connection::header(vsock_op op) {
  virtio_vsock_hdr h = addressed(op);
  h.buf_alloc = buf_alloc_;
  h.fwd_cnt = fwd_cnt_;
  last_adv_fwd_ = fwd_cnt_;
  need_credit_update_ = false;  // every packet carries the credit
  return h;
}

virtio_vsock_hdr vsock_connection::rst() const { return addressed(vsock_op::rst); }

virtio_vsock_hdr vsock_connection::take_control() {
  if (need_request_) {
    need_request_ = false;
    return header(vsock_op::request);
  }
  if (need_response_) {
    need_response_ = false;
    return header(vsock_op::response);
  }
  return header(vsock_op::credit_update);
}

std::uint32_t vsock_connection::peer_credit() const {
  // Unsigned wrap-around is the protocol's arithmetic; a guest whose fwd_cnt
  // runs ahead of what we sent (or that shrank its buffer) gets no credit
  // rather than a huge one.
  const std::uint32_t in_flight = tx_cnt_ - peer_fwd_cnt_;
  return in_flight >= peer_buf_alloc_ ? 0 : peer_buf_alloc_ - in_flight;
}

bool vsock_connection::wants_read() const {
  if (state_ != state::established || guest_rcv_closed_ || need_response_) return false;
  // The rest of a message read already; its empty last fragment needs no credit.
  if (out_active_) return out_sent_ == out_.size() || peer_credit() > 0;
  return !host_eof_ && peer_credit() > 0;
}

std::uint32_t vsock_connection::wanted_events() const {
  std::uint32_t ev = 0;
  if (state_ != state::connecting && (seqpacket() ? !messages_.empty() : buffered_bytes() > 0))
    ev |= EPOLLOUT;
  if (wants_read() && !out_active_) ev |= EPOLLIN;
  return ev;
}

bool vsock_connection::both_directions_done() const {
  return guest_send_closed_ && write_shut_ && (host_eof_ || guest_rcv_closed_);
}

vsock_connection::verdict vsock_connection::on_guest_packet(const parsed_packet& packet) {
  const virtio_vsock_hdr& h = packet.header;
  peer_buf_alloc_ = h.buf_alloc;
  peer_fwd_cnt_ = h.fwd_cnt;
  switch (state_) {
    case state::connecting:
      // As Linux's virtio_transport_recv_connecting: RESPONSE connects, RST
      // refuses, anything else is a protocol error answered with RST.
      if (h.op == op_value(vsock_op::response)) {
        state_ = state::established;
        consider_credit_update();
        return verdict::connected;
      }
      if (h.op == op_value(vsock_op::rst)) return verdict::refused;
      return verdict::reset;
    case state::established: return on_established_packet(packet);
    case state::draining: return verdict::keep;  // not reachable: a draining connection has no key
  }
  return verdict::keep;
}

vsock_connection::verdict vsock_connection::on_established_packet(const parsed_packet& packet) {
  const virtio_vsock_hdr& h = packet.header;
  switch (static_cast<vsock_op>(h.op)) {
    case vsock_op::rw: return on_rw(packet);
    case vsock_op::credit_update:
      return verdict::keep;  // the credit was taken from the header already
    case vsock_op::credit_request: need_credit_update_ = true; return verdict::keep;
    case vsock_op::shutdown:
      if ((h.flags & vsock_shutdown_rcv) && !guest_rcv_closed_) {
        guest_rcv_closed_ = true;
        ::shutdown(fd_.get(), SHUT_RD);
      }
      if ((h.flags & vsock_shutdown_send) && !guest_send_closed_) {
        guest_send_closed_ = true;
        // The rest of a message the guest never finished goes nowhere.
        pending_.resize(pending_.size() - partial_);
        partial_ = 0;
      }
      if (guest_send_closed_ && guest_rcv_closed_) return verdict::guest_closed;
      maybe_shut_write();
      return both_directions_done() ? verdict::finished : verdict::keep;
    case vsock_op::rst: return verdict::finished;
    case vsock_op::request:
      // A second REQUEST on a live connection: the guest lost track of it.
      return verdict::reset;
    case vsock_op::response:
    case vsock_op::invalid:
      // Linux ignores an unexpected RESPONSE on a connected socket.
      return verdict::keep;
  }
  return verdict::keep;
}

vsock_connection::verdict vsock_connection::on_rw(const parsed_packet& packet) {
  const std::size_t len = packet.payload_size();
  if (guest_send_closed_) return verdict::reset;  // data after its own SHUTDOWN(SEND)
  if (seqpacket()) return on_message_fragment(packet);
  if (len == 0) return verdict::keep;
  // The guest may have at most buf_alloc bytes unconsumed by us. Checking
  // against our real fwd_cnt (never behind what we advertised) cannot reset a
  // guest that respected the credit it was told about.
  if (buffered_bytes() + len > buf_alloc_) return verdict::reset;
  rx_cnt_ += static_cast<std::uint32_t>(len);

  std::size_t written = 0;
  if (buffered_bytes() == 0) {
    std::vector<iovec> iov;
    iov.reserve(std::min<std::size_t>(packet.payload.size(), IOV_MAX));
    for (const auto& s : packet.payload) {
      if (iov.size() == IOV_MAX) break;
      iov.push_back({const_cast<std::byte*>(s.data()), s.size()});
    }
    const ssize_t n = send_iov(fd_.get(), iov.data(), iov.size());
    if (n == -EFAULT) note_guest_memory_fault();  // the guest's pages went away
    if (n < 0) return verdict::reset;
    written = static_cast<std::size_t>(n);
    fwd_cnt_ += static_cast<std::uint32_t>(written);
  }
  if (written < len) keep_payload(packet, written);
  consider_credit_update();
  return verdict::keep;
}

void vsock_connection::keep_payload(const parsed_packet& packet, std::size_t skip) {
  // Compact first so the buffer never grows past buf_alloc.
  if (pending_head_ > 0) {
    pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(pending_head_));
    pending_head_ = 0;
  }
  for (const auto& s : packet.payload) {
    if (skip >= s.size()) {
      skip -= s.size();
      continue;
    }
    // Grow first, then copy with the guard: the guest's pages may vanish.
    const std::size_t at = pending_.size();
    pending_.resize(at + (s.size() - skip));
    (void)guarded_copy(pending_.data() + at, s.data() + skip, s.size() - skip);
    skip = 0;
  }
}

vsock_connection::verdict vsock_connection::on_message_fragment(const parsed_packet& packet) {
  const std::size_t len = packet.payload_size();
  // Linux never sends a message over our buf_alloc, and never more than the
  // credit we gave: both are this one check.
  if (buffered_bytes() + len > buf_alloc_) return verdict::reset;
  rx_cnt_ += static_cast<std::uint32_t>(len);
  const bool last = (packet.header.flags & vsock_seq_eom) != 0;
  const bool eor = last && (packet.header.flags & vsock_seq_eor) != 0;
  if (last && buffered_bytes() == 0 && packet.payload.size() <= IOV_MAX) {
    // A whole message in one packet with nothing before it: straight from
    // guest memory to the host, or kept whole if the host is not ready.
    std::vector<iovec> iov;
    iov.reserve(packet.payload.size());
    for (const auto& s : packet.payload)
      iov.push_back({const_cast<std::byte*>(s.data()), s.size()});
    const int sent = send_message(fd_.get(), iov, eor);
    if (sent == -EFAULT) note_guest_memory_fault();  // the guest's pages went away
    if (sent < 0) return verdict::reset;
    if (sent == 1) {
      fwd_cnt_ += static_cast<std::uint32_t>(len);
      consider_credit_update();
      return verdict::keep;
    }
  }
  keep_payload(packet, 0);
  partial_ += len;
  if (last) {
    messages_.push_back({partial_, eor});
    partial_ = 0;
    if (!flush()) return verdict::reset;
  }
  consider_credit_update();
  return verdict::keep;
}

bool vsock_connection::flush() {
  if (seqpacket()) {
    while (!messages_.empty()) {
      const gathered m = messages_.front();
      iovec iov{pending_.data() + pending_head_, m.size};
      const int sent = send_message(fd_.get(), std::span(&iov, 1), m.eor);
      if (sent < 0) return false;
      if (sent == 0) return true;
      pending_head_ += m.size;
      fwd_cnt_ += static_cast<std::uint32_t>(m.size);
      messages_.pop_front();
    }
    if (buffered_bytes() == 0) {
      pending_.clear();
      pending_head_ = 0;
    }
    return true;
  }
  while (buffered_bytes() > 0) {
    iovec iov{pending_.data() + pending_head_, buffered_bytes()};
    const ssize_t n = send_iov(fd_.get(), &iov, 1);
    if (n < 0) return false;
    if (n == 0) break;
    pending_head_ += static_cast<std::size_t>(n);
    fwd_cnt_ += static_cast<std::uint32_t>(n);
  }
  if (buffered_bytes() == 0) {
    pending_.clear();
    pending_head_ = 0;
  }
  return true;
}

vsock_connection::verdict vsock_connection::on_host_writable() {
  if (state_ == state::connecting) return verdict::keep;
  const bool ok = flush();
  if (state_ == state::draining)
    return !ok || buffered_bytes() == 0 ? verdict::finished : verdict::keep;
  if (!ok) return verdict::reset;
  consider_credit_update();
  maybe_shut_write();
  return both_directions_done() ? verdict::finished : verdict::keep;
}

void vsock_connection::maybe_shut_write() {
  if (guest_send_closed_ && !write_shut_ && buffered_bytes() == 0) {
    ::shutdown(fd_.get(), SHUT_WR);
    write_shut_ = true;
  }
}

void vsock_connection::consider_credit_update() {
  if (state_ != state::established || guest_send_closed_) return;
  const std::uint32_t unadvertised = fwd_cnt_ - last_adv_fwd_;
  if (unadvertised == 0) return;
  // What the guest believes it may still send.
  const std::uint32_t guest_view = buf_alloc_ - (rx_cnt_ - last_adv_fwd_);
  if (unadvertised >= buf_alloc_ / 4 || guest_view < settings_.max_payload)
    need_credit_update_ = true;
}

bool vsock_connection::read_host_message(rx_fill& r) {
  // Its size first (MSG_TRUNC with MSG_PEEK gives the whole length), then the
  // message itself into a buffer of that size.
  host_message peeked = receive_host_message(fd_.get(), nullptr, 0, MSG_PEEK | MSG_TRUNC);
  if (peeked.length >= 0 && peeked.length == 0 && !peeked.credentials) {
    host_eof_ = true;  // no credentials: the end, not an empty message
    return true;
  }
  if (peeked.length > 0) {
    if (static_cast<std::uint64_t>(peeked.length) > peer_buf_alloc_) {
      // A Linux guest waits for a whole message in its buffer: this one never fits.
      r.next = verdict::reset;
      return true;
    }
    out_.resize(static_cast<std::size_t>(peeked.length));
  } else {
    out_.clear();
  }
  host_message m = peeked;
  if (peeked.length >= 0) {
    iovec iov{out_.data(), out_.size()};
    m = receive_host_message(fd_.get(), &iov, 1, 0);
  }
  if (m.length < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      r.would_block = true;
      return false;
    }
    r.next = verdict::reset;
    return true;
  }
  if (m.length == 0 && !m.credentials) {  // the end came between peek and read
    host_eof_ = true;
    return true;
  }
  out_.resize(static_cast<std::size_t>(m.length));
  out_sent_ = 0;
  out_active_ = true;
  return true;
}

vsock_connection::rx_fill vsock_connection::fill_rx_message(const descriptor_chain& chain) {
  rx_fill r;
  if (!out_active_ && (!read_host_message(r) || r.next != verdict::keep)) return r;
  virtio_vsock_hdr h;
  if (!out_active_) {  // the host's end
    h = header(vsock_op::shutdown);
    h.flags = vsock_shutdown_send;
    auto used = write_packet(chain, h, {});
    r.used = used ? *used : 0;
    if (!used) r.next = verdict::reset;
    if (both_directions_done()) r.next = verdict::finished;
    return r;
  }
  const std::size_t left = out_.size() - out_sent_;
  const std::size_t n = std::min<std::size_t>(
      {left, payload_capacity(chain), std::size_t{peer_credit()}, settings_.max_payload});
  if (n == 0 && left > 0) return r;  // no credit yet: the guest's CREDIT_UPDATE resumes
  h = header(vsock_op::rw);
  if (n == left) h.flags = vsock_seq_eom | vsock_seq_eor;
  auto used = write_packet(chain, h, std::span<const std::byte>(out_.data() + out_sent_, n));
  if (!used) {  // cannot happen: n fits the chain
    r.next = verdict::reset;
    return r;
  }
  r.used = *used;
  tx_cnt_ += static_cast<std::uint32_t>(n);
  out_sent_ += n;
  if (out_sent_ == out_.size()) {
    out_active_ = false;
    out_ = {};  // a big message's buffer is not kept for the next one
  }
  return r;
}

vsock_connection::rx_fill vsock_connection::fill_rx(const descriptor_chain& chain) {
  rx_fill r;
  if (!wants_read()) return r;
  if (seqpacket()) return fill_rx_message(chain);
  const std::size_t cap = std::min<std::size_t>(
      {payload_capacity(chain), std::size_t{peer_credit()}, settings_.max_payload});
  if (cap == 0) return r;
  const auto bufs = payload_buffers(chain, cap);
  std::vector<iovec> iov;
  iov.reserve(std::min<std::size_t>(bufs.size(), IOV_MAX));
  for (const auto& b : bufs) {
    if (iov.size() == IOV_MAX) break;
    iov.push_back({b.data(), b.size()});
  }
  msghdr msg{};
  msg.msg_iov = iov.data();
  msg.msg_iovlen = iov.size();
  ssize_t n;
  do {
    n = ::recvmsg(fd_.get(), &msg, MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      r.would_block = true;
      return r;
    }
    if (errno == EFAULT) note_guest_memory_fault();  // the guest's pages went away
    r.next = verdict::reset;
    return r;
  }
  virtio_vsock_hdr h;
  if (n == 0) {
    host_eof_ = true;
    h = header(vsock_op::shutdown);
    h.flags = vsock_shutdown_send;
  } else {
    h = header(vsock_op::rw);
    h.len = static_cast<std::uint32_t>(n);
    tx_cnt_ += static_cast<std::uint32_t>(n);
  }
  auto used = write_header(chain, h);
  if (!used) {  // cannot happen: cap fits the chain
    r.next = verdict::reset;
    return r;
  }
  r.used = *used;
  if (both_directions_done()) r.next = verdict::finished;
  return r;
}

}  // namespace hvsock::virtio
