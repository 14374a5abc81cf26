// guest_memory: translation stays inside regions whatever the guest writes.
#include "virtio/guest_memory.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <limits>
#include <vector>

namespace hvsock::virtio {
namespace {

constexpr std::uint64_t max64 = std::numeric_limits<std::uint64_t>::max();

TEST(GuestMemory, TranslatesInsideOneRegionOnly) {
  std::vector<std::byte> low(4096), high(8192);
  guest_memory mem;
  ASSERT_TRUE(
      mem.add_local_region({.guest_phys_addr = 0, .size = 4096, .user_addr = 0x7f0000000000}, low));
  ASSERT_TRUE(mem.add_local_region(
      {.guest_phys_addr = 0x100000, .size = 8192, .user_addr = 0x7f0000100000}, high));
  auto a = mem.translate(16, 32);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->data(), low.data() + 16);
  EXPECT_EQ(a->size(), 32u);
  auto b = mem.translate(0x100000 + 8000, 192);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->data(), high.data() + 8000);
  auto u = mem.translate_user(0x7f0000100010, 16);
  ASSERT_TRUE(u);
  EXPECT_EQ(u->data(), high.data() + 16);

  EXPECT_FALSE(mem.translate(4090, 16)) << "crosses the end of a region";
  EXPECT_FALSE(mem.translate(4096, 1)) << "in the gap";
  EXPECT_FALSE(mem.translate(0x100000 + 8192, 1)) << "just past the end";
  EXPECT_FALSE(mem.translate(0x100000, max64)) << "huge length";
  EXPECT_FALSE(mem.translate(max64, 2)) << "wraps around";
  EXPECT_FALSE(mem.translate_user(0x7f0000000000 + 4000, 200));
}

TEST(GuestMemory, RefusesBadTables) {
  std::vector<std::byte> buf(4096);
  guest_memory mem;
  EXPECT_FALSE(mem.add_local_region({.guest_phys_addr = 0, .size = 0}, buf));
  EXPECT_FALSE(mem.add_local_region({.guest_phys_addr = max64 - 10, .size = 4096}, buf));
  EXPECT_FALSE(mem.add_local_region({.guest_phys_addr = 0, .size = 8192}, buf)) << "too small";
  ASSERT_TRUE(mem.add_local_region({.guest_phys_addr = 0x1000, .size = 4096}, buf));
  auto overlap = mem.add_local_region({.guest_phys_addr = 0x1800, .size = 1024}, buf);
  ASSERT_FALSE(overlap);
  EXPECT_NE(overlap.error().message().find("overlaps"), std::string::npos);
  for (std::uint64_t i = 1; i < guest_memory::max_regions; ++i)
    ASSERT_TRUE(mem.add_local_region({.guest_phys_addr = 0x10000 * i, .size = 16}, buf));
  auto too_many = mem.add_local_region({.guest_phys_addr = 0x900000, .size = 16}, buf);
  ASSERT_FALSE(too_many);
  EXPECT_EQ(too_many.error().code(), make_error_code(errc::limit_reached));
}

TEST(GuestMemory, MapsAMemfdSharedWithTheFrontEnd) {
  const int raw = ::memfd_create("guest-ram", MFD_CLOEXEC);
  ASSERT_GE(raw, 0);
  unique_fd fd(raw);
  const long page = ::sysconf(_SC_PAGESIZE);
  ASSERT_EQ(::ftruncate(fd.get(), 4 * page), 0);
  // The "front-end" view of the same memory.
  void* front = ::mmap(nullptr, 4 * page, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  ASSERT_NE(front, MAP_FAILED);
  std::memcpy(static_cast<char*>(front) + page + 100, "hello", 5);

  guest_memory mem;
  // An offset that is not page-aligned must still map correctly.
  ASSERT_TRUE(mem.add_region({.guest_phys_addr = 0x40000000,
                              .size = static_cast<std::uint64_t>(2 * page),
                              .user_addr = 0x7000,
                              .mmap_offset = static_cast<std::uint64_t>(page + 64)},
                             fd.get()));
  auto view = mem.translate(0x40000000 + 36, 5);
  ASSERT_TRUE(view) << view.error().message();
  EXPECT_EQ(std::memcmp(view->data(), "hello", 5), 0);
  std::memcpy(view->data(), "HELLO", 5);
  EXPECT_EQ(std::memcmp(static_cast<char*>(front) + page + 100, "HELLO", 5), 0);
  ::munmap(front, 4 * page);

  guest_memory moved = std::move(mem);
  EXPECT_EQ(moved.region_count(), 1u);
  EXPECT_EQ(mem.region_count(), 0u);  // NOLINT(bugprone-use-after-move): defined as empty
}

}  // namespace
}  // namespace hvsock::virtio
