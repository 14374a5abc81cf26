// vsock_device: the virtio-vsock device between a guest (played by the fake
// driver plus a small guest "kernel" that keeps per-socket credit like
// Linux's virtio transport) and host streams (socketpairs standing in for
// the daemon's host ends), driven by a poll() loop standing in for hvsockd's
// event loop. No AF_VSOCK socket is ever opened.
#include "virtio/vsock_device.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "fake_driver.hpp"

#include "fnv1a.h"

namespace hvsock::virtio {
namespace {

using testing::buffer;
using testing::fake_driver;

constexpr std::uint64_t guest_cid = 3;
constexpr std::uint16_t op(vsock_op o) { return static_cast<std::uint16_t>(o); }

using checksum = fnv_checksum;

std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
  std::vector<std::byte> v(n);
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& b : v) {
    x = x * 1664525u + 1013904223u;
    b = static_cast<std::byte>(x >> 24);
  }
  return v;
}

// The daemon's event loop, as poll(): level-triggered, handlers may unwatch.
class poll_watcher final : public fd_watcher {
 public:
  result<watch_id> watch(int fd, std::uint32_t events, handler on_event) override {
    const watch_id id = next_++;
    watches_[id] = {fd, events, std::make_shared<handler>(std::move(on_event))};
    return id;
  }
  result<void> modify(watch_id id, std::uint32_t events) override {
    watches_.at(id).events = events;
    return {};
  }
  void unwatch(watch_id id) override { EXPECT_EQ(watches_.erase(id), 1u); }

  // One poll() over every watched fd and a dispatch; returns the handlers run.
  int run_once(int timeout_ms = 0) {
    std::vector<pollfd> fds;
    std::vector<watch_id> ids;
    for (const auto& [id, w] : watches_) {
      fds.push_back({w.fd, static_cast<short>(w.events), 0});
      ids.push_back(id);
    }
    if (fds.empty()) return 0;
    const int n = ::poll(fds.data(), fds.size(), timeout_ms);
    EXPECT_GE(n, 0);
    int ran = 0;
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      const auto it = watches_.find(ids[i]);
      if (it == watches_.end()) continue;  // unwatched by an earlier handler
      const auto h = it->second.on_event;
      (*h)(static_cast<std::uint16_t>(fds[i].revents));
      ++ran;
    }
    return ran;
  }
  std::size_t count() const { return watches_.size(); }
  bool watching(int fd, std::uint32_t events) const {
    for (const auto& [id, w] : watches_)
      if (w.fd == fd && (w.events & events) == events) return true;
    return false;
  }

 private:
  struct watched {
    int fd;
    std::uint32_t events;
    std::shared_ptr<handler> on_event;
  };
  std::map<watch_id, watched> watches_;
  watch_id next_ = 1;
};

// The daemon's side: every accepted guest REQUEST gets a socketpair; the test
// keeps the far end (the "host application").
class fake_host final : public vsock_host_side {
 public:
  result<unique_fd> open_to_host(std::uint32_t dst_port, std::uint32_t src_port,
                                 vsock_type type) override {
    ++calls;
    if (!listening.contains(dst_port))
      return failure(errc::connection_refused, "no listener on " + std::to_string(dst_port));
    const bool messages = seqpacket_listening.contains(dst_port);
    if (messages != (type == vsock_type::seqpacket))
      return failure(errc::connection_refused,
                     "another socket type listens on " + std::to_string(dst_port));
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX,
                           (messages ? SOCK_SEQPACKET : SOCK_STREAM) | SOCK_CLOEXEC | SOCK_NONBLOCK,
                           0, sv),
              0);
    if (device_sndbuf) ::setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &device_sndbuf, sizeof(int));
    apps[{dst_port, src_port}] = unique_fd(sv[1]);
    return unique_fd(sv[0]);
  }
  std::set<std::uint32_t> listening;
  std::set<std::uint32_t> seqpacket_listening;  // of those, the SEQPACKET ones
  std::map<std::pair<std::uint32_t, std::uint32_t>, unique_fd> apps;  // (host port, guest port)
  int calls = 0;
  int device_sndbuf = 0;
};

struct received_packet {
  virtio_vsock_hdr hdr;
  std::vector<std::byte> payload;
};

// The guest's two queues over two fake drivers, with fixed buffer pools.
class fake_guest {
 public:
  static constexpr std::uint32_t rx_buf_size = 4096;
  static constexpr std::size_t tx_slots = 32;
  static constexpr std::size_t tx_slot_size = vsock_header_size + 65536;

  fake_guest() : rx_(256), tx_(256) {
    for (std::size_t i = 0; i < 256; ++i) rx_free_.push_back(rx_.alloc(rx_buf_size));
    for (std::size_t i = 0; i < tx_slots; ++i) tx_free_.push_back(tx_.alloc(tx_slot_size));
  }

  void attach(vsock_device& dev) {
    dev_ = &dev;
    ASSERT_TRUE(dev.start_queue(vsock_tx_queue, tx_.make_queue()));
    ASSERT_TRUE(dev.start_queue(vsock_rx_queue, rx_.make_queue()));
  }

  // Posts up to `n` receive buffers and kicks.
  void post_rx(std::size_t n = 256) {
    for (; n > 0 && !rx_free_.empty(); --n) {
      const auto gpa = rx_free_.back();
      rx_free_.pop_back();
      rx_heads_[rx_.add_chain({{gpa, rx_buf_size, true}})] = gpa;
    }
    ASSERT_TRUE(dev_->on_rx_kick());
  }
  std::size_t rx_posted() const { return rx_heads_.size(); }

  // Packets the device placed in receive buffers since the last call; their
  // buffers are reposted when `repost`.
  std::vector<received_packet> receive(bool repost = true) {
    std::vector<received_packet> out;
    std::vector<std::pair<std::uint32_t, std::uint32_t>> used;
    for (; rx_last_ != rx_.used_idx(); ++rx_last_) used.push_back(rx_.used_elem(rx_last_));
    rx_.reap();
    for (const auto& [id, len] : used) {
      const auto gpa = rx_heads_.at(static_cast<std::uint16_t>(id));
      rx_heads_.erase(static_cast<std::uint16_t>(id));
      rx_free_.push_back(gpa);
      EXPECT_GE(len, vsock_header_size);
      if (len < vsock_header_size) continue;
      received_packet p;
      p.hdr = decode_header(
          std::span<const std::byte, vsock_header_size>(rx_.bytes(gpa, vsock_header_size)));
      EXPECT_EQ(len, vsock_header_size + p.hdr.len);
      const auto pl = rx_.bytes(gpa + vsock_header_size, p.hdr.len);
      p.payload.assign(pl.begin(), pl.end());
      out.push_back(std::move(p));
    }
    if (repost && !used.empty()) post_rx(used.size());
    return out;
  }

  // Sends one packet (header and payload in separate descriptors) and kicks.
  void send(virtio_vsock_hdr h, std::span<const std::byte> payload = {}) {
    reclaim_tx();
    ASSERT_FALSE(tx_free_.empty());
    ASSERT_LE(payload.size(), tx_slot_size - vsock_header_size);
    const auto gpa = tx_free_.back();
    tx_free_.pop_back();
    h.len = static_cast<std::uint32_t>(payload.size());
    const auto hb = encode_header(h);
    tx_.fill(gpa, hb);
    std::vector<buffer> bufs{{gpa, static_cast<std::uint32_t>(vsock_header_size), false}};
    if (!payload.empty()) {
      tx_.fill(gpa + vsock_header_size, payload);
      bufs.push_back({gpa + vsock_header_size, static_cast<std::uint32_t>(payload.size()), false});
    }
    tx_heads_[tx_.add_chain(bufs)] = gpa;
    ASSERT_TRUE(dev_->on_tx_kick());
    reclaim_tx();
  }
  std::size_t tx_in_flight() const { return tx_heads_.size(); }

  fake_driver& rx_driver() { return rx_; }
  fake_driver& tx_driver() { return tx_; }

 private:
  void reclaim_tx() {
    for (; tx_last_ != tx_.used_idx(); ++tx_last_) {
      const auto id = static_cast<std::uint16_t>(tx_.used_elem(tx_last_).first);
      tx_free_.push_back(tx_heads_.at(id));
      tx_heads_.erase(id);
    }
    tx_.reap();
  }

  vsock_device* dev_ = nullptr;
  fake_driver rx_, tx_;
  std::vector<std::uint64_t> rx_free_, tx_free_;
  std::map<std::uint16_t, std::uint64_t> rx_heads_, tx_heads_;
  std::uint16_t rx_last_ = 0, tx_last_ = 0;
};

// A guest socket as Linux's virtio transport keeps it.
struct guest_socket {
  std::uint32_t port = 0;       // guest side
  std::uint32_t host_port = 0;  // CID 2 side
  bool connected = false, reset = false, peer_shut_send = false, peer_shut_rcv = false;
  std::uint32_t buf_alloc = 256 * 1024;
  std::uint32_t rx_cnt = 0, fwd_cnt = 0, last_adv = 0;
  std::uint32_t peer_buf_alloc = 0, peer_fwd_cnt = 0, tx_cnt = 0;
  bool hold = false;  // do not consume received data (a slow reader)
  checksum got;
  std::size_t unread = 0;
  vsock_type type = vsock_type::stream;
  // SEQPACKET: fragments gathered until EOM, then a message; EOR seen.
  std::vector<std::byte> partial;
  std::vector<std::vector<std::byte>> messages;
  std::size_t eor_marks = 0;
  std::uint32_t credit() const {
    const std::uint32_t in_flight = tx_cnt - peer_fwd_cnt;
    return in_flight >= peer_buf_alloc ? 0 : peer_buf_alloc - in_flight;
  }
};

// The guest kernel: dispatches received packets to sockets, answers like
// Linux, returns credit as the "application" reads.
class guest_stack {
 public:
  explicit guest_stack(fake_guest& g) : g_(g) {}

  virtio_vsock_hdr header(const guest_socket& s, vsock_op o, std::uint32_t flags = 0) {
    virtio_vsock_hdr h;
    h.src_cid = guest_cid;
    h.dst_cid = vmaddr_cid_host;
    h.src_port = s.port;
    h.dst_port = s.host_port;
    h.type = static_cast<std::uint16_t>(s.type);
    h.op = op(o);
    h.flags = flags;
    h.buf_alloc = s.buf_alloc;
    h.fwd_cnt = s.fwd_cnt;
    return h;
  }

  guest_socket& connect(std::uint32_t host_port, vsock_type type = vsock_type::stream,
                        std::uint32_t buf_alloc = 256 * 1024) {
    const std::uint32_t port = next_port_++;
    auto& s = sockets_[{port, host_port}];
    s.port = port;
    s.host_port = host_port;
    s.type = type;
    s.buf_alloc = buf_alloc;
    g_.send(header(s, vsock_op::request));
    return s;
  }
  guest_socket* find(std::uint32_t port, std::uint32_t host_port) {
    const auto it = sockets_.find({port, host_port});
    return it == sockets_.end() ? nullptr : &it->second;
  }

  // Sends as much of `data` as the credit allows; returns the bytes sent.
  std::size_t send(guest_socket& s, std::span<const std::byte> data, bool respect_credit = true) {
    std::size_t sent = 0;
    while (sent < data.size()) {
      std::size_t n = std::min<std::size_t>(data.size() - sent, 65536);
      if (respect_credit) n = std::min<std::size_t>(n, s.credit());
      if (n == 0) break;
      auto h = header(s, vsock_op::rw);
      g_.send(h, data.subspan(sent, n));
      s.tx_cnt += static_cast<std::uint32_t>(n);
      sent += n;
      s.last_adv = s.fwd_cnt;
      if (s.reset) break;
      receive();
    }
    return sent;
  }
  // Sends what the credit allows of message `data`, from byte `at`, as Linux
  // fragments it (at most 64 KiB a packet, EOM on the last); returns the
  // bytes sent. An empty message is one packet.
  std::size_t send_message(guest_socket& s, std::span<const std::byte> data, std::size_t at,
                           bool eor = true) {
    const std::size_t start = at;
    do {
      const std::size_t n = std::min<std::size_t>({data.size() - at, 65536, s.credit()});
      if (n == 0 && !data.empty()) break;
      const bool last = at + n == data.size();
      g_.send(header(s, vsock_op::rw, last ? vsock_seq_eom | (eor ? vsock_seq_eor : 0) : 0),
              data.subspan(at, n));
      s.tx_cnt += static_cast<std::uint32_t>(n);
      at += n;
      s.last_adv = s.fwd_cnt;
      if (s.reset) break;
      receive();
    } while (at < data.size());
    return at - start;
  }
  void shutdown(guest_socket& s, std::uint32_t flags) {
    g_.send(header(s, vsock_op::shutdown, flags));
  }

  // The application reads what is queued on `s`: credit goes back.
  void consume(guest_socket& s) {
    s.fwd_cnt += static_cast<std::uint32_t>(s.unread);
    s.unread = 0;
    if (s.fwd_cnt != s.last_adv &&
        s.fwd_cnt - s.last_adv >= std::min<std::uint32_t>(65536, s.buf_alloc / 4)) {
      s.last_adv = s.fwd_cnt;
      g_.send(header(s, vsock_op::credit_update));
    }
  }

  // Processes every packet the device delivered.
  void receive() {
    for (auto& p : g_.receive()) {
      log.push_back(p);
      dispatch(p);
    }
  }

  std::set<std::uint32_t> listening;
  std::vector<received_packet> log;
  int rst_for_unknown = 0;
  int credit_violations = 0;

 private:
  void dispatch(const received_packet& p) {
    const auto& h = p.hdr;
    EXPECT_EQ(h.src_cid, vmaddr_cid_host);
    EXPECT_EQ(h.dst_cid, guest_cid);
    const std::pair<std::uint32_t, std::uint32_t> key{h.dst_port, h.src_port};
    auto it = sockets_.find(key);
    if (it == sockets_.end()) {
      if (h.op == op(vsock_op::request) && listening.contains(h.dst_port)) {
        auto& s = sockets_[key];
        s.port = h.dst_port;
        s.host_port = h.src_port;
        s.type = static_cast<vsock_type>(h.type);
        s.connected = true;
        s.peer_buf_alloc = h.buf_alloc;
        s.peer_fwd_cnt = h.fwd_cnt;
        g_.send(header(s, vsock_op::response));
      } else if (h.op != op(vsock_op::rst)) {
        guest_socket tmp;
        tmp.port = h.dst_port;
        tmp.host_port = h.src_port;
        g_.send(header(tmp, vsock_op::rst));
      } else {
        ++rst_for_unknown;
      }
      return;
    }
    guest_socket& s = it->second;
    // As Linux: a packet of another type than its socket's is not the
    // socket's business (virtio_transport_recv_pkt resets nothing for it).
    if (h.type != static_cast<std::uint16_t>(s.type)) return;
    s.peer_buf_alloc = h.buf_alloc;
    s.peer_fwd_cnt = h.fwd_cnt;
    switch (static_cast<vsock_op>(h.op)) {
      case vsock_op::response: s.connected = true; break;
      case vsock_op::rst: s.reset = true; break;
      case vsock_op::shutdown:
        if (h.flags & vsock_shutdown_send) s.peer_shut_send = true;
        if (h.flags & vsock_shutdown_rcv) s.peer_shut_rcv = true;
        break;
      case vsock_op::rw:
        s.rx_cnt += h.len;
        s.unread += h.len;
        if (s.rx_cnt - s.fwd_cnt > s.buf_alloc) ++credit_violations;
        s.got.add(p.payload);
        if (s.type == vsock_type::seqpacket) {
          s.partial.insert(s.partial.end(), p.payload.begin(), p.payload.end());
          if (h.flags & vsock_seq_eom) {
            s.messages.push_back(std::move(s.partial));
            s.partial.clear();
            if (h.flags & vsock_seq_eor) ++s.eor_marks;
          }
        }
        if (!s.hold) consume(s);
        break;
      case vsock_op::credit_request: g_.send(header(s, vsock_op::credit_update)); break;
      default: break;
    }
  }

  fake_guest& g_;
  std::map<std::pair<std::uint32_t, std::uint32_t>, guest_socket> sockets_;
  std::uint32_t next_port_ = 1024;
};

// Reads what is available on a non-blocking host end. Returns false at EOF.
bool host_read(int fd, checksum& sum, int* error = nullptr) {
  std::byte buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      sum.add({buf, static_cast<std::size_t>(n)});
      continue;
    }
    if (n == 0) return false;
    if (errno == EAGAIN) return true;
    if (error) *error = errno;
    return false;
  }
}

// Writes what fits of data[at..] to a non-blocking host end.
std::size_t host_write(int fd, std::span<const std::byte> data, std::size_t at) {
  while (at < data.size()) {
    const ssize_t n = ::send(fd, data.data() + at, data.size() - at, MSG_NOSIGNAL);
    if (n <= 0) break;
    at += static_cast<std::size_t>(n);
  }
  return at;
}

class VsockDevice : public ::testing::Test {
 protected:
  void SetUp() override { make_device({}); }

  void make_device(vsock_device_options opts) {
    opts.guest_cid = guest_cid;
    stack_.reset();
    dev_.reset();
    guest_ = std::make_unique<fake_guest>();
    dev_ = std::make_unique<vsock_device>(opts, host_, loop_,
                                          [this](std::uint16_t q) { ++notified_[q]; });
    guest_->attach(*dev_);
    stack_ = std::make_unique<guest_stack>(*guest_);
    guest_->post_rx();
  }

  // Runs the loop and the guest until `done` or `rounds` rounds pass.
  bool run_until(const std::function<bool()>& done, int rounds = 20000) {
    for (int i = 0; i < rounds; ++i) {
      if (done()) return true;
      loop_.run_once(0);
      stack_->receive();
    }
    return done();
  }
  void settle(int rounds = 20) {
    for (int i = 0; i < rounds; ++i) {
      loop_.run_once(0);
      stack_->receive();
    }
  }

  // A guest connection to listening host port `port`, established.
  guest_socket& open(std::uint32_t port) {
    host_.listening.insert(port);
    auto& s = stack_->connect(port);
    stack_->receive();
    EXPECT_TRUE(s.connected);
    return s;
  }
  int app(const guest_socket& s) { return host_.apps.at({s.host_port, s.port}).get(); }

  fake_host host_;
  poll_watcher loop_;
  std::unique_ptr<fake_guest> guest_;
  std::unique_ptr<vsock_device> dev_;
  std::unique_ptr<guest_stack> stack_;
  std::map<std::uint16_t, int> notified_;
};

virtio_vsock_hdr raw_header(vsock_op o, std::uint32_t src_port, std::uint32_t dst_port) {
  virtio_vsock_hdr h;
  h.src_cid = guest_cid;
  h.dst_cid = vmaddr_cid_host;
  h.src_port = src_port;
  h.dst_port = dst_port;
  h.type = static_cast<std::uint16_t>(vsock_type::stream);
  h.op = op(o);
  h.buf_alloc = 65536;
  return h;
}

TEST_F(VsockDevice, GuestRequestToListeningHostPortGetsResponse) {
  host_.listening.insert(2761);
  auto& s = stack_->connect(2761);
  stack_->receive();
  EXPECT_TRUE(s.connected);
  EXPECT_FALSE(s.reset);
  ASSERT_EQ(stack_->log.size(), 1u);
  const auto& r = stack_->log[0].hdr;
  EXPECT_EQ(r.op, op(vsock_op::response));
  EXPECT_EQ(r.src_port, 2761u);
  EXPECT_EQ(r.dst_port, s.port);
  EXPECT_EQ(r.buf_alloc, 256u * 1024);
  EXPECT_EQ(r.fwd_cnt, 0u);
  EXPECT_EQ(dev_->connection_count(), 1u);
  EXPECT_EQ(host_.apps.size(), 1u);
  EXPECT_GT(notified_[vsock_rx_queue], 0);
  EXPECT_GT(notified_[vsock_tx_queue], 0);
}

TEST_F(VsockDevice, RefusedRequestIsAnsweredWithRst) {
  auto& s = stack_->connect(9999);  // nobody listens
  stack_->receive();
  EXPECT_TRUE(s.reset);
  EXPECT_FALSE(s.connected);
  ASSERT_EQ(stack_->log.size(), 1u);
  EXPECT_EQ(stack_->log[0].hdr.op, op(vsock_op::rst));
  EXPECT_EQ(stack_->log[0].hdr.src_port, 9999u);
  EXPECT_EQ(stack_->log[0].hdr.dst_port, s.port);
  EXPECT_EQ(dev_->connection_count(), 0u);
  EXPECT_EQ(dev_->stats().connections_refused, 1u);
}

TEST_F(VsockDevice, MisaddressedPacketsAreDroppedWithoutAnswer) {
  host_.listening.insert(2761);
  auto h = raw_header(vsock_op::request, 1024, 2761);
  h.dst_cid = 5;  // another VM
  guest_->send(h);
  h.dst_cid = vmaddr_cid_host;
  h.src_cid = 7;  // not this guest
  guest_->send(h);
  h.src_cid = guest_cid;
  h.dst_cid = vmaddr_cid_local;
  guest_->send(h);
  settle();
  EXPECT_TRUE(stack_->log.empty());
  EXPECT_EQ(host_.calls, 0);
  EXPECT_EQ(dev_->stats().packets_dropped, 3u);
  EXPECT_EQ(guest_->tx_in_flight(), 0u);  // the tx buffers came back all the same
}

TEST_F(VsockDevice, UnknownOpsTypesAndConnectionsGetRst) {
  auto h = raw_header(vsock_op::rw, 1024, 2761);
  h.op = 99;
  guest_->send(h);  // unknown op
  h = raw_header(vsock_op::request, 1025, 2761);
  h.type = 3;       // neither STREAM nor SEQPACKET
  guest_->send(h);  // unsupported type
  guest_->send(raw_header(vsock_op::rw, 1026, 2761), pattern(10, 1));  // no such connection
  guest_->send(raw_header(vsock_op::shutdown, 1027, 2761));
  guest_->send(raw_header(vsock_op::credit_request, 1028, 2761));
  guest_->send(raw_header(vsock_op::rst, 1029, 2761));  // never answered
  h = raw_header(vsock_op::rst, 1030, 2761);
  h.type = 7;
  guest_->send(h);  // an RST of an unknown type: not answered either
  settle();
  std::vector<std::uint32_t> answered;
  for (const auto& p : stack_->log) {
    EXPECT_EQ(p.hdr.op, op(vsock_op::rst));
    EXPECT_EQ(p.hdr.src_port, 2761u);
    answered.push_back(p.hdr.dst_port);
  }
  EXPECT_EQ(answered, (std::vector<std::uint32_t>{1024, 1025, 1026, 1027, 1028}));
  EXPECT_EQ(stack_->log[1].hdr.type, 3u);  // the RST echoes the type
  EXPECT_EQ(dev_->connection_count(), 0u);
}

TEST_F(VsockDevice, MalformedPacketIsDropped) {
  // A payload on a non-RW packet: framing the device cannot trust.
  guest_->send(raw_header(vsock_op::shutdown, 1024, 2761), pattern(5, 1));
  settle();
  EXPECT_TRUE(stack_->log.empty());
  EXPECT_EQ(dev_->stats().packets_dropped, 1u);
  EXPECT_EQ(guest_->tx_in_flight(), 0u);
}

TEST_F(VsockDevice, RequestForLiveConnectionResetsIt) {
  auto& s = open(2761);
  const int fd = app(s);
  guest_->send(stack_->header(s, vsock_op::request));
  stack_->receive();
  EXPECT_TRUE(s.reset);
  EXPECT_EQ(dev_->connection_count(), 0u);
  checksum c;
  EXPECT_FALSE(host_read(fd, c));  // host end closed
}

TEST_F(VsockDevice, DataBothWaysWithChecksums) {
  auto& s = open(2761);
  const int fd = app(s);
  const auto up = pattern(3 << 20, 7);    // guest -> host
  const auto down = pattern(3 << 20, 8);  // host -> guest
  checksum want_up, want_down, got_up;
  want_up.add(up);
  want_down.add(down);
  std::size_t sent_up = 0, sent_down = 0;
  ASSERT_TRUE(run_until([&] {
    sent_up += stack_->send(s, std::span(up).subspan(sent_up));
    sent_down = host_write(fd, down, sent_down);
    host_read(fd, got_up);
    return got_up.n == up.size() && s.got.n == down.size();
  }));
  EXPECT_EQ(got_up, want_up);
  EXPECT_EQ(s.got, want_down);
  EXPECT_FALSE(s.reset);
  EXPECT_EQ(stack_->credit_violations, 0);
}

TEST_F(VsockDevice, DeviceRespectsGuestCredit) {
  auto& s = open(2761);
  s.hold = true;
  s.buf_alloc = 10000;
  guest_->send(stack_->header(s, vsock_op::credit_update));  // tell the device
  const int fd = app(s);
  const auto down = pattern(100000, 3);
  host_write(fd, down, 0);
  settle(50);
  EXPECT_EQ(s.got.n, 10000u);  // exactly the credit, not a byte more
  EXPECT_EQ(stack_->credit_violations, 0);
  // The application reads: credit returns, the rest flows.
  s.hold = false;
  ASSERT_TRUE(run_until([&] {
    stack_->consume(s);
    return s.got.n == down.size();
  }));
  checksum want;
  want.add(down);
  EXPECT_EQ(s.got, want);
  EXPECT_EQ(stack_->credit_violations, 0);
}

TEST_F(VsockDevice, GuestThatRespectsCreditIsNeverResetByASlowHost) {
  host_.device_sndbuf = 4096;
  auto& s = open(2761);
  const int fd = app(s);
  const auto up = pattern(2 << 20, 9);
  std::size_t sent = 0;
  // The host application does not read: the guest runs out of credit.
  for (int i = 0; i < 50; ++i) {
    sent += stack_->send(s, std::span(up).subspan(sent));
    settle(2);
  }
  EXPECT_LT(sent, up.size());
  EXPECT_GE(sent, 256u * 1024);
  EXPECT_FALSE(s.reset);
  checksum got, want;
  want.add(up);
  ASSERT_TRUE(run_until([&] {
    sent += stack_->send(s, std::span(up).subspan(sent));
    host_read(fd, got);
    return got.n == up.size();
  }));
  EXPECT_EQ(got, want);
  EXPECT_FALSE(s.reset);
}

TEST_F(VsockDevice, GuestIgnoringCreditIsReset) {
  host_.device_sndbuf = 4096;
  auto& s = open(2761);
  const int fd = app(s);
  const auto chunk = pattern(65536, 4);
  int packets = 0;
  while (!s.reset && packets < 40) {
    stack_->send(s, chunk, /*respect_credit=*/false);
    ++packets;
  }
  EXPECT_TRUE(s.reset);
  EXPECT_LE(packets, 8);  // 256 KiB of credit + what the socket took
  EXPECT_EQ(dev_->connection_count(), 0u);
  checksum c;
  while (host_read(fd, c)) {
  }
  EXPECT_LE(c.n, 256u * 1024 + 65536);
}

TEST_F(VsockDevice, CreditRequestIsAnswered) {
  auto& s = open(2761);
  const auto before = stack_->log.size();
  guest_->send(stack_->header(s, vsock_op::credit_request));
  stack_->receive();
  ASSERT_EQ(stack_->log.size(), before + 1);
  EXPECT_EQ(stack_->log.back().hdr.op, op(vsock_op::credit_update));
  EXPECT_EQ(stack_->log.back().hdr.buf_alloc, 256u * 1024);
}

TEST_F(VsockDevice, GuestHalfCloseThenHostHalfClose) {
  auto& s = open(2761);
  const int fd = app(s);
  const auto up = pattern(100000, 5);
  ASSERT_EQ(stack_->send(s, up), up.size());
  stack_->shutdown(s, vsock_shutdown_send);
  checksum got;
  ASSERT_TRUE(run_until([&] { return !host_read(fd, got); }));  // data, then EOF
  EXPECT_EQ(got.n, up.size());
  // The other direction still works.
  const auto down = pattern(50000, 6);
  ASSERT_EQ(host_write(fd, down, 0), down.size());
  ASSERT_TRUE(run_until([&] { return s.got.n == down.size(); }));
  EXPECT_EQ(dev_->connection_count(), 1u);
  ::shutdown(fd, SHUT_WR);
  ASSERT_TRUE(run_until([&] { return s.peer_shut_send; }));
  EXPECT_FALSE(s.reset);
  EXPECT_EQ(dev_->connection_count(), 0u);  // both directions done
  // The guest's close() then sends SHUTDOWN(both) and waits for an RST.
  stack_->shutdown(s, vsock_shutdown_send | vsock_shutdown_rcv);
  stack_->receive();
  EXPECT_TRUE(s.reset);
}

TEST_F(VsockDevice, HostHalfCloseThenGuestHalfClose) {
  auto& s = open(2761);
  const int fd = app(s);
  const auto down = pattern(300000, 11);
  std::size_t at = 0;
  ASSERT_TRUE(run_until([&] {
    at = host_write(fd, down, at);
    return at == down.size();
  }));
  ::shutdown(fd, SHUT_WR);
  ASSERT_TRUE(run_until([&] { return s.peer_shut_send; }));
  EXPECT_EQ(s.got.n, down.size());  // SHUTDOWN came after all the data
  const auto up = pattern(70000, 12);
  ASSERT_EQ(stack_->send(s, up), up.size());
  checksum got;
  ASSERT_TRUE(run_until([&] {
    host_read(fd, got);
    return got.n == up.size();
  }));
  stack_->shutdown(s, vsock_shutdown_send);
  settle();
  EXPECT_FALSE(host_read(fd, got));  // EOF
  EXPECT_EQ(dev_->connection_count(), 0u);
}

TEST_F(VsockDevice, GuestCloseSendsRstAndStillDeliversBufferedData) {
  host_.device_sndbuf = 4096;
  auto& s = open(2761);
  const int fd = app(s);
  const auto up = pattern(200000, 13);
  ASSERT_EQ(stack_->send(s, up), up.size());  // most of it is buffered in the device
  stack_->shutdown(s, vsock_shutdown_send | vsock_shutdown_rcv);
  stack_->receive();
  EXPECT_TRUE(s.reset);                     // the guest may release its socket now
  EXPECT_EQ(dev_->connection_count(), 1u);  // draining
  checksum got, want;
  want.add(up);
  ASSERT_TRUE(run_until([&] { return !host_read(fd, got); }));
  EXPECT_EQ(got, want);
  EXPECT_EQ(dev_->connection_count(), 0u);
}

TEST_F(VsockDevice, GuestShutdownReceiveMakesHostWritesFail) {
  auto& s = open(2761);
  const int fd = app(s);
  stack_->shutdown(s, vsock_shutdown_rcv);
  settle();
  const char x = 'x';
  EXPECT_EQ(::send(fd, &x, 1, MSG_NOSIGNAL), -1);
  EXPECT_EQ(errno, EPIPE);
  // The guest can still send.
  const auto up = pattern(1000, 1);
  ASSERT_EQ(stack_->send(s, up), up.size());
  checksum got;
  ASSERT_TRUE(run_until([&] {
    host_read(fd, got);
    return got.n == up.size();
  }));
}

TEST_F(VsockDevice, GuestRstClosesHostEnd) {
  auto& s = open(2761);
  const int fd = app(s);
  guest_->send(stack_->header(s, vsock_op::rst));
  EXPECT_EQ(dev_->connection_count(), 0u);
  checksum c;
  EXPECT_FALSE(host_read(fd, c));
  EXPECT_EQ(loop_.count(), 0u);
}

TEST_F(VsockDevice, HostResetBecomesRst) {
  auto& s = open(2761);
  host_.apps.clear();  // the host application closes its end
  const auto up = pattern(1000, 1);
  stack_->send(s, up);
  stack_->receive();
  settle();
  EXPECT_TRUE(s.reset);
  EXPECT_EQ(dev_->connection_count(), 0u);
}

TEST_F(VsockDevice, HostInitiatedConnectAnsweredWithResponse) {
  stack_->listening.insert(5000);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
  unique_fd app_end(sv[1]);
  std::optional<result<std::uint32_t>> outcome;
  dev_->connect_to_guest(5000, unique_fd(sv[0]), vsock_type::stream,
                         [&](result<std::uint32_t> r) { outcome = r; });
  stack_->receive();
  ASSERT_TRUE(outcome.has_value());
  ASSERT_TRUE(*outcome);
  ASSERT_FALSE(stack_->log.empty());
  const auto& req = stack_->log[0].hdr;
  EXPECT_EQ(req.op, op(vsock_op::request));
  EXPECT_EQ(req.dst_port, 5000u);
  EXPECT_GE(req.src_port, 49152u);
  EXPECT_EQ(**outcome, req.src_port);  // the handler names the host-side port
  auto* s = stack_->find(5000, req.src_port);
  ASSERT_NE(s, nullptr);
  const auto down = pattern(500000, 21);
  const auto up = pattern(400000, 22);
  std::size_t at = 0, sent = 0;
  checksum got;
  ASSERT_TRUE(run_until([&] {
    at = host_write(app_end.get(), down, at);
    sent += stack_->send(*s, std::span(up).subspan(sent));
    host_read(app_end.get(), got);
    return s->got.n == down.size() && got.n == up.size();
  }));
  checksum want_up, want_down;
  want_up.add(up);
  want_down.add(down);
  EXPECT_EQ(got, want_up);
  EXPECT_EQ(s->got, want_down);
}

TEST_F(VsockDevice, HostInitiatedConnectRefusedWithRst) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
  unique_fd app_end(sv[1]);
  std::optional<result<std::uint32_t>> outcome;
  dev_->connect_to_guest(5001, unique_fd(sv[0]), vsock_type::stream,
                         [&](result<std::uint32_t> r) { outcome = r; });
  stack_->receive();  // nobody listens: the guest answers RST
  ASSERT_TRUE(outcome.has_value());
  ASSERT_FALSE(*outcome);
  EXPECT_EQ(outcome->error().code(), std::errc::connection_refused);
  EXPECT_EQ(dev_->connection_count(), 0u);
  checksum c;
  EXPECT_FALSE(host_read(app_end.get(), c));  // device end closed
}

TEST_F(VsockDevice, HostInitiatedConnectTimesOut) {
  guest_->receive(false);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
  unique_fd app_end(sv[1]);
  std::optional<result<std::uint32_t>> outcome;
  dev_->connect_to_guest(5002, unique_fd(sv[0]), vsock_type::stream,
                         [&](result<std::uint32_t> r) { outcome = r; });
  auto pkts = guest_->receive();  // the guest sees the REQUEST but never answers
  ASSERT_EQ(pkts.size(), 1u);
  dev_->on_tick(std::chrono::steady_clock::now() + std::chrono::seconds(1));
  EXPECT_FALSE(outcome.has_value());
  dev_->on_tick(std::chrono::steady_clock::now() + std::chrono::seconds(11));
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->error().code(), std::errc::timed_out);
  pkts = guest_->receive();
  ASSERT_EQ(pkts.size(), 1u);
  EXPECT_EQ(pkts[0].hdr.op, op(vsock_op::rst));
  EXPECT_EQ(dev_->connection_count(), 0u);
}

TEST_F(VsockDevice, TwoHundredConcurrentConnections) {
  host_.listening.insert(2761);
  constexpr int n = 200;
  std::vector<guest_socket*> socks;
  for (int i = 0; i < n; ++i) {
    socks.push_back(&stack_->connect(2761));
    stack_->receive();
    ASSERT_TRUE(socks.back()->connected) << i;
  }
  EXPECT_EQ(dev_->connection_count(), std::size_t{n});
  std::vector<std::vector<std::byte>> ups, downs;
  std::vector<std::size_t> sent(n), wrote(n);
  std::vector<checksum> got(n);
  for (int i = 0; i < n; ++i) {
    ups.push_back(pattern(20000 + 97 * i, 100 + i));
    downs.push_back(pattern(30000 + 89 * i, 500 + i));
  }
  ASSERT_TRUE(run_until([&] {
    bool all = true;
    for (int i = 0; i < n; ++i) {
      const int fd = app(*socks[i]);
      sent[i] += stack_->send(*socks[i], std::span(ups[i]).subspan(sent[i]));
      wrote[i] = host_write(fd, downs[i], wrote[i]);
      host_read(fd, got[i]);
      all = all && got[i].n == ups[i].size() && socks[i]->got.n == downs[i].size();
    }
    return all;
  }));
  for (int i = 0; i < n; ++i) {
    checksum u, d;
    u.add(ups[i]);
    d.add(downs[i]);
    EXPECT_EQ(got[i], u) << i;
    EXPECT_EQ(socks[i]->got, d) << i;
    EXPECT_FALSE(socks[i]->reset) << i;
  }
  // Everyone closes: guest SEND, host SEND.
  for (int i = 0; i < n; ++i) {
    stack_->shutdown(*socks[i], vsock_shutdown_send);
    ::shutdown(app(*socks[i]), SHUT_WR);
  }
  ASSERT_TRUE(run_until([&] { return dev_->connection_count() == 0; }));
  EXPECT_EQ(stack_->credit_violations, 0);
}

TEST_F(VsockDevice, ConnectionLimitRefusesWithRst) {
  vsock_device_options opts;
  opts.max_connections = 2;
  make_device(opts);
  open(2761);
  open(2761);
  auto& third = stack_->connect(2761);
  stack_->receive();
  EXPECT_TRUE(third.reset);
  EXPECT_EQ(dev_->connection_count(), 2u);
}

TEST_F(VsockDevice, ResetClosesHostEndsAndFailsPendingConnects) {
  auto& a = open(2761);
  auto& b = open(2762);
  const int fa = app(a), fb = app(b);
  // b's host end has unread data from the guest.
  stack_->send(b, pattern(1000, 1));
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
  unique_fd app_end(sv[1]);
  std::optional<result<std::uint32_t>> outcome;
  // The guest gets the REQUEST (nobody runs its stack) but never answers.
  dev_->connect_to_guest(5000, unique_fd(sv[0]), vsock_type::stream,
                         [&](result<std::uint32_t> r) { outcome = r; });
  dev_->reset();
  EXPECT_EQ(dev_->connection_count(), 0u);
  EXPECT_EQ(loop_.count(), 0u);
  ASSERT_TRUE(outcome.has_value());
  EXPECT_FALSE(*outcome);
  checksum c;
  EXPECT_FALSE(host_read(fa, c));
  EXPECT_FALSE(host_read(fb, c));
  EXPECT_FALSE(host_read(app_end.get(), c));
  EXPECT_FALSE(dev_->queue_running(vsock_rx_queue));
  EXPECT_FALSE(dev_->queue_running(vsock_tx_queue));

  // New rings (a rebooted guest): the device works again.
  guest_ = std::make_unique<fake_guest>();
  guest_->attach(*dev_);
  stack_ = std::make_unique<guest_stack>(*guest_);
  guest_->post_rx();
  auto& s = open(2761);
  EXPECT_TRUE(s.connected);
}

TEST_F(VsockDevice, RxStarvationThenRecovery) {
  guest_->receive(false);  // nothing new, but make sure nothing is reposted
  // Use a device whose guest posts no receive buffers at all.
  stack_.reset();
  dev_.reset();
  guest_ = std::make_unique<fake_guest>();
  dev_ = std::make_unique<vsock_device>(vsock_device_options{.guest_cid = guest_cid}, host_, loop_,
                                        [this](std::uint16_t q) { ++notified_[q]; });
  guest_->attach(*dev_);
  stack_ = std::make_unique<guest_stack>(*guest_);
  host_.listening.insert(2761);
  auto& s = stack_->connect(2761);
  EXPECT_EQ(dev_->connection_count(), 1u);
  const int fd = app(s);
  const auto down = pattern(40000, 31);
  ASSERT_EQ(host_write(fd, down, 0), down.size());
  // Unknown-connection RSTs queue too.
  guest_->send(raw_header(vsock_op::rw, 1500, 2761), pattern(3, 1));
  // No spinning: the loop has nothing to run while the guest has no buffers.
  for (int i = 0; i < 5; ++i) loop_.run_once(0);
  EXPECT_EQ(loop_.run_once(0), 0);
  EXPECT_FALSE(s.connected);
  // Buffers arrive: control packets first (RST, RESPONSE), then data.
  guest_->post_rx(8);
  stack_->receive();
  ASSERT_GE(stack_->log.size(), 2u);
  EXPECT_EQ(stack_->log[0].hdr.op, op(vsock_op::rst));
  EXPECT_EQ(stack_->log[1].hdr.op, op(vsock_op::response));
  EXPECT_TRUE(s.connected);
  ASSERT_TRUE(run_until([&] { return s.got.n == down.size(); }));
  checksum want;
  want.add(down);
  EXPECT_EQ(s.got, want);
}

TEST_F(VsockDevice, StopAndRestartQueuesKeepsConnections) {
  auto& s = open(2761);
  const int fd = app(s);
  // Stopping rings (GET_VRING_BASE, a memory table change) pauses the device.
  const std::uint16_t rx_base = dev_->stop_queue(vsock_rx_queue);
  const std::uint16_t tx_base = dev_->stop_queue(vsock_tx_queue);
  EXPECT_FALSE(dev_->queue_running(vsock_rx_queue));
  EXPECT_EQ(dev_->connection_count(), 1u);
  const auto down = pattern(50000, 3);
  ASSERT_EQ(host_write(fd, down, 0), down.size());
  for (int i = 0; i < 5; ++i) loop_.run_once(0);
  EXPECT_EQ(s.got.n, 0u);
  EXPECT_FALSE(dev_->start_queue(7, guest_->rx_driver().make_queue()));
  // The same rings start again where they stopped: the data flows.
  auto rx_cfg = guest_->rx_driver().config();
  rx_cfg.last_avail_idx = rx_base;
  auto tx_cfg = guest_->tx_driver().config();
  tx_cfg.last_avail_idx = tx_base;
  auto rxq = split_virtqueue::create(guest_->rx_driver().memory(), rx_cfg);
  auto txq = split_virtqueue::create(guest_->tx_driver().memory(), tx_cfg);
  ASSERT_TRUE(rxq && txq);
  ASSERT_TRUE(dev_->start_queue(vsock_tx_queue, std::move(*txq)));
  ASSERT_TRUE(dev_->start_queue(vsock_rx_queue, std::move(*rxq)));
  ASSERT_TRUE(run_until([&] { return s.got.n == down.size(); }));
  checksum want;
  want.add(down);
  EXPECT_EQ(s.got, want);
}

TEST_F(VsockDevice, NoNotificationWhenGuestSuppressesInterrupts) {
  host_.listening.insert(2761);
  guest_->rx_driver().set_avail_flags(virtq_avail_f_no_interrupt);
  const int before = notified_[vsock_rx_queue];
  auto& s = stack_->connect(2761);
  stack_->receive();
  EXPECT_TRUE(s.connected);  // the RESPONSE was delivered all the same
  EXPECT_EQ(notified_[vsock_rx_queue], before);
  guest_->rx_driver().set_avail_flags(0);
  guest_->send(stack_->header(s, vsock_op::credit_request));
  EXPECT_GT(notified_[vsock_rx_queue], before);
}

TEST_F(VsockDevice, DrainTimeoutClosesAHostThatNeverReads) {
  host_.device_sndbuf = 4096;
  auto& s = open(2761);
  ASSERT_EQ(stack_->send(s, pattern(200000, 2)), 200000u);
  stack_->shutdown(s, vsock_shutdown_send | vsock_shutdown_rcv);
  EXPECT_EQ(dev_->connection_count(), 1u);  // draining
  dev_->on_tick(std::chrono::steady_clock::now() + std::chrono::seconds(5));
  EXPECT_EQ(dev_->connection_count(), 1u);
  dev_->on_tick(std::chrono::steady_clock::now() + std::chrono::seconds(31));
  EXPECT_EQ(dev_->connection_count(), 0u);
  EXPECT_EQ(loop_.count(), 0u);
}

TEST_F(VsockDevice, HostInitiatedConnectBeyondLimitFails) {
  vsock_device_options opts;
  opts.max_connections = 1;
  make_device(opts);
  open(2761);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
  unique_fd app_end(sv[1]);
  std::optional<result<std::uint32_t>> outcome;
  dev_->connect_to_guest(5000, unique_fd(sv[0]), vsock_type::stream,
                         [&](result<std::uint32_t> r) { outcome = r; });
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->error().code(), make_error_code(errc::limit_reached));
}

TEST_F(VsockDevice, ChurnWhileStarvedKeepsQueuesBounded) {
  // No rx buffers: every RESPONSE waits; the guest resets each connection
  // before it is answered. Nothing may accumulate.
  guest_ = std::make_unique<fake_guest>();
  stack_.reset();
  dev_ = std::make_unique<vsock_device>(vsock_device_options{.guest_cid = guest_cid}, host_, loop_,
                                        nullptr);
  guest_->attach(*dev_);
  stack_ = std::make_unique<guest_stack>(*guest_);
  host_.listening.insert(2761);
  for (int i = 0; i < 3000; ++i) {
    auto& s = stack_->connect(2761);
    guest_->send(stack_->header(s, vsock_op::rst));
    host_.apps.clear();
  }
  EXPECT_EQ(dev_->connection_count(), 0u);
  guest_->post_rx(4);
  stack_->receive();
  EXPECT_TRUE(stack_->log.empty());  // no stale RESPONSE went out
}

TEST_F(VsockDevice, AFloodingGuestGetsABudgetPerWakeUpAndResumesOnLaterTurns) {
  vsock_device_options opts;
  opts.tx_budget_chains = 8;
  opts.rx_budget_chains = 4;
  make_device(opts);
  auto& tx = guest_->tx_driver();
  auto& rx = guest_->rx_driver();
  const std::uint16_t rx_before = rx.used_idx();
  // 20 REQUESTs to a port nobody listens on, one kick: each is refused (RST).
  for (std::uint32_t i = 0; i < 20; ++i) {
    const auto gpa = tx.alloc(vsock_header_size);
    tx.fill(gpa, encode_header(raw_header(vsock_op::request, 5000 + i, 9999)));
    tx.add_chain({{gpa, static_cast<std::uint32_t>(vsock_header_size), false}});
  }
  ASSERT_TRUE(dev_->on_tx_kick());
  EXPECT_EQ(tx.used_idx(), 8);  // the kick's budget
  EXPECT_EQ(rx.used_idx() - rx_before, 4);
  EXPECT_GE(dev_->stats().budget_yields, 1u);
  EXPECT_EQ(loop_.count(), 1u);  // the resume, and nothing else
  // Each later turn carries on where the budget stopped.
  EXPECT_EQ(loop_.run_once(0), 1);
  EXPECT_EQ(tx.used_idx(), 16);
  EXPECT_EQ(rx.used_idx() - rx_before, 8);
  loop_.run_once(0);
  EXPECT_EQ(tx.used_idx(), 20);
  EXPECT_EQ(rx.used_idx() - rx_before, 12);
  loop_.run_once(0);
  loop_.run_once(0);
  EXPECT_EQ(rx.used_idx() - rx_before, 20);
  EXPECT_EQ(loop_.count(), 0u);  // all done: no resume left behind
  EXPECT_EQ(dev_->stats().connections_refused, 20u);
  EXPECT_EQ(dev_->stats().control_dropped, 0u);
}

// --- SEQPACKET (VIRTIO_VSOCK_F_SEQPACKET) -----------------------------------

// Reads one message from a host SEQPACKET end, if one waits.
std::optional<std::vector<std::byte>> host_receive_message(int fd) {
  std::vector<std::byte> buf((1 << 20) + 1);
  const ssize_t n = ::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT | MSG_TRUNC);
  if (n < 0) return std::nullopt;
  EXPECT_LT(static_cast<std::size_t>(n), buf.size()) << "a message larger than 1 MiB";
  buf.resize(static_cast<std::size_t>(n));
  return buf;
}

// A host SEQPACKET end able to send 1 MiB messages (as hvsockd sizes its pairs).
void size_for_big_messages(int fd) {
  const int wanted = ((1 << 20) + 4096) / 2;
  ASSERT_EQ(::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &wanted, sizeof wanted), 0)
      << "1 MiB messages need CAP_NET_ADMIN (SO_SNDBUFFORCE)";
}

const std::vector<std::size_t> message_sizes{0, 1, 4096, 65536, 65537, 200000, 1 << 20};

class VsockDeviceSeqpacket : public VsockDevice {
 protected:
  static constexpr std::uint32_t port = 2762;
  guest_socket& open_seqpacket(std::uint32_t buf_alloc = 1 << 20) {
    host_.listening.insert(port);
    host_.seqpacket_listening.insert(port);
    auto& s = stack_->connect(port, vsock_type::seqpacket, buf_alloc);
    stack_->receive();
    EXPECT_TRUE(s.connected);
    return s;
  }
  // One RW fragment without EOM, credit or not.
  void send_fragment(guest_socket& s, std::span<const std::byte> data) {
    guest_->send(stack_->header(s, vsock_op::rw), data);
    s.tx_cnt += static_cast<std::uint32_t>(data.size());
    stack_->receive();
  }
};

TEST_F(VsockDeviceSeqpacket, MessagesKeepTheirBoundariesBothWays) {
  auto& s = open_seqpacket();
  ASSERT_FALSE(stack_->log.empty());
  const auto& response = stack_->log[0].hdr;
  EXPECT_EQ(response.type, static_cast<std::uint16_t>(vsock_type::seqpacket));
  EXPECT_EQ(response.buf_alloc, 1u << 20);  // room for a 1 MiB message
  const int fd = app(s);
  size_for_big_messages(fd);
  std::vector<std::vector<std::byte>> messages;
  for (std::size_t i = 0; i < message_sizes.size(); ++i)
    messages.push_back(pattern(message_sizes[i], static_cast<unsigned>(i + 40)));

  // Guest -> host: each message fragmented by credit and 64 KiB packets.
  std::vector<std::vector<std::byte>> at_host;
  std::size_t i = 0, at = 0;
  ASSERT_TRUE(run_until([&] {
    if (i < messages.size()) {
      at += stack_->send_message(s, messages[i], at);
      if (at == messages[i].size()) ++i, at = 0;
    }
    while (auto m = host_receive_message(fd)) at_host.push_back(std::move(*m));
    return at_host.size() == messages.size();
  }));
  EXPECT_EQ(at_host, messages);

  // Host -> guest: read whole, sent in fragments, the last with EOM | EOR.
  const std::size_t before = stack_->log.size();
  std::size_t sent = 0;
  ASSERT_TRUE(run_until([&] {
    while (sent < messages.size() &&
           ::send(fd, messages[sent].data(), messages[sent].size(), MSG_DONTWAIT) >= 0)
      ++sent;
    return s.messages.size() == messages.size();
  }));
  EXPECT_EQ(s.messages, messages);
  EXPECT_EQ(s.eor_marks, messages.size());
  for (std::size_t k = before; k < stack_->log.size(); ++k) {
    const auto& h = stack_->log[k].hdr;
    if (h.op != op(vsock_op::rw)) continue;
    EXPECT_EQ(h.type, static_cast<std::uint16_t>(vsock_type::seqpacket));
    EXPECT_LE(h.len, 65536u);
  }
  EXPECT_EQ(stack_->credit_violations, 0);
  EXPECT_FALSE(s.reset);
}

TEST_F(VsockDeviceSeqpacket, GuestMessagesWaitWholeWhileTheHostDoesNotRead) {
  auto& s = open_seqpacket();
  const int fd = app(s);
  // An AF_UNIX receiver queues a few messages (net.unix.max_dgram_qlen), then
  // the device's sends get EAGAIN: the rest waits in the device, whole.
  std::vector<std::vector<std::byte>> messages;
  for (unsigned k = 0; k < 40; ++k) messages.push_back(pattern(1000 + k, k));
  for (const auto& m : messages) ASSERT_EQ(stack_->send_message(s, m, 0), m.size());
  settle();
  EXPECT_FALSE(s.reset);
  std::vector<std::vector<std::byte>> at_host;
  ASSERT_TRUE(run_until([&] {
    while (auto m = host_receive_message(fd)) at_host.push_back(std::move(*m));
    return at_host.size() == messages.size();
  }));
  EXPECT_EQ(at_host, messages);
}

TEST_F(VsockDeviceSeqpacket, AGuestsEorReachesTheHostAsTheShimsMark) {
  auto& s = open_seqpacket();
  const int fd = app(s);
  const auto plain = pattern(10, 1), marked = pattern(70000, 2);  // one packet; two
  ASSERT_EQ(stack_->send_message(s, plain, 0, false), plain.size());
  std::size_t at = 0;
  ASSERT_TRUE(run_until([&] {
    at += stack_->send_message(s, marked, at, true);
    return at == marked.size();
  }));
  settle();
  // Each message whole, and an fd passed beside the second only.
  for (const bool eor : {false, true}) {
    std::vector<std::byte> buf(100000);
    iovec iov{buf.data(), buf.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = -1;
    ASSERT_TRUE(
        run_until([&] { return (n = ::recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC)) >= 0; }));
    EXPECT_EQ(static_cast<std::size_t>(n), eor ? marked.size() : plain.size());
    int passed = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      int received;
      std::memcpy(&received, CMSG_DATA(c), sizeof received);
      ::close(received);
      ++passed;
    }
    EXPECT_EQ(passed, eor ? 1 : 0) << (eor ? "EOR message" : "plain message");
  }
}

TEST_F(VsockDeviceSeqpacket, AnEmptyMessageAndTheEndAreToldApart) {
  auto& s = open_seqpacket();
  const int fd = app(s);
  ASSERT_EQ(::send(fd, "", 0, 0), 0);
  ASSERT_EQ(::shutdown(fd, SHUT_WR), 0);
  ASSERT_TRUE(run_until([&] { return s.peer_shut_send; }));
  ASSERT_EQ(s.messages.size(), 1u);
  EXPECT_TRUE(s.messages[0].empty());
  // The guest's empty message reaches the host as one, not as the end.
  ASSERT_EQ(stack_->send_message(s, {}, 0), 0u);
  std::optional<std::vector<std::byte>> m;
  ASSERT_TRUE(run_until([&] { return (m = host_receive_message(fd)).has_value(); }));
  EXPECT_TRUE(m->empty());
  std::byte b;
  EXPECT_EQ(::recv(fd, &b, 1, MSG_DONTWAIT), -1);  // nothing more, and not the end
  EXPECT_EQ(errno, EAGAIN);
}

TEST_F(VsockDeviceSeqpacket, AHostMessageLargerThanTheGuestBufferResets) {
  auto& s = open_seqpacket(256 * 1024);
  const int fd = app(s);
  size_for_big_messages(fd);
  const auto big = pattern(300000, 5);
  ASSERT_EQ(::send(fd, big.data(), big.size(), 0), static_cast<ssize_t>(big.size()));
  ASSERT_TRUE(run_until([&] { return s.reset; }));
  EXPECT_TRUE(s.messages.empty());
  EXPECT_EQ(s.got.n, 0u);  // not a byte of it went out
  EXPECT_EQ(dev_->connection_count(), 0u);
}

TEST_F(VsockDeviceSeqpacket, AGuestMessageOverTheBufferOrAnUnfinishedOneGoesNowhere) {
  // Unfinished at SHUTDOWN(SEND): the host sees the end, no message.
  auto& s = open_seqpacket();
  const int fd = app(s);
  send_fragment(s, pattern(5000, 1));
  stack_->shutdown(s, vsock_shutdown_send);
  settle();
  std::byte b;
  ASSERT_TRUE(run_until([&] { return ::recv(fd, &b, 1, MSG_DONTWAIT) == 0; }));
  // Over the buffer we advertised (a guest ignoring Linux's EMSGSIZE): reset.
  auto& t = open_seqpacket();
  const auto chunk = pattern(65536, 2);
  for (int k = 0; k < 17 && !t.reset; ++k) send_fragment(t, chunk);
  settle();
  EXPECT_TRUE(t.reset);
}

TEST_F(VsockDeviceSeqpacket, TypesDoNotMix) {
  // A SEQPACKET request for a stream listener is refused with RST.
  host_.listening.insert(2763);
  auto& refused = stack_->connect(2763, vsock_type::seqpacket);
  stack_->receive();
  EXPECT_TRUE(refused.reset);
  EXPECT_FALSE(refused.connected);
  // A STREAM packet on a SEQPACKET connection: RST for that packet (echoing
  // its type), the connection lives on.
  auto& s = open_seqpacket();
  const int fd = app(s);
  auto stray = stack_->header(s, vsock_op::rw);
  stray.type = static_cast<std::uint16_t>(vsock_type::stream);
  const auto before = stack_->log.size();
  guest_->send(stray, pattern(10, 3));
  stack_->receive();
  ASSERT_EQ(stack_->log.size(), before + 1);
  EXPECT_EQ(stack_->log.back().hdr.op, op(vsock_op::rst));
  EXPECT_EQ(stack_->log.back().hdr.type, static_cast<std::uint16_t>(vsock_type::stream));
  EXPECT_EQ(dev_->connection_count(), 1u);
  const auto m = pattern(100, 4);
  ASSERT_EQ(stack_->send_message(s, m, 0), m.size());
  std::optional<std::vector<std::byte>> got;
  ASSERT_TRUE(run_until([&] { return (got = host_receive_message(fd)).has_value(); }));
  EXPECT_EQ(*got, m);
}

TEST_F(VsockDeviceSeqpacket, HostInitiatedConnect) {
  stack_->listening.insert(5000);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
  unique_fd app_end(sv[1]);
  std::optional<result<std::uint32_t>> outcome;
  dev_->connect_to_guest(5000, unique_fd(sv[0]), vsock_type::seqpacket,
                         [&](result<std::uint32_t> r) { outcome = r; });
  stack_->receive();
  ASSERT_TRUE(outcome.has_value() && *outcome);
  const auto& req = stack_->log[0].hdr;
  EXPECT_EQ(req.op, op(vsock_op::request));
  EXPECT_EQ(req.type, static_cast<std::uint16_t>(vsock_type::seqpacket));
  auto* s = stack_->find(5000, req.src_port);
  ASSERT_NE(s, nullptr);
  const auto down = pattern(70000, 6), up = pattern(3, 7);
  ASSERT_EQ(::send(app_end.get(), down.data(), down.size(), 0), static_cast<ssize_t>(down.size()));
  ASSERT_EQ(stack_->send_message(*s, up, 0), up.size());
  std::optional<std::vector<std::byte>> got;
  ASSERT_TRUE(run_until([&] {
    if (!got) got = host_receive_message(app_end.get());
    return got && s->messages.size() == 1;
  }));
  EXPECT_EQ(*got, up);
  EXPECT_EQ(s->messages[0], down);
}

}  // namespace
}  // namespace hvsock::virtio
