// service_counters: counting by reason, and "active" from socket inodes.
#include "daemon/service_counters.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <hvsock/unique_fd.hpp>

namespace hvsock::daemon {
namespace {

const service_id demo = service_id_from_port(5000);
const service_id other = service_id_from_port(5001);

TEST(ServiceCounters, ReasonsFromErrorCodes) {
  EXPECT_EQ(refusal_reason_for(errc::service_disabled), refusal_reason::disabled);
  EXPECT_EQ(refusal_reason_for(errc::connection_refused), refusal_reason::no_listener);
  EXPECT_EQ(refusal_reason_for(errc::backlog_full), refusal_reason::backlog_full);
  EXPECT_EQ(refusal_reason_for(errc::network_unreachable), refusal_reason::unreachable);
  EXPECT_EQ(refusal_reason_for(errc::unknown_partition), refusal_reason::unreachable);
  EXPECT_EQ(refusal_reason_for(errc::parent_on_host), refusal_reason::unreachable);
  EXPECT_EQ(refusal_reason_for(errc::broadcast_not_allowed), refusal_reason::other);
  EXPECT_EQ(refusal_reason_for(std::make_error_code(std::errc::too_many_files_open)),
            refusal_reason::other);
}

TEST(ServiceCounters, CountsPerServiceAndReason) {
  service_counters counters;
  counters.record_accepted(demo, 1, 2);
  counters.record_accepted(demo, 3, 4);
  counters.record_refused(demo, refusal_reason::disabled);
  counters.record_refused(demo, refusal_reason::no_listener);
  counters.record_refused(demo, refusal_reason::no_listener);
  counters.record_refused(demo, refusal_reason::backlog_full);
  counters.record_refused(demo, refusal_reason::unreachable);
  counters.record_refused(demo, refusal_reason::type_mismatch);
  counters.record_refused(demo, refusal_reason::type_mismatch);
  counters.record_refused(demo, refusal_reason::type_mismatch);
  counters.record_refused(demo, refusal_reason::other);
  counters.record_refused(other, refusal_reason::other);
  counters.record_unregistered_refused();
  const service_stats s = counters.stats(demo);
  EXPECT_EQ(s.accepted, 2u);
  EXPECT_EQ(s.active, 2u);
  EXPECT_EQ(s.refused_disabled, 1u);
  EXPECT_EQ(s.refused_no_listener, 2u);
  EXPECT_EQ(s.refused_backlog_full, 1u);
  EXPECT_EQ(s.refused_unreachable, 1u);
  EXPECT_EQ(s.refused_type_mismatch, 3u);
  EXPECT_EQ(s.refused_other, 1u);
  EXPECT_EQ(counters.stats(other).refused_other, 1u);
  EXPECT_EQ(counters.stats(other).accepted, 0u);
  EXPECT_EQ(counters.unregistered_refused(), 1u);
  counters.forget(demo);
  EXPECT_EQ(counters.stats(demo).accepted, 0u);
  EXPECT_EQ(counters.tracked(), 0u);
}

TEST(ServiceCounters, ActiveWhileEitherEndLives) {
  service_counters counters;
  counters.record_accepted(demo, 10, 11);
  counters.record_accepted(demo, 20, 21);
  counters.record_accepted(other, 30, 31);
  counters.prune({11, 20, 30, 31});
  EXPECT_EQ(counters.stats(demo).active, 2u);
  counters.prune({20, 31});
  EXPECT_EQ(counters.stats(demo).active, 1u);
  EXPECT_EQ(counters.stats(other).active, 1u);
  counters.prune({});
  EXPECT_EQ(counters.stats(demo).active, 0u);
  EXPECT_EQ(counters.stats(demo).accepted, 2u);
  EXPECT_EQ(counters.tracked(), 0u);
}

TEST(ServiceCounters, ReadsInodesFromProcNetUnixFormat) {
  const auto path = std::filesystem::temp_directory_path() / "hvsockd-proc-net-unix-test";
  std::ofstream(path) << "Num       RefCount Protocol Flags    Type St Inode Path\n"
                         "0000000000000000: 00000002 00000000 00010000 0001 01 12345 /run/x.sock\n"
                         "0000000000000000: 00000003 00000000 00000000 0001 03 678\n"
                         "garbage\n";
  auto inodes = service_counters::read_unix_inodes(path.string());
  std::filesystem::remove(path);
  ASSERT_TRUE(inodes) << inodes.error().message();
  EXPECT_EQ(*inodes, (std::unordered_set<ino_t>{12345, 678}));
}

TEST(ServiceCounters, RealSocketpairIsActiveUntilBothEndsClose) {
  int ends[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ends), 0);
  unique_fd a(ends[0]), b(ends[1]);
  struct stat sa {
  }, sb{};
  ASSERT_EQ(::fstat(a.get(), &sa), 0);
  ASSERT_EQ(::fstat(b.get(), &sb), 0);
  service_counters counters;
  counters.record_accepted(demo, sa.st_ino, sb.st_ino);
  ASSERT_TRUE(counters.refresh_active());
  EXPECT_EQ(counters.stats(demo).active, 1u);
  a.reset();
  ASSERT_TRUE(counters.refresh_active());
  EXPECT_EQ(counters.stats(demo).active, 1u);
  b.reset();
  ASSERT_TRUE(counters.refresh_active());
  EXPECT_EQ(counters.stats(demo).active, 0u);
}

}  // namespace
}  // namespace hvsock::daemon
