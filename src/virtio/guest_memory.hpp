// guest_memory: a VM's RAM as the vhost-user front-end (QEMU) shares it: a
// table of regions, each an mmap of a file descriptor QEMU sent, and address
// translation from guest-physical addresses (what descriptors hold) and from
// front-end virtual addresses (what vring set-up messages hold) to pointers
// in this process.
//
// Everything a guest writes into a descriptor is untrusted: translate()
// refuses any range that is not entirely inside one region, and never
// overflows on the way. Thread safety: none (owned by one device, used on the
// daemon's loop thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <hvsock/result.hpp>
#include <hvsock/unique_fd.hpp>

namespace hvsock::virtio {

struct memory_region_spec {
  std::uint64_t guest_phys_addr = 0;  // where the guest sees it
  std::uint64_t size = 0;             // bytes
  std::uint64_t user_addr = 0;        // where the front-end (QEMU) has it mapped
  std::uint64_t mmap_offset = 0;      // offset of the region in the fd
};

class guest_memory {
 public:
  // The most regions a table may hold (vhost-user's VHOST_MEMORY_BASELINE_NREGIONS).
  static constexpr std::size_t max_regions = 8;

  guest_memory() = default;
  guest_memory(guest_memory&&) noexcept;
  guest_memory& operator=(guest_memory&&) noexcept;
  guest_memory(const guest_memory&) = delete;
  guest_memory& operator=(const guest_memory&) = delete;
  ~guest_memory();  // unmaps every region

  // Maps `size` bytes of `fd` at `mmap_offset` (shared, read-write) and adds
  // it. Refuses empty, overflowing or overlapping regions and more than
  // max_regions. The fd may be closed afterwards.
  result<void> add_region(const memory_region_spec& spec, int fd);

  // Adds memory this process already has (for tests and the fuzzer): no
  // mapping is made or unmapped.
  result<void> add_local_region(const memory_region_spec& spec, std::span<std::byte> memory);

  // The bytes at guest-physical [gpa, gpa + length), or errc::invalid_argument
  // when any of it lies outside every region (or across two).
  result<std::span<std::byte>> translate(std::uint64_t gpa, std::uint64_t length) const;
  // The same for front-end virtual addresses.
  result<std::span<std::byte>> translate_user(std::uint64_t user_addr, std::uint64_t length) const;

  std::size_t region_count() const { return regions_.size(); }
  void clear();

 private:
  struct region {
    memory_region_spec spec;
    std::byte* host = nullptr;
    std::size_t mapped_length = 0;  // 0 when not ours to unmap
    std::size_t map_adjust = 0;     // page alignment of mmap_offset
  };
  result<void> check_new(const memory_region_spec& spec) const;

  std::vector<region> regions_;
};

}  // namespace hvsock::virtio
