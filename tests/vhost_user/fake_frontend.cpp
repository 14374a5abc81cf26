#include "fake_frontend.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>

namespace hvsock::test {
namespace {

namespace vu = vhost_user;
using virtio::testing::buffer;
using virtio::testing::fake_driver;

failure system_failure(const std::string& what) {
  return failure(errc::io_error, what + ": " + std::strerror(errno));
}

// Reads exactly `n` bytes (blocking socket), or fails on EOF or error.
result<void> read_exactly(int fd, std::byte* out, std::size_t n, const std::string& what) {
  for (std::size_t done = 0; done < n;) {
    const ssize_t r = ::read(fd, out + done, n - done);
    if (r == 0) return failure(errc::daemon_unavailable, what + ": hvsockd closed the connection");
    if (r < 0) {
      if (errno == EINTR) continue;
      return system_failure(what);
    }
    done += static_cast<std::size_t>(r);
  }
  return {};
}

}  // namespace

result<std::unique_ptr<fake_frontend>> fake_frontend::attach(const std::string& socket_path,
                                                             std::uint64_t guest_cid) {
  std::unique_ptr<fake_frontend> f(new fake_frontend());
  f->guest_cid_ = guest_cid;
  if (auto ok = f->set_up(socket_path); !ok)
    return ok.error().with_context("fake front-end on " + socket_path);
  return f;
}

fake_frontend::~fake_frontend() {
  rx_.reset();
  tx_.reset();
  if (ram_ != nullptr) ::munmap(ram_, memory_size);
}

result<void> fake_frontend::set_up(const std::string& socket_path) {
  // Guest RAM, shared with hvsockd through the fd (memory-backend-memfd,share=on).
  memfd_.reset(::memfd_create("fake-guest-ram", MFD_CLOEXEC));
  if (!memfd_ || ::ftruncate(memfd_.get(), memory_size) != 0) return system_failure("memfd");
  void* m = ::mmap(nullptr, memory_size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd_.get(), 0);
  if (m == MAP_FAILED) return system_failure("mmap guest RAM");
  ram_ = static_cast<std::byte*>(m);
  std::span<std::byte> ram(ram_, memory_size);
  rx_.emplace(queue_size, ram.first(rx_area), guest_ram_gpa);
  tx_.emplace(queue_size, ram.subspan(rx_area), guest_ram_gpa + rx_area);
  for (std::size_t i = 0; i < rx_buffers; ++i) rx_free_.push_back(rx_->alloc(rx_buffer_size));
  for (std::size_t i = 0; i < tx_slots; ++i) tx_free_.push_back(tx_->alloc(tx_slot_size));
  for (auto* fds : {kick_, call_})
    for (int i = 0; i < 2; ++i) {
      fds[i].reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
      if (!fds[i]) return system_failure("eventfd");
    }

  socket_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(socket_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return system_failure("connect");

  // As QEMU's vhost-user-vsock: SET_OWNER, then VERSION_1, PROTOCOL_FEATURES
  // and indirect descriptors, then REPLY_ACK so every later request is
  // confirmed.
  if (auto ok = send_message(vu::request::set_owner, 0, {}, -1); !ok) return ok;
  auto features = request_u64(vu::request::get_features);
  if (!features) return features.error();
  const std::uint64_t wanted = (std::uint64_t{1} << vu::feature_version_1) |
                               (std::uint64_t{1} << vu::feature_protocol_features) |
                               (std::uint64_t{1} << virtio::virtio_ring_f_indirect_desc);
  if ((*features & wanted) != wanted)
    return failure(errc::protocol_error, "GET_FEATURES lacks VERSION_1/PROTOCOL_FEATURES");
  if (auto ok = send_message(vu::request::set_features, 0, *features & wanted, -1); !ok) return ok;
  auto protocol = request_u64(vu::request::get_protocol_features);
  if (!protocol) return protocol.error();
  const std::uint64_t reply_ack = std::uint64_t{1} << vu::protocol_feature_reply_ack;
  if (!(*protocol & reply_ack)) return failure(errc::protocol_error, "no REPLY_ACK offered");
  if (auto ok = send_message(vu::request::set_protocol_features, 0, reply_ack, -1); !ok) return ok;

  vu::memory_table table;
  table.regions.push_back({.guest_phys_addr = guest_ram_gpa,
                           .memory_size = memory_size,
                           .userspace_addr = guest_ram_gpa,  // "QEMU's" addresses: the same
                           .mmap_offset = 0});
  if (auto ok = request_acked(vu::request::set_mem_table, table, memfd_.get()); !ok) return ok;

  for (std::uint32_t i = 0; i < 2; ++i) {
    const fake_driver& d = i == virtio::vsock_rx_queue ? *rx_ : *tx_;
    if (auto ok = request_acked(vu::request::set_vring_num, vu::vring_state{i, queue_size}); !ok)
      return ok;
    vu::vring_addr a;
    a.index = i;
    a.descriptor = d.desc_gpa();
    a.available = d.avail_gpa();
    a.used = d.used_gpa();
    if (auto ok = request_acked(vu::request::set_vring_addr, a); !ok) return ok;
    if (auto ok = request_acked(vu::request::set_vring_base, vu::vring_state{i, 0}); !ok) return ok;
    if (auto ok = request_acked(vu::request::set_vring_kick, std::uint64_t{i}, kick_[i].get()); !ok)
      return ok;
    if (auto ok = request_acked(vu::request::set_vring_call, std::uint64_t{i}, call_[i].get()); !ok)
      return ok;
    if (auto ok = request_acked(vu::request::set_vring_enable, vu::vring_state{i, 1}); !ok)
      return ok;
  }
  post_rx(rx_free_.size());
  return {};
}

result<void> fake_frontend::send_message(vu::request code, std::uint32_t flags,
                                         const vu::payload& body, int fd) {
  const auto bytes = vu::encode(static_cast<std::uint32_t>(code), vu::version_1 | flags, body);
  iovec iov{const_cast<std::byte*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  const ssize_t n = ::sendmsg(socket_.get(), &msg, MSG_NOSIGNAL);
  if (n != static_cast<ssize_t>(bytes.size())) return system_failure(vu::request_name(code));
  return {};
}

result<std::vector<std::byte>> fake_frontend::read_reply(vu::request code) {
  const std::string what = vu::request_name(code) + " reply";
  std::byte head[vu::header_size];
  if (auto ok = read_exactly(socket_.get(), head, sizeof head, what); !ok) return ok.error();
  std::uint32_t fields[3];
  std::memcpy(fields, head, sizeof fields);
  if (fields[0] != static_cast<std::uint32_t>(code) || !(fields[1] & vu::flag_reply) ||
      fields[2] > vu::max_payload_size)
    return failure(errc::protocol_error, what + ": unexpected header");
  std::vector<std::byte> body(fields[2]);
  if (auto ok = read_exactly(socket_.get(), body.data(), body.size(), what); !ok) return ok.error();
  return body;
}

result<std::uint64_t> fake_frontend::request_u64(vu::request code) {
  if (auto ok = send_message(code, 0, {}, -1); !ok) return ok.error();
  auto body = read_reply(code);
  if (!body) return body.error();
  if (body->size() != sizeof(std::uint64_t))
    return failure(errc::protocol_error, vu::request_name(code) + ": reply is not a u64");
  std::uint64_t v;
  std::memcpy(&v, body->data(), sizeof v);
  return v;
}

result<void> fake_frontend::request_acked(vu::request code, const vu::payload& body, int fd) {
  if (auto ok = send_message(code, vu::flag_need_reply, body, fd); !ok) return ok;
  auto reply = read_reply(code);
  if (!reply) return reply.error();
  std::uint64_t status = 1;
  if (reply->size() == sizeof status) std::memcpy(&status, reply->data(), sizeof status);
  if (status != 0) return failure(errc::protocol_error, vu::request_name(code) + ": refused");
  return {};
}

void fake_frontend::post_rx(std::size_t n) {
  for (; n > 0 && !rx_free_.empty(); --n) {
    const auto gpa = rx_free_.back();
    rx_free_.pop_back();
    rx_heads_[rx_->add_chain({{gpa, rx_buffer_size, true}})] = gpa;
  }
  const std::uint64_t one = 1;
  (void)::write(kick_[virtio::vsock_rx_queue].get(), &one, sizeof one);
}

void fake_frontend::reap_tx() {
  if (memory_lost_) return;
  for (const auto& [id, len] : tx_->reap_used()) {
    tx_free_.push_back(tx_heads_.at(id));
    tx_heads_.erase(id);
  }
}

bool fake_frontend::queue_tx(virtio::virtio_vsock_hdr h, std::span<const std::byte> payload) {
  if (tx_free_.empty()) reap_tx();
  if (tx_free_.empty() || payload.size() > tx_slot_size - virtio::vsock_header_size) return false;
  const auto gpa = tx_free_.back();
  tx_free_.pop_back();
  h.len = static_cast<std::uint32_t>(payload.size());
  tx_->fill(gpa, virtio::encode_header(h));
  std::vector<buffer> bufs{{gpa, static_cast<std::uint32_t>(virtio::vsock_header_size), false}};
  if (!payload.empty()) {
    tx_->fill(gpa + virtio::vsock_header_size, payload);
    bufs.push_back(
        {gpa + virtio::vsock_header_size, static_cast<std::uint32_t>(payload.size()), false});
  }
  tx_heads_[tx_->add_chain(bufs)] = gpa;
  return true;
}

void fake_frontend::kick_tx() {
  const std::uint64_t one = 1;
  (void)::write(kick_[virtio::vsock_tx_queue].get(), &one, sizeof one);
}

result<void> fake_frontend::send(const virtio::virtio_vsock_hdr& h,
                                 std::span<const std::byte> payload,
                                 std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!queue_tx(h, payload)) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || !wait_for_device(left))
      return failure(errc::timed_out, "no tx slot came back from hvsockd");
  }
  kick_tx();
  return {};
}

std::uint64_t fake_frontend::flood_tx(const virtio::virtio_vsock_hdr& h,
                                      const std::function<bool(std::uint64_t)>& keep_going) {
  reap_tx();
  if (tx_free_.empty()) return 0;
  const auto gpa = tx_free_.back();
  tx_free_.pop_back();
  tx_->fill(gpa, virtio::encode_header(h));
  // Published once here, then its head again and again below.
  const std::uint16_t head =
      tx_->add_chain({{gpa, static_cast<std::uint32_t>(virtio::vsock_header_size), false}});
  kick_tx();
  std::uint64_t consumed = 0;
  std::uint16_t used_before = tx_->used_idx();
  while (keep_going(consumed)) {
    const std::uint16_t used = tx_->used_idx();
    consumed += static_cast<std::uint16_t>(used - used_before);
    used_before = used;
    bool published = false;
    // Never more than the ring size ahead of the device: that would break
    // the ring rules, and hvsockd would (rightly) reset the device.
    while (static_cast<std::uint16_t>(tx_->avail_idx() - used) < queue_size) {
      tx_->publish(head);
      published = true;
    }
    // A hostile guest spins on used->idx (its own vCPU) rather than wait
    // for an interrupt, so the ring is refilled while hvsockd drains it.
    if (published) {
      kick_tx();
    } else {
      std::this_thread::yield();
    }
  }
  return consumed;
}

bool fake_frontend::wait_for_device(std::chrono::milliseconds timeout) {
  pollfd fds[2] = {{call_[0].get(), POLLIN, 0}, {call_[1].get(), POLLIN, 0}};
  const int n = ::poll(fds, 2, static_cast<int>(timeout.count()));
  std::uint64_t count;
  for (auto& f : fds)
    if (f.revents & POLLIN) (void)::read(f.fd, &count, sizeof count);
  return n > 0;
}

std::vector<guest_packet> fake_frontend::receive() {
  std::vector<guest_packet> out;
  if (memory_lost_) return out;
  reap_tx();
  const auto used = rx_->reap_used();
  for (const auto& [id, len] : used) {
    const auto gpa = rx_heads_.at(id);
    rx_heads_.erase(id);
    rx_free_.push_back(gpa);
    if (len < virtio::vsock_header_size) continue;
    guest_packet p;
    p.hdr = virtio::decode_header(std::span<const std::byte, virtio::vsock_header_size>(
        rx_->bytes(gpa, virtio::vsock_header_size)));
    const auto pl = rx_->bytes(gpa + virtio::vsock_header_size,
                               std::min<std::uint64_t>(p.hdr.len, len - virtio::vsock_header_size));
    p.payload.assign(pl.begin(), pl.end());
    out.push_back(std::move(p));
  }
  if (!used.empty()) post_rx(used.size());
  return out;
}

result<void> fake_frontend::shrink_memory(std::size_t bytes) {
  memory_lost_ = true;  // from here on this process must not touch the rings either
  if (::ftruncate(memfd_.get(), static_cast<off_t>(bytes)) != 0)
    return system_failure("ftruncate guest RAM");
  return {};
}

}  // namespace hvsock::test
