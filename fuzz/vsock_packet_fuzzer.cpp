// vsock_packet_fuzzer: arbitrary bytes as a guest's RAM holding a split
// virtqueue, driven the way hvsockd drives a transmit queue: pop chains,
// parse each as a vsock packet, answer into its writable buffers, return it.
// Whatever the bytes, nothing may read or write outside the guest RAM, crash
// or hang; a broken ring must end in an error.
//
// Input: byte 0 picks the queue size (1..256); byte 1 the last_avail_idx's
// low byte; the rest is the start of a 64 KiB guest RAM at guest-physical
// 0x10000 (zero-filled beyond the input), with the descriptor table at its
// start and the available and used rings right after it.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "virtio/guest_memory.hpp"
#include "virtio/split_virtqueue.hpp"
#include "virtio/vsock_packet.hpp"

namespace {

using namespace hvsock::virtio;

constexpr std::uint64_t ram_base = 0x10000;
constexpr std::size_t ram_size = 64 * 1024;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const std::uint32_t queue_size = 1u << (data[0] % 9);
  const std::uint16_t start = data[1];
  data += 2;
  size -= 2;

  // A fresh buffer each run, sized exactly, so ASan catches any access past it.
  std::vector<std::byte> ram(ram_size);
  std::memcpy(ram.data(), data, size < ram_size ? size : ram_size);
  guest_memory memory;
  if (!memory.add_local_region({.guest_phys_addr = ram_base, .size = ram_size}, ram)) return 0;

  const std::uint64_t desc = ram_base;
  const std::uint64_t avail = desc + 16ull * queue_size;
  const std::uint64_t used = (avail + 6 + 2ull * queue_size + 3) & ~3ull;
  auto created = split_virtqueue::create(
      memory, {.size = queue_size,
               .addresses = {.desc = desc, .avail = avail, .used = used},
               .space = address_space::guest_physical,
               .last_avail_idx = start,
               .limits = {.max_total_length = ram_size, .max_descriptors = 64}});
  if (!created) __builtin_trap();  // the layout above is always valid
  split_virtqueue q = std::move(created).value();

  // More pops than the ring holds: the second pass sees the same avail->idx.
  for (std::uint32_t i = 0; i < 2 * queue_size; ++i) {
    auto popped = q.pop();
    if (!popped || !popped->has_value()) break;
    const descriptor_chain& chain = **popped;
    // Every span must lie inside the RAM (ASan would also catch a stray one).
    for (const auto* list : {&chain.readable, &chain.writable})
      for (const auto& s : *list)
        if (s.data() < ram.data() || s.data() + s.size() > ram.data() + ram.size())
          __builtin_trap();

    parsed_packet p = parse_packet(chain, 4096);
    std::uint32_t written = 0;
    if (p.status == packet_status::ok) {
      std::vector<std::byte> payload(p.payload_size());
      p.copy_payload(payload);
      // Echo it back, as a loopback device would.
      virtio_vsock_hdr reply = p.header;
      if (auto n = write_packet(chain, reply, payload)) written = *n;
    } else if (p.status == packet_status::reply_rst) {
      if (auto n = write_packet(chain, make_rst_reply(p.header), {})) written = *n;
    }
    // May fail when the ring's used->idx made the queue think nothing is in
    // flight; that is the device's bookkeeping, not a memory error.
    (void)q.push_used(chain.head, written);
    (void)q.needs_notification();
  }
  return 0;
}
