// guest_memory_guard: a front-end that shrinks its memory file turns the
// daemon's accesses to the lost pages into a flag, not a SIGBUS that kills
// it; a SIGBUS anywhere else still kills the process.
#include "virtio/guest_memory_guard.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

#include <hvsock/unique_fd.hpp>

namespace hvsock::virtio {
namespace {

// Two pages of a memfd, mapped shared; the second is cut off by ftruncate.
class shrunk_file {
 public:
  shrunk_file() : page_(static_cast<std::size_t>(::sysconf(_SC_PAGESIZE))) {
    fd_.reset(::memfd_create("guard-test", MFD_CLOEXEC));
    EXPECT_TRUE(fd_);
    EXPECT_EQ(::ftruncate(fd_.get(), static_cast<off_t>(2 * page_)), 0);
    void* m = ::mmap(nullptr, 2 * page_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0);
    EXPECT_NE(m, MAP_FAILED);
    base_ = static_cast<std::byte*>(m);
    std::memset(base_, 0x5a, 2 * page_);
    EXPECT_EQ(::ftruncate(fd_.get(), static_cast<off_t>(page_)), 0);
  }
  ~shrunk_file() { ::munmap(base_, 2 * page_); }
  std::byte* kept() const { return base_; }
  std::byte* lost() const { return base_ + page_; }

 private:
  std::size_t page_;
  unique_fd fd_;
  std::byte* base_ = nullptr;
};

TEST(GuestMemoryGuard, AccessesToLostPagesFaultIntoAFlag) {
  install_guest_memory_fault_handler();
  shrunk_file f;
  (void)take_guest_memory_fault();
  std::byte out[64];
  EXPECT_TRUE(guarded_copy(out, f.kept(), sizeof out));
  EXPECT_EQ(out[0], std::byte{0x5a});
  EXPECT_FALSE(take_guest_memory_fault());

  EXPECT_FALSE(guarded_copy(out, f.lost(), sizeof out));
  EXPECT_TRUE(guest_memory_faulted());
  EXPECT_TRUE(take_guest_memory_fault());
  EXPECT_FALSE(take_guest_memory_fault());  // taking clears it

  EXPECT_EQ(guarded_load(reinterpret_cast<const std::uint16_t*>(f.lost())), 0u);
  EXPECT_EQ(guarded_load(reinterpret_cast<const std::uint64_t*>(f.lost() + 8)), 0u);
  guarded_store(reinterpret_cast<std::uint32_t*>(f.lost()), 7u);
  EXPECT_TRUE(take_guest_memory_fault());
  // Still usable afterwards, for the pages that are there.
  EXPECT_EQ(guarded_load(reinterpret_cast<const std::uint32_t*>(f.kept())), 0x5a5a5a5au);
  EXPECT_FALSE(take_guest_memory_fault());
}

TEST(GuestMemoryGuardDeathTest, ASigbusOutsideAGuardedAccessStillKills) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        install_guest_memory_fault_handler();
        shrunk_file f;
        volatile std::byte b = *f.lost();
        (void)b;
      },
      "");
}

}  // namespace
}  // namespace hvsock::virtio
