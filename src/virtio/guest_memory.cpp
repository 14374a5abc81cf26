#include "virtio/guest_memory.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>
#include <utility>

#include "virtio/guest_memory_guard.hpp"

namespace hvsock::virtio {
namespace {

std::string hex(std::uint64_t v) {
  char text[24];
  std::snprintf(text, sizeof text, "0x%llx", static_cast<unsigned long long>(v));
  return text;
}

// [start, start + length) within [base, base + size), without overflow.
bool contains(std::uint64_t base, std::uint64_t size, std::uint64_t start, std::uint64_t length) {
  return start >= base && start - base <= size && length <= size - (start - base);
}

}  // namespace

guest_memory::guest_memory(guest_memory&& other) noexcept
    : regions_(std::exchange(other.regions_, {})) {}

guest_memory& guest_memory::operator=(guest_memory&& other) noexcept {
  if (this != &other) {
    clear();
    regions_ = std::exchange(other.regions_, {});
  }
  return *this;
}

guest_memory::~guest_memory() { clear(); }

void guest_memory::clear() {
  for (auto& r : regions_)
    if (r.mapped_length != 0) ::munmap(r.host - r.map_adjust, r.mapped_length);
  regions_.clear();
}

result<void> guest_memory::check_new(const memory_region_spec& spec) const {
  if (regions_.size() >= max_regions)
    return failure(errc::limit_reached,
                   "guest memory: more than " + std::to_string(max_regions) + " regions");
  if (spec.size == 0) return failure(errc::invalid_argument, "guest memory: empty region");
  if (spec.guest_phys_addr + spec.size < spec.guest_phys_addr ||
      spec.user_addr + spec.size < spec.user_addr ||
      spec.mmap_offset + spec.size < spec.mmap_offset)
    return failure(errc::invalid_argument,
                   "guest memory: region at " + hex(spec.guest_phys_addr) + " wraps around");
  for (const auto& r : regions_) {
    const auto& s = r.spec;
    const bool gpa_overlap = spec.guest_phys_addr < s.guest_phys_addr + s.size &&
                             s.guest_phys_addr < spec.guest_phys_addr + spec.size;
    if (gpa_overlap)
      return failure(errc::invalid_argument,
                     "guest memory: region at " + hex(spec.guest_phys_addr) +
                         " overlaps the region at " + hex(s.guest_phys_addr));
  }
  return {};
}

result<void> guest_memory::add_region(const memory_region_spec& spec, int fd) {
  if (auto ok = check_new(spec); !ok) return ok;
  // The front-end can shrink this file later; touching the lost pages must
  // not kill the daemon (guest_memory_guard.hpp).
  install_guest_memory_fault_handler();
  const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  const std::uint64_t adjust = spec.mmap_offset % page;
  const std::uint64_t length = spec.size + adjust;
  void* base = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd,
                      static_cast<off_t>(spec.mmap_offset - adjust));
  if (base == MAP_FAILED)
    return make_system_error(errno, "guest memory: mmap region at " + hex(spec.guest_phys_addr));
  region r;
  r.spec = spec;
  r.host = static_cast<std::byte*>(base) + adjust;
  r.mapped_length = length;
  r.map_adjust = adjust;
  regions_.push_back(r);
  return {};
}

result<void> guest_memory::add_local_region(const memory_region_spec& spec,
                                            std::span<std::byte> memory) {
  if (memory.size() < spec.size)
    return failure(errc::invalid_argument, "guest memory: local region smaller than its size");
  if (auto ok = check_new(spec); !ok) return ok;
  region r;
  r.spec = spec;
  r.host = memory.data();
  regions_.push_back(r);
  return {};
}

result<std::span<std::byte>> guest_memory::translate(std::uint64_t gpa,
                                                     std::uint64_t length) const {
  for (const auto& r : regions_)
    if (contains(r.spec.guest_phys_addr, r.spec.size, gpa, length))
      return std::span<std::byte>(r.host + (gpa - r.spec.guest_phys_addr), length);
  return failure(errc::invalid_argument, "guest memory: [" + hex(gpa) + ", +" + hex(length) +
                                             ") is not inside one memory region");
}

result<std::span<std::byte>> guest_memory::translate_user(std::uint64_t user_addr,
                                                          std::uint64_t length) const {
  for (const auto& r : regions_)
    if (contains(r.spec.user_addr, r.spec.size, user_addr, length))
      return std::span<std::byte>(r.host + (user_addr - r.spec.user_addr), length);
  return failure(errc::invalid_argument, "guest memory: front-end address [" + hex(user_addr) +
                                             ", +" + hex(length) +
                                             ") is not inside one memory region");
}

}  // namespace hvsock::virtio
