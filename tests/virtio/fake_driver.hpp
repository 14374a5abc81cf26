// fake_driver: plays the guest's virtio driver for unit tests. It owns a
// block of "guest RAM" (registered with a guest_memory at a guest-physical
// base), lays out a split ring in it, and adds descriptor chains the way a
// driver would, or lets a test write any raw descriptor it likes. It can
// also drive a ring in RAM the test shares with a real back-end (a memfd,
// tests/vhost_user/fake_frontend.hpp): then the back-end maps the memory and
// memory() is unused. Thread safety: none (tests drive it from one thread).
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <bit>
#include <cstdint>
#include <cstring>
#include <map>
#include <span>
#include <utility>
#include <vector>

#include "virtio/guest_memory.hpp"
#include "virtio/split_virtqueue.hpp"

namespace hvsock::virtio::testing {

static_assert(std::endian::native == std::endian::little, "the fake driver writes native order");

struct buffer {
  std::uint64_t gpa = 0;
  std::uint32_t len = 0;
  bool writable = false;
};

class fake_driver {
 public:
  static constexpr std::uint64_t base = 0x40000000;
  static constexpr std::uint64_t ram_size = 4 << 20;

  explicit fake_driver(std::uint32_t size) : own_ram_(ram_size) {
    ram_ = own_ram_;
    EXPECT_TRUE(memory_.add_local_region({.guest_phys_addr = base, .size = ram_size}, ram_));
    lay_out(size);
  }
  // Drives a ring in `ram`, which the guest sees at `ram_gpa` (the ring at
  // its start, buffers after it); the RAM must outlive the driver.
  fake_driver(std::uint32_t size, std::span<std::byte> ram, std::uint64_t ram_gpa)
      : base_(ram_gpa), ram_(ram) {
    lay_out(size);
  }

  guest_memory& memory() { return memory_; }
  std::uint32_t size() const { return size_; }
  std::uint64_t desc_gpa() const { return base_; }

 private:
  void lay_out(std::uint32_t size) {
    size_ = size;
    avail_gpa_ = base_ + 16ull * size;
    used_gpa_ = align(avail_gpa_ + 6 + 2ull * size, 4);
    next_data_ = align(used_gpa_ + 6 + 8ull * size, 4096);
    for (std::uint32_t i = 0; i < size; ++i)
      free_.push_back(static_cast<std::uint16_t>(size - 1 - i));
  }

 public:
  split_virtqueue::config config(chain_limits limits = {}) const {
    return {.size = size_,
            .addresses = {.desc = base_, .avail = avail_gpa_, .used = used_gpa_},
            .space = address_space::guest_physical,
            .limits = limits};
  }
  split_virtqueue make_queue(chain_limits limits = {}) {
    auto q = split_virtqueue::create(memory_, config(limits));
    EXPECT_TRUE(q) << (q ? "" : q.error().message());
    return std::move(q).value();
  }

  // Guest RAM for buffers: a fresh, zeroed range.
  std::uint64_t alloc(std::uint64_t len, std::uint64_t alignment = 16) {
    const std::uint64_t gpa = align(next_data_, alignment);
    next_data_ = gpa + len;
    EXPECT_LE(next_data_, base_ + ram_.size());
    return gpa;
  }
  std::span<std::byte> bytes(std::uint64_t gpa, std::uint64_t len) {
    return {ram_.data() + (gpa - base_), len};
  }
  void fill(std::uint64_t gpa, std::span<const std::byte> data) {
    std::memcpy(bytes(gpa, data.size()).data(), data.data(), data.size());
  }

  // Raw access, for crafting broken rings.
  void set_desc(std::uint16_t i, std::uint64_t addr, std::uint32_t len, std::uint16_t flags,
                std::uint16_t next) {
    write_desc(base_ + 16ull * i, addr, len, flags, next);
  }
  void write_desc(std::uint64_t at, std::uint64_t addr, std::uint32_t len, std::uint16_t flags,
                  std::uint16_t next) {
    put<std::uint64_t>(at, addr);
    put<std::uint32_t>(at + 8, len);
    put<std::uint16_t>(at + 12, flags);
    put<std::uint16_t>(at + 14, next);
  }
  // Makes `head` available: avail->ring[idx % size] = head, then idx + 1.
  void publish(std::uint16_t head) {
    put<std::uint16_t>(avail_gpa_ + 4 + 2ull * (avail_idx_ % size_), head);
    // A real back-end reads concurrently: descriptors and the ring entry
    // before the index that makes them available.
    std::atomic_thread_fence(std::memory_order_release);
    put<std::uint16_t>(avail_gpa_ + 2, ++avail_idx_);
  }
  void set_avail_idx(std::uint16_t idx) {
    avail_idx_ = idx;
    put<std::uint16_t>(avail_gpa_ + 2, idx);
  }
  void set_avail_flags(std::uint16_t flags) { put<std::uint16_t>(avail_gpa_, flags); }
  std::uint16_t avail_idx() const { return avail_idx_; }

  // Adds a chain through the descriptor table, as a driver does; returns the
  // head.
  std::uint16_t add_chain(const std::vector<buffer>& bufs) {
    EXPECT_GE(free_.size(), bufs.size());
    std::vector<std::uint16_t> ids;
    for (std::size_t k = 0; k < bufs.size(); ++k) {
      ids.push_back(free_.back());
      free_.pop_back();
    }
    for (std::size_t k = 0; k < bufs.size(); ++k) {
      const bool last = k + 1 == bufs.size();
      std::uint16_t flags = bufs[k].writable ? virtq_desc_f_write : 0;
      if (!last) flags |= virtq_desc_f_next;
      set_desc(ids[k], bufs[k].gpa, bufs[k].len, flags, last ? 0 : ids[k + 1]);
    }
    chain_ids_[ids[0]] = ids;
    publish(ids[0]);
    return ids[0];
  }

  // Adds a chain as one indirect descriptor whose table lists `bufs`.
  std::uint16_t add_indirect_chain(const std::vector<buffer>& bufs) {
    const std::uint64_t table = alloc(16 * bufs.size());
    for (std::size_t k = 0; k < bufs.size(); ++k) {
      const bool last = k + 1 == bufs.size();
      std::uint16_t flags = bufs[k].writable ? virtq_desc_f_write : 0;
      if (!last) flags |= virtq_desc_f_next;
      write_desc(table + 16 * k, bufs[k].gpa, bufs[k].len, flags,
                 last ? 0 : static_cast<std::uint16_t>(k + 1));
    }
    const std::uint16_t id = free_.back();
    free_.pop_back();
    set_desc(id, table, static_cast<std::uint32_t>(16 * bufs.size()), virtq_desc_f_indirect, 0);
    chain_ids_[id] = {id};
    publish(id);
    return id;
  }

  // The device's side of the used ring.
  std::uint16_t used_idx() {
    const auto idx = get<std::uint16_t>(used_gpa_ + 2);
    std::atomic_thread_fence(std::memory_order_acquire);  // then the elements
    return idx;
  }
  std::uint16_t used_flags() { return get<std::uint16_t>(used_gpa_); }
  std::pair<std::uint32_t, std::uint32_t> used_elem(std::uint16_t idx) {
    const std::uint64_t at = used_gpa_ + 4 + 8ull * (idx % size_);
    return {get<std::uint32_t>(at), get<std::uint32_t>(at + 4)};
  }
  // Reaps used entries as a driver does, returning their descriptors to the
  // free list; returns how many chains came back.
  std::size_t reap() {
    std::size_t n = 0;
    for (; last_used_ != used_idx(); ++last_used_, ++n) {
      const auto [id, len] = used_elem(last_used_);
      auto& ids = chain_ids_.at(static_cast<std::uint16_t>(id));
      free_.insert(free_.end(), ids.begin(), ids.end());
      ids.clear();
    }
    return n;
  }

  // The same, returning each chain's (head, bytes written); used->idx is
  // read once, so a device that goes on concurrently cannot split the view.
  std::vector<std::pair<std::uint16_t, std::uint32_t>> reap_used() {
    std::vector<std::pair<std::uint16_t, std::uint32_t>> out;
    for (const std::uint16_t end = used_idx(); last_used_ != end; ++last_used_) {
      const auto [id, len] = used_elem(last_used_);
      auto& ids = chain_ids_.at(static_cast<std::uint16_t>(id));
      free_.insert(free_.end(), ids.begin(), ids.end());
      ids.clear();
      out.emplace_back(static_cast<std::uint16_t>(id), len);
    }
    return out;
  }

  std::uint64_t avail_gpa() const { return avail_gpa_; }
  std::uint64_t used_gpa() const { return used_gpa_; }

 private:
  static std::uint64_t align(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }
  template <class T>
  void put(std::uint64_t gpa, T v) {
    std::memcpy(bytes(gpa, sizeof v).data(), &v, sizeof v);  // x86: little-endian
  }
  template <class T>
  T get(std::uint64_t gpa) {
    T v;
    std::memcpy(&v, bytes(gpa, sizeof v).data(), sizeof v);
    return v;
  }

  std::uint32_t size_ = 0;
  std::uint64_t base_ = base;
  std::vector<std::byte> own_ram_;
  std::span<std::byte> ram_;
  guest_memory memory_;
  std::uint64_t avail_gpa_ = 0;
  std::uint64_t used_gpa_ = 0;
  std::uint64_t next_data_ = 0;
  std::uint16_t avail_idx_ = 0;
  std::uint16_t last_used_ = 0;
  std::vector<std::uint16_t> free_;
  std::map<std::uint16_t, std::vector<std::uint16_t>> chain_ids_;
};

}  // namespace hvsock::virtio::testing
