// split_virtqueue: a virtio 1.x split virtqueue seen from the device side
// (virtio spec, "Split Virtqueues"): take the descriptor chains the driver
// made available, hand them out as validated lists of guest buffers, and
// publish what was used.
//
// The guest owns the rings and may rewrite any of them at any moment, so
// every field is read once, with an atomic load, into a local copy that is
// then checked; nothing read from guest memory is trusted twice. A chain that
// breaks the rules (index out of range, loop, buffer outside guest memory,
// writable before readable, nested indirect table, too long) makes pop() fail:
// a driver that does this is broken or hostile, and the caller resets the
// device instead of guessing.
//
// Features: VIRTIO_RING_F_INDIRECT_DESC is supported. VIRTIO_RING_F_EVENT_IDX
// is not (do not offer it): notifications follow VRING_AVAIL_F_NO_INTERRUPT,
// and the used_event / avail_event fields are neither read nor written.
//
// Thread safety: none. One device thread owns a queue; the guest is the only
// other party, synchronised through the ring indices and fences.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include <hvsock/result.hpp>

#include "virtio/guest_memory.hpp"

namespace hvsock::virtio {

// Descriptor flags (struct virtq_desc::flags).
inline constexpr std::uint16_t virtq_desc_f_next = 1;
inline constexpr std::uint16_t virtq_desc_f_write = 2;
inline constexpr std::uint16_t virtq_desc_f_indirect = 4;
// virtq_avail::flags: the driver does not want an interrupt for used buffers.
inline constexpr std::uint16_t virtq_avail_f_no_interrupt = 1;
// virtq_used::flags: the device does not want kicks (an optimisation only).
inline constexpr std::uint16_t virtq_used_f_no_notify = 1;

// Feature bits relevant to the ring (negotiated by the transport).
inline constexpr unsigned virtio_ring_f_indirect_desc = 28;
inline constexpr unsigned virtio_ring_f_event_idx = 29;  // not supported here

// Where the three parts of a ring are, as the set-up message gave them.
struct vring_addresses {
  std::uint64_t desc = 0;   // descriptor table, 16-byte aligned
  std::uint64_t avail = 0;  // available ring, 2-byte aligned
  std::uint64_t used = 0;   // used ring, 4-byte aligned
};

// Which address space vring_addresses are in: vhost-user's SET_VRING_ADDR
// carries front-end (QEMU) virtual addresses; a plain virtio device sees
// guest-physical ones.
enum class address_space { guest_physical, frontend_virtual };

// Bounds on what one chain may make the device do; a chain beyond them is an
// error, not something to truncate.
struct chain_limits {
  // Sum of all buffer lengths, readable and writable. The default leaves room
  // for a 1 MiB payload plus any header.
  std::uint64_t max_total_length = (1u << 20) + 4096;
  // Descriptors visited in one chain, direct and indirect together (the
  // same bound QEMU uses, VIRTQUEUE_MAX_SIZE).
  std::uint32_t max_descriptors = 1024;
};

// A validated chain: every span is inside guest memory and writable spans
// come after readable ones in the driver's order. The bytes themselves are
// still the guest's and may change under the reader; copy before checking.
struct descriptor_chain {
  std::uint16_t head = 0;                      // what push_used() gets back
  std::vector<std::span<std::byte>> readable;  // device-readable (driver → device)
  std::vector<std::span<std::byte>> writable;  // device-writable (device → driver)
  std::uint64_t readable_length = 0;
  std::uint64_t writable_length = 0;
};

class split_virtqueue {
 public:
  static constexpr std::uint32_t max_size = 32768;

  struct config {
    std::uint32_t size = 0;  // power of two, 1..max_size
    vring_addresses addresses;
    address_space space = address_space::frontend_virtual;
    // Where to resume (vhost-user SET_VRING_BASE); 0 for a fresh queue.
    std::uint16_t last_avail_idx = 0;
    chain_limits limits;
  };

  // Translates the rings through `memory` and checks size and alignment.
  // `memory` must outlive the queue, and the queue must be created again
  // whenever the memory table changes (the ring spans point into it). The
  // device's used index starts from what the ring's used->idx holds.
  static result<split_virtqueue> create(const guest_memory& memory, const config& cfg);

  // The next available chain, std::nullopt when the driver has made none
  // available, or a failure (errc::protocol_error) when the driver broke the
  // ring rules: then the queue is unusable until the device is reset. A
  // failed pop consumes nothing.
  result<std::optional<descriptor_chain>> pop();

  // Gives the most recent `count` popped chains back, so the next pop()
  // returns them again (e.g. a receive buffer popped but not needed after
  // all). Fails if fewer than `count` chains are in flight.
  result<void> unpop(std::uint16_t count = 1);

  // Returns chain `head` to the driver with `written` bytes written into its
  // writable buffers, and makes it visible (release) to the driver. Fails
  // when head is out of range or no chain is in flight (a device bug).
  result<void> push_used(std::uint16_t head, std::uint32_t written);

  // Whether the driver wants an interrupt (the call eventfd) after the used
  // buffers published so far: false while it sets VRING_AVAIL_F_NO_INTERRUPT.
  // Call after a batch of push_used(); it orders the used->idx store before
  // the flags load, so a driver that re-enables interrupts and then checks
  // used->idx cannot be missed.
  bool needs_notification() const;

  // Sets or clears VRING_USED_F_NO_NOTIFY (a hint that kicks are not needed
  // while the device is polling anyway).
  void set_kicks_suppressed(bool suppressed);

  std::uint32_t size() const { return size_; }
  // Next avail ring slot to consume (vhost-user GET_VRING_BASE).
  std::uint16_t last_avail_idx() const { return last_avail_idx_; }
  void set_last_avail_idx(std::uint16_t idx) { last_avail_idx_ = idx; }
  // Next used ring slot the device will fill (its shadow of used->idx).
  std::uint16_t used_idx() const { return used_idx_; }
  // Chains popped and not yet pushed back.
  std::uint16_t in_flight() const {
    return static_cast<std::uint16_t>(last_avail_idx_ - used_idx_);
  }

 private:
  split_virtqueue() = default;

  struct raw_desc {
    std::uint64_t addr;
    std::uint32_t len;
    std::uint16_t flags;
    std::uint16_t next;
  };
  struct walk_state;

  result<void> add_buffer(walk_state& walk, const raw_desc& d) const;
  result<void> walk_indirect(walk_state& walk, const raw_desc& d) const;

  const guest_memory* memory_ = nullptr;
  std::byte* desc_ = nullptr;   // size_ * 16 bytes
  std::byte* avail_ = nullptr;  // 4 + size_ * 2 bytes
  std::byte* used_ = nullptr;   // 4 + size_ * 8 bytes
  std::uint32_t size_ = 0;
  std::uint16_t last_avail_idx_ = 0;
  std::uint16_t used_idx_ = 0;
  chain_limits limits_;
};

}  // namespace hvsock::virtio
