// fake_frontend: plays QEMU (vhost-user-vsock-pci) and the guest's
// virtio-vsock driver against a real hvsockd, without a VM. It connects to a
// QEMU partition's vhost-user socket and sets the device up as QEMU does
// (features, protocol features with REPLY_ACK, SET_OWNER, SET_MEM_TABLE with a
// memfd, rings 0 and 1 with kick and call eventfds), then moves virtio-vsock
// packets through the split rings (tests/virtio/fake_driver.hpp lays them out
// in the memfd).
//
// Guest RAM: one memfd region at guest_ram_gpa. The rx ring and its buffers
// fill the first rx_area bytes, the tx ring and its slots the rest; so
// truncating the file to less than rx_area makes the tx ring vanish under
// the back-end (and under this process: after shrink_memory() only kicks
// and the vhost-user socket may be used).
//
// Waiting is on the call eventfds hvsockd writes, never on sleeps.
// Thread safety: none; one thread drives one front-end.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <hvsock/result.hpp>
#include <hvsock/unique_fd.hpp>

#include "fake_driver.hpp"
#include "vhost_user/message.hpp"
#include "virtio/vsock_packet.hpp"

namespace hvsock::test {

struct guest_packet {
  virtio::virtio_vsock_hdr hdr;
  std::vector<std::byte> payload;
};

class fake_frontend {
 public:
  static constexpr std::uint64_t guest_ram_gpa = 0x40000000;
  static constexpr std::size_t rx_area = 4u << 20;
  static constexpr std::size_t memory_size = 16u << 20;
  static constexpr std::uint32_t queue_size = 256;
  static constexpr std::uint32_t rx_buffer_size = 4096;
  static constexpr std::size_t rx_buffers = 128;
  static constexpr std::size_t tx_slots = 128;
  static constexpr std::size_t tx_slot_size = virtio::vsock_header_size + 65536;

  // Connects to `socket_path` and sets the device up for guest CID
  // `guest_cid`; receive buffers are posted. Any refusal is a failure
  // naming the request.
  static result<std::unique_ptr<fake_frontend>> attach(const std::string& socket_path,
                                                       std::uint64_t guest_cid);
  ~fake_frontend();
  fake_frontend(const fake_frontend&) = delete;
  fake_frontend& operator=(const fake_frontend&) = delete;

  std::uint64_t guest_cid() const { return guest_cid_; }

  // Puts one packet (header and payload in two descriptors) on the tx ring
  // without kicking; false when every tx slot is in use (after reaping).
  bool queue_tx(virtio::virtio_vsock_hdr h, std::span<const std::byte> payload = {});
  void kick_tx();
  // queue_tx + kick_tx, waiting (bounded by `timeout`) for a free slot.
  result<void> send(const virtio::virtio_vsock_hdr& h, std::span<const std::byte> payload,
                    std::chrono::milliseconds timeout);
  std::size_t tx_in_use() const { return tx_heads_.size(); }

  // A hostile guest's flood: one packet `h` in one tx chain, published again
  // and again (the ring holds at most queue_size of it at once) as fast as
  // hvsockd consumes it, so the tx ring never runs dry. Runs while
  // keep_going(consumed) says so; returns the packets hvsockd consumed.
  // Afterwards queue_tx and send must not be used.
  std::uint64_t flood_tx(const virtio::virtio_vsock_hdr& h,
                         const std::function<bool(std::uint64_t consumed)>& keep_going);

  // Blocks until hvsockd signals a used buffer on either ring or `timeout`
  // passes; false on timeout.
  bool wait_for_device(std::chrono::milliseconds timeout);
  // Packets hvsockd put in receive buffers since the last call; their
  // buffers are posted again (and rx kicked). Also reaps used tx slots.
  std::vector<guest_packet> receive();

  // The vhost-user connection: readable with EOF once hvsockd dropped it.
  int vhost_user_fd() const { return socket_.get(); }
  // Shrinks the memfd to `bytes` (under the daemon's mapping).
  result<void> shrink_memory(std::size_t bytes);

 private:
  fake_frontend() = default;
  result<void> set_up(const std::string& socket_path);
  result<std::uint64_t> request_u64(vhost_user::request code);
  result<void> request_acked(vhost_user::request code, const vhost_user::payload& body,
                             int fd = -1);
  result<void> send_message(vhost_user::request code, std::uint32_t flags,
                            const vhost_user::payload& body, int fd);
  result<std::vector<std::byte>> read_reply(vhost_user::request code);
  void post_rx(std::size_t n);
  void reap_tx();

  std::uint64_t guest_cid_ = 0;
  unique_fd socket_;
  unique_fd memfd_;
  std::byte* ram_ = nullptr;
  unique_fd kick_[2];
  unique_fd call_[2];
  std::optional<virtio::testing::fake_driver> rx_, tx_;
  std::vector<std::uint64_t> rx_free_, tx_free_;
  std::map<std::uint16_t, std::uint64_t> rx_heads_, tx_heads_;
  bool memory_lost_ = false;
};

}  // namespace hvsock::test
