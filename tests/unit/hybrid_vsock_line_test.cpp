// The hybrid vsock lines (protocol/hybrid_vsock.hpp): writing them, reading
// them as Firecracker does, and read_hybrid_line over a real socketpair
// never taking a byte past the '\n'.
#include "protocol/hybrid_vsock.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>

#include <hvsock/unique_fd.hpp>

namespace hvsock::detail {
namespace {

TEST(HybridVsockLine, WritesTheLines) {
  EXPECT_EQ(hybrid_connect_line(52), "CONNECT 52\n");
  EXPECT_EQ(hybrid_ok_line(4294967295u), "OK 4294967295\n");
  EXPECT_LE(hybrid_connect_line(4294967295u).size(), hybrid_max_line);
}

TEST(HybridVsockLine, ReadsWhatFirecrackerReads) {
  EXPECT_EQ(parse_hybrid_connect("CONNECT 52"), 52u);
  EXPECT_EQ(parse_hybrid_connect("CONNECT 0"), 0u);
  EXPECT_EQ(parse_hybrid_connect("CONNECT 4294967295"), 4294967295u);
  EXPECT_EQ(parse_hybrid_connect("CONNECT \t 52 \r"), 52u);
  EXPECT_EQ(parse_hybrid_ok("OK 1073741824"), 1073741824u);
  for (const char* bad : {"", "CONNECT", "CONNECT ", "CONNECT52", "connect 52", "CONNECT -52",
                          "CONNECT +52", "CONNECT 4294967296", "CONNECT 52 53", "CONNECT 5x",
                          " CONNECT 52", "CONNECT 52\r\r", "OK 52"})
    EXPECT_FALSE(parse_hybrid_connect(bad)) << '"' << bad << '"';
  EXPECT_FALSE(parse_hybrid_ok("CONNECT 52"));
  EXPECT_FALSE(parse_hybrid_ok("OK"));
}

struct pair_of_ends {
  unique_fd a, b;
};

pair_of_ends stream_pair() {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  return {unique_fd(fds[0]), unique_fd(fds[1])};
}

TEST(HybridVsockLine, ReadsUpToTheNewlineAndNotAByteFurther) {
  auto p = stream_pair();
  std::string line;
  auto got = read_hybrid_line(p.b.get(), line);  // nothing yet
  ASSERT_TRUE(got);
  EXPECT_FALSE(*got);
  ASSERT_EQ(::write(p.a.get(), "CONN", 4), 4);
  got = read_hybrid_line(p.b.get(), line);
  ASSERT_TRUE(got);
  EXPECT_FALSE(*got);
  const std::string rest = "ECT 52\nstream bytes";
  ASSERT_EQ(::write(p.a.get(), rest.data(), rest.size()), static_cast<ssize_t>(rest.size()));
  got = read_hybrid_line(p.b.get(), line);
  ASSERT_TRUE(got);
  EXPECT_TRUE(*got);
  EXPECT_EQ(line, "CONNECT 52");
  char buf[64];
  const ssize_t n = ::read(p.b.get(), buf, sizeof buf);
  EXPECT_EQ(std::string(buf, static_cast<std::size_t>(n > 0 ? n : 0)), "stream bytes");
}

TEST(HybridVsockLine, FailsOnEofAndOnAnOverlongLine) {
  {
    auto p = stream_pair();
    p.a.reset();
    std::string line;
    EXPECT_FALSE(read_hybrid_line(p.b.get(), line));
  }
  auto p = stream_pair();
  const std::string long_line(hybrid_max_line + 10, 'x');
  ASSERT_EQ(::write(p.a.get(), long_line.data(), long_line.size()),
            static_cast<ssize_t>(long_line.size()));
  std::string line;
  result<bool> got = false;
  for (int i = 0; i < 3 && got && !*got; ++i) got = read_hybrid_line(p.b.get(), line);
  ASSERT_FALSE(got);
  EXPECT_NE(got.error().message().find("longer than"), std::string::npos);
}

}  // namespace
}  // namespace hvsock::detail
