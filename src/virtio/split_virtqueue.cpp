#include "virtio/split_virtqueue.hpp"

#include <atomic>
#include <bit>
#include <cstdio>
#include <cstring>
#include <string>

#include "virtio/guest_memory_guard.hpp"

namespace hvsock::virtio {
namespace {

// Ring layout (virtio 1.x, without VIRTIO_RING_F_EVENT_IDX, so the trailing
// used_event / avail_event words are not part of what must be mapped).
constexpr std::size_t desc_entry_size = 16;
constexpr std::size_t avail_flags_off = 0;
constexpr std::size_t avail_idx_off = 2;
constexpr std::size_t avail_ring_off = 4;
constexpr std::size_t used_flags_off = 0;
constexpr std::size_t used_idx_off = 2;
constexpr std::size_t used_ring_off = 4;
constexpr std::size_t used_elem_size = 8;

constexpr std::uint16_t known_desc_flags =
    virtq_desc_f_next | virtq_desc_f_write | virtq_desc_f_indirect;

// Ring fields are little-endian and the guest reads and writes them
// concurrently, so each access is one atomic load or store of the whole field
// (never torn), converted explicitly. Alignment is checked at set-up.
template <class T>
T to_le(T v) {
  if constexpr (std::endian::native == std::endian::little) {
    return v;
  } else if constexpr (sizeof(T) == 2) {
    return __builtin_bswap16(v);
  } else if constexpr (sizeof(T) == 4) {
    return __builtin_bswap32(v);
  } else {
    return __builtin_bswap64(v);
  }
}

// Every access goes through guest_memory_guard: the front-end can make any
// of these pages vanish (SIGBUS) at any time.
template <class T>
T load_le(const std::byte* p) {
  T v;
  if (reinterpret_cast<std::uintptr_t>(p) % sizeof(T) == 0) {
    v = guarded_load(reinterpret_cast<const T*>(p));
  } else {
    // Only indirect tables can be misaligned (the spec does not require their
    // alignment); the field may then tear, which the validation copes with.
    if (!guarded_copy(&v, p, sizeof v)) v = 0;
  }
  return to_le(v);
}

template <class T>
void store_le(std::byte* p, T v) {
  guarded_store(reinterpret_cast<T*>(p), to_le(v));
}

std::string hex(std::uint64_t v) {
  char text[24];
  std::snprintf(text, sizeof text, "0x%llx", static_cast<unsigned long long>(v));
  return text;
}

failure broken(const std::string& what) {
  return failure(errc::protocol_error, "virtqueue: " + what);
}

}  // namespace

struct split_virtqueue::walk_state {
  descriptor_chain chain;
  std::uint32_t descriptors = 0;  // visited, direct and indirect
  bool seen_writable = false;
};

result<split_virtqueue> split_virtqueue::create(const guest_memory& memory, const config& cfg) {
  const std::uint32_t n = cfg.size;
  if (n == 0 || n > max_size || !std::has_single_bit(n))
    return failure(errc::invalid_argument, "virtqueue: size " + std::to_string(n) +
                                               " is not a power of two in 1.." +
                                               std::to_string(max_size));
  if (cfg.limits.max_descriptors == 0)
    return failure(errc::invalid_argument, "virtqueue: max_descriptors must be at least 1");
  struct part {
    const char* name;
    std::uint64_t addr;
    std::uint64_t length;
    std::size_t align;
  };
  const part parts[] = {
      {"descriptor table", cfg.addresses.desc, desc_entry_size * n, 16},
      {"available ring", cfg.addresses.avail, avail_ring_off + 2ull * n, 2},
      {"used ring", cfg.addresses.used, used_ring_off + used_elem_size * n, 4},
  };
  std::byte* host[3] = {};
  for (int i = 0; i < 3; ++i) {
    const part& p = parts[i];
    if (p.addr % p.align != 0)
      return failure(errc::invalid_argument, std::string("virtqueue: ") + p.name + " at " +
                                                 hex(p.addr) + " is not " +
                                                 std::to_string(p.align) + "-byte aligned");
    auto span = cfg.space == address_space::guest_physical
                    ? memory.translate(p.addr, p.length)
                    : memory.translate_user(p.addr, p.length);
    if (!span)
      return span.error().with_context(std::string("virtqueue: ") + p.name + " of size " +
                                       std::to_string(n));
    // The atomic accesses need the host pointer aligned too; a region mapped
    // at an odd offset could break that even when the address is aligned.
    if (reinterpret_cast<std::uintptr_t>(span->data()) % p.align != 0)
      return failure(errc::invalid_argument, std::string("virtqueue: ") + p.name + " at " +
                                                 hex(p.addr) + " is misaligned in this process");
    host[i] = span->data();
  }
  split_virtqueue q;
  q.memory_ = &memory;
  q.desc_ = host[0];
  q.avail_ = host[1];
  q.used_ = host[2];
  q.size_ = n;
  q.last_avail_idx_ = cfg.last_avail_idx;
  q.used_idx_ = load_le<std::uint16_t>(q.used_ + used_idx_off);
  q.limits_ = cfg.limits;
  return q;
}

result<void> split_virtqueue::add_buffer(walk_state& walk, const raw_desc& d) const {
  if (++walk.descriptors > limits_.max_descriptors)
    return broken("chain " + std::to_string(walk.chain.head) + " has more than " +
                  std::to_string(limits_.max_descriptors) + " descriptors");
  const bool writable = (d.flags & virtq_desc_f_write) != 0;
  if (!writable && walk.seen_writable)
    return broken("chain " + std::to_string(walk.chain.head) +
                  " has a readable buffer after a writable one");
  walk.seen_writable = walk.seen_writable || writable;
  auto& chain = walk.chain;
  const std::uint64_t total = chain.readable_length + chain.writable_length + d.len;
  if (total > limits_.max_total_length)
    return broken("chain " + std::to_string(chain.head) + " is longer than " +
                  std::to_string(limits_.max_total_length) + " bytes");
  // A zero-length buffer carries nothing; skipping it avoids handing out an
  // empty span whose address was never checked.
  if (d.len == 0) return {};
  auto span = memory_->translate(d.addr, d.len);
  if (!span)
    return broken("chain " + std::to_string(chain.head) + ": buffer [" + hex(d.addr) + ", +" +
                  hex(d.len) + ") is outside guest memory");
  if (writable) {
    chain.writable.push_back(*span);
    chain.writable_length += d.len;
  } else {
    chain.readable.push_back(*span);
    chain.readable_length += d.len;
  }
  return {};
}

result<void> split_virtqueue::walk_indirect(walk_state& walk, const raw_desc& d) const {
  const std::string where = "chain " + std::to_string(walk.chain.head) + ": indirect table";
  if (d.flags & virtq_desc_f_next) return broken(where + " descriptor also has NEXT set");
  if (d.len == 0 || d.len % desc_entry_size != 0)
    return broken(where + " length " + std::to_string(d.len) + " is not a multiple of 16");
  const std::uint32_t entries = d.len / desc_entry_size;
  // Entries beyond the chain bound could never be walked; refusing them
  // early keeps a huge table from costing anything.
  if (entries > limits_.max_descriptors)
    return broken(where + " has " + std::to_string(entries) + " entries, more than " +
                  std::to_string(limits_.max_descriptors));
  auto table = memory_->translate(d.addr, d.len);
  if (!table)
    return broken(where + " [" + hex(d.addr) + ", +" + hex(d.len) + ") is outside guest memory");
  std::uint32_t i = 0;
  // A chain inside the table may visit each entry at most once: `entries`
  // steps bound it and catch loops.
  for (std::uint32_t steps = 0;; ++steps) {
    if (steps == entries)
      return broken(where + " loops (more than " + std::to_string(entries) + " steps)");
    const std::byte* p = table->data() + std::size_t{i} * desc_entry_size;
    const raw_desc e{load_le<std::uint64_t>(p), load_le<std::uint32_t>(p + 8),
                     load_le<std::uint16_t>(p + 12), load_le<std::uint16_t>(p + 14)};
    if (e.flags & virtq_desc_f_indirect) return broken(where + " contains an indirect descriptor");
    if (e.flags & ~known_desc_flags)
      return broken(where + " entry " + std::to_string(i) + " has unknown flags " + hex(e.flags));
    if (auto ok = add_buffer(walk, e); !ok) return ok;
    if (!(e.flags & virtq_desc_f_next)) return {};
    if (e.next >= entries)
      return broken(where + " entry " + std::to_string(i) + " points at " + std::to_string(e.next) +
                    ", past its " + std::to_string(entries) + " entries");
    i = e.next;
  }
}

result<std::optional<descriptor_chain>> split_virtqueue::pop() {
  const std::uint16_t avail_idx = load_le<std::uint16_t>(avail_ + avail_idx_off);
  const auto pending = static_cast<std::uint16_t>(avail_idx - last_avail_idx_);
  if (pending > size_)
    return broken("avail->idx " + std::to_string(avail_idx) + " is " + std::to_string(pending) +
                  " ahead of the device's " + std::to_string(last_avail_idx_) +
                  ", more than the queue size " + std::to_string(size_));
  if (pending == 0) return std::optional<descriptor_chain>();
  // Pairs with the driver's write barrier before it bumps avail->idx: the
  // ring entry and the descriptors it names are visible from here on.
  std::atomic_thread_fence(std::memory_order_acquire);

  const std::size_t slot = last_avail_idx_ & (size_ - 1);
  const std::uint16_t head = load_le<std::uint16_t>(avail_ + avail_ring_off + 2 * slot);
  if (head >= size_)
    return broken("avail ring slot " + std::to_string(slot) + " names descriptor " +
                  std::to_string(head) + ", not below the queue size " + std::to_string(size_));

  walk_state walk;
  walk.chain.head = head;
  std::uint16_t i = head;
  // Each descriptor of the table may appear once in a chain: more than size_
  // steps means a loop.
  for (std::uint32_t steps = 0;; ++steps) {
    if (steps == size_)
      return broken("chain " + std::to_string(head) + " loops (more than " + std::to_string(size_) +
                    " descriptors)");
    const std::byte* p = desc_ + std::size_t{i} * desc_entry_size;
    const raw_desc d{load_le<std::uint64_t>(p), load_le<std::uint32_t>(p + 8),
                     load_le<std::uint16_t>(p + 12), load_le<std::uint16_t>(p + 14)};
    if (d.flags & ~known_desc_flags)
      return broken("descriptor " + std::to_string(i) + " has unknown flags " + hex(d.flags));
    if (d.flags & virtq_desc_f_indirect) {
      // NEXT is illegal with INDIRECT, so the indirect table ends the chain.
      if (auto ok = walk_indirect(walk, d); !ok) return ok.error();
      break;
    }
    if (auto ok = add_buffer(walk, d); !ok) return ok.error();
    if (!(d.flags & virtq_desc_f_next)) break;
    if (d.next >= size_)
      return broken("descriptor " + std::to_string(i) + " points at " + std::to_string(d.next) +
                    ", not below the queue size " + std::to_string(size_));
    i = d.next;
  }
  ++last_avail_idx_;
  return std::optional<descriptor_chain>(std::move(walk.chain));
}

result<void> split_virtqueue::unpop(std::uint16_t count) {
  if (count > in_flight())
    return failure(errc::invalid_argument, "virtqueue: cannot give back " + std::to_string(count) +
                                               " chains, only " + std::to_string(in_flight()) +
                                               " in flight");
  last_avail_idx_ = static_cast<std::uint16_t>(last_avail_idx_ - count);
  return {};
}

result<void> split_virtqueue::push_used(std::uint16_t head, std::uint32_t written) {
  if (head >= size_)
    return failure(errc::invalid_argument, "virtqueue: used head " + std::to_string(head) +
                                               " is not below the queue size " +
                                               std::to_string(size_));
  if (in_flight() == 0)
    return failure(errc::invalid_argument,
                   "virtqueue: push_used(" + std::to_string(head) + ") with no chain in flight");
  std::byte* elem = used_ + used_ring_off + used_elem_size * (used_idx_ & (size_ - 1));
  store_le<std::uint32_t>(elem, head);
  store_le<std::uint32_t>(elem + 4, written);
  ++used_idx_;
  // The element must be visible before the index that publishes it.
  std::atomic_thread_fence(std::memory_order_release);
  store_le<std::uint16_t>(used_ + used_idx_off, used_idx_);
  return {};
}

bool split_virtqueue::needs_notification() const {
  // Store (used->idx) then load (avail->flags) needs a full barrier: the
  // driver clears NO_INTERRUPT and then re-reads used->idx, and one of the two
  // sides must see the other's write.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return (load_le<std::uint16_t>(avail_ + avail_flags_off) & virtq_avail_f_no_interrupt) == 0;
}

void split_virtqueue::set_kicks_suppressed(bool suppressed) {
  store_le<std::uint16_t>(used_ + used_flags_off, suppressed ? virtq_used_f_no_notify : 0);
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

}  // namespace hvsock::virtio
