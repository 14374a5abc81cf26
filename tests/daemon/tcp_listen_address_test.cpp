// tcp_listen_address: what --metrics-listen accepts, and the loopback
// default for a bare port.
#include "daemon/tcp_listen_address.hpp"

#include <gtest/gtest.h>

namespace hvsock::daemon {
namespace {

std::string parsed(std::string_view text) {
  auto a = parse_tcp_listen_address(text);
  return a ? to_string(a->address) : "error: " + a.error().message();
}

TEST(TcpListenAddress, ExplicitAddresses) {
  EXPECT_EQ(parsed("127.0.0.1:9731"), "127.0.0.1:9731");
  EXPECT_EQ(parsed("0.0.0.0:80"), "0.0.0.0:80");
  EXPECT_EQ(parsed("[::1]:9731"), "[::1]:9731");
  EXPECT_EQ(parsed("[::]:0"), "[::]:0");
  EXPECT_EQ(parsed("localhost:9731"), "127.0.0.1:9731");
}

TEST(TcpListenAddress, BarePortMeansLoopback) {
  EXPECT_EQ(parsed(":9731"), "127.0.0.1:9731");
  EXPECT_EQ(parsed("9731"), "127.0.0.1:9731");
  EXPECT_EQ(parsed("0"), "127.0.0.1:0");
}

TEST(TcpListenAddress, BadValuesSayWhy) {
  for (const char* bad :
       {"", ":", "127.0.0.1:", "127.0.0.1:port", "127.0.0.1:65536", "::1:80", "[::1]", "[::1]80",
        "[nonsense]:80", "example.org:80", "1.2.3:80", "127.0.0.1:-1", ":99999"}) {
    auto a = parse_tcp_listen_address(bad);
    ASSERT_FALSE(a) << bad;
    EXPECT_EQ(a.error().code(), errc::invalid_argument) << bad;
    EXPECT_EQ(a.error().message().find('\n'), std::string::npos) << bad;
    EXPECT_NE(a.error().message().find(std::string("\"") + bad + "\""), std::string::npos) << bad;
  }
  EXPECT_NE(parsed("::1:80").find("brackets"), std::string::npos);
  EXPECT_NE(parsed("127.0.0.1:65536").find("0..65535"), std::string::npos);
}

TEST(TcpListenAddress, ListensOnLoopbackWithAPickedPort) {
  auto where = parse_tcp_listen_address("127.0.0.1:0");
  ASSERT_TRUE(where);
  auto fd = listen_tcp(*where, 4);
  ASSERT_TRUE(fd) << fd.error().message();
  auto bound = bound_address(fd->get());
  ASSERT_TRUE(bound);
  const std::string text = to_string(bound->address);
  EXPECT_EQ(text.rfind("127.0.0.1:", 0), 0u) << text;
  EXPECT_NE(text, "127.0.0.1:0");
  // The same port again is taken.
  auto again = listen_tcp(*bound, 4);
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().message().find("bind " + text), std::string::npos)
      << again.error().message();
}

}  // namespace
}  // namespace hvsock::daemon
