// The data path: what a connected pair of processes sees. The daemon hands
// each side one end of a kernel socketpair, so half-close, poll readiness and
// large transfers must behave exactly as kernel sockets do.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/resource.h>

#include <cstring>
#include <thread>
#include <vector>

#include <hvsock/hvsock.hpp>

#include "switch_fixture.hpp"

namespace hvsock::test {
namespace {

using namespace std::chrono_literals;

// A deterministic byte stream and a word-at-a-time checksum over it, so two
// processes can agree on 1 GiB of data without sharing it.
struct pattern {
  std::uint64_t state = 0x9e3779b97f4a7c15ull;
  void fill(std::byte* out, std::size_t size) {
    for (std::size_t i = 0; i + 8 <= size; i += 8) {
      state ^= state << 13;
      state ^= state >> 7;
      state ^= state << 17;
      std::memcpy(out + i, &state, 8);
    }
  }
};

struct checksum {
  std::uint64_t value = 1469598103934665603ull;
  std::uint64_t bytes = 0;
  void add(const std::byte* data, std::size_t size) {
    for (std::size_t i = 0; i < size; ++i) {
      value = (value ^ static_cast<std::uint64_t>(data[i])) * 1099511628211ull;
    }
    bytes += size;
  }
};

bool readable(int fd, int wait_ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, wait_ms) == 1 && (p.revents & POLLIN) != 0;
}

bool writable(int fd) {
  pollfd p{fd, POLLOUT, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLOUT) != 0;
}

std::string read_all(stream& s) {
  std::string data;
  char buf[4096];
  for (;;) {
    auto n = s.read(buf, sizeof buf);
    if (!n || *n == 0) return data;
    data.append(buf, *n);
  }
}

void raise_fd_limit() {
  rlimit lim{};
  ::getrlimit(RLIMIT_NOFILE, &lim);
  lim.rlim_cur = lim.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &lim);
}

class StreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sw.create_vm("web");
    svc = *guid::parse(sw.register_service("stream test"));
  }
  listen_options in(const std::string& p, int backlog = 16) const {
    return {.backlog = backlog, .control_socket = sw.control_socket(p)};
  }
  connect_options from(const std::string& p) const {
    return {.timeout = 5s, .control_socket = sw.control_socket(p)};
  }

  switch_fixture sw;
  service_id svc;
};

TEST_F(StreamTest, HalfCloseBothWays) {
  auto l = listener::listen({vm_id_wildcard, svc}, in("host"));
  ASSERT_TRUE(l);
  auto guest = stream::connect({vm_id_parent, svc}, from("web"));
  ASSERT_TRUE(guest) << guest.error().message();
  auto host = l->accept(5s);
  ASSERT_TRUE(host);

  // Guest sends and shuts its write side: the host reads the data, then EOF,
  // and can still answer.
  ASSERT_TRUE(guest->write_all("request"));
  ASSERT_TRUE(guest->shutdown(shutdown_how::write));
  EXPECT_EQ(read_all(*host), "request");
  ASSERT_TRUE(host->write_all("response"));
  ASSERT_TRUE(host->shutdown(shutdown_how::write));
  EXPECT_EQ(read_all(*guest), "response");

  // And the other way round on a second connection.
  auto guest2 = stream::connect({vm_id_parent, svc}, from("web"));
  ASSERT_TRUE(guest2);
  auto host2 = l->accept(5s);
  ASSERT_TRUE(host2);
  ASSERT_TRUE(host2->write_all("hello guest"));
  ASSERT_TRUE(host2->shutdown(shutdown_how::write));
  EXPECT_EQ(read_all(*guest2), "hello guest");
  ASSERT_TRUE(guest2->write_all("bye host"));
  guest2->close();
  EXPECT_EQ(read_all(*host2), "bye host");
}

TEST_F(StreamTest, WriteAfterPeerClosedIsAnErrorNotSigpipe) {
  auto l = listener::listen({vm_id_wildcard, svc}, in("host"));
  ASSERT_TRUE(l);
  auto guest = stream::connect({vm_id_parent, svc}, from("web"));
  ASSERT_TRUE(guest);
  auto host = l->accept(5s);
  ASSERT_TRUE(host);
  host->close();
  std::vector<std::byte> chunk(65536);
  result<void> w;
  for (int i = 0; i < 64 && w; ++i) w = guest->write_all(chunk);
  ASSERT_FALSE(w);
  EXPECT_TRUE(w.error().code() == std::errc::broken_pipe ||
              w.error().code() == std::errc::connection_reset)
      << w.error().message();
}

TEST_F(StreamTest, PollReadinessOnListenerAndStream) {
  auto l = listener::listen({vm_id_wildcard, svc}, in("host"));
  ASSERT_TRUE(l);
  EXPECT_FALSE(readable(l->native_handle(), 0)) << "listener readable with nothing queued";

  auto guest = stream::connect({vm_id_parent, svc}, from("web"));
  ASSERT_TRUE(guest);
  EXPECT_TRUE(readable(l->native_handle(), 5000)) << "listener not readable with a connection";
  auto host = l->accept(0ms);
  ASSERT_TRUE(host) << host.error().message();
  EXPECT_FALSE(readable(l->native_handle(), 0));

  EXPECT_TRUE(writable(guest->native_handle()));
  EXPECT_FALSE(readable(host->native_handle(), 0));
  ASSERT_TRUE(guest->write_all("x"));
  EXPECT_TRUE(readable(host->native_handle(), 5000));
  char c;
  ASSERT_TRUE(host->read(&c, 1));
  EXPECT_FALSE(readable(host->native_handle(), 0));
  ASSERT_TRUE(guest->shutdown(shutdown_how::write));
  EXPECT_TRUE(readable(host->native_handle(), 5000)) << "EOF must wake poll";
}

TEST_F(StreamTest, NonBlockingModes) {
  auto l = listener::listen({vm_id_wildcard, svc}, in("host"));
  ASSERT_TRUE(l);
  ASSERT_TRUE(l->set_non_blocking(true));
  auto none = l->accept();
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), make_error_code(errc::would_block));
  auto timed = l->accept(50ms);
  ASSERT_FALSE(timed);
  EXPECT_EQ(timed.error().code(), make_error_code(errc::timed_out));

  auto guest = stream::connect({vm_id_parent, svc}, from("web"));
  ASSERT_TRUE(guest);
  auto host = l->accept(5s);
  ASSERT_TRUE(host);
  ASSERT_TRUE(host->set_non_blocking(true));
  char c;
  auto n = host->read(&c, 1);
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().code(), make_error_code(errc::would_block));
}

TEST_F(StreamTest, OneGibibyteAcrossProcessesWithChecksum) {
  constexpr std::uint64_t total = 1ull << 30;
  constexpr std::size_t chunk = 128 * 1024;
  auto l = listener::listen({vm_id_wildcard, svc}, in("host"));
  ASSERT_TRUE(l);
  const auto web_socket = sw.control_socket("web");
  const service_id service = svc;
  // The sender, in partition "web", reports its checksum as its exit code's
  // stand-in: it writes the checksum as the last 8 bytes after the payload.
  const pid_t sender = fork_child([&] {
    auto s =
        stream::connect({vm_id_parent, service}, {.timeout = 5s, .control_socket = web_socket});
    if (!s) return 1;
    pattern p;
    checksum sum;
    std::vector<std::byte> buf(chunk);
    for (std::uint64_t sent = 0; sent < total; sent += chunk) {
      p.fill(buf.data(), chunk);
      sum.add(buf.data(), chunk);
      if (!s->write_all(buf)) return 2;
    }
    if (!s->write_all(&sum.value, sizeof sum.value)) return 3;
    if (!s->shutdown(shutdown_how::write)) return 4;
    return 0;
  });
  auto host = l->accept(10s);
  ASSERT_TRUE(host) << host.error().message();
  checksum sum;
  std::vector<std::byte> buf(chunk);
  std::uint64_t received = 0;
  std::uint64_t trailer = 0;
  std::size_t trailer_bytes = 0;
  for (;;) {
    auto n = host->read(buf);
    ASSERT_TRUE(n) << n.error().message();
    if (*n == 0) break;
    std::size_t payload = *n;
    if (received + payload > total) payload = received >= total ? 0 : total - received;
    sum.add(buf.data(), payload);
    received += payload;
    for (std::size_t i = payload; i < *n && trailer_bytes < 8; ++i)
      reinterpret_cast<std::byte*>(&trailer)[trailer_bytes++] = buf[i];
  }
  EXPECT_EQ(wait_child(sender, 300s), 0);
  EXPECT_EQ(received, total);
  EXPECT_EQ(trailer_bytes, 8u);
  EXPECT_EQ(sum.value, trailer);
}

TEST_F(StreamTest, ThousandConcurrentConnectionsLeakNoDaemonFds) {
  raise_fd_limit();
  constexpr int per_child = 250;
  constexpr int children = 4;
  constexpr int total = per_child * children;
  auto l = listener::listen({vm_id_wildcard, svc}, in("host", total));
  ASSERT_TRUE(l);
  const int daemon_fds_before = count_open_fds(sw.daemon().pid());
  const auto web_socket = sw.control_socket("web");
  const service_id service = svc;

  // Each child opens all its connections, holds them, then expects one byte
  // echoed on every one of them before closing.
  std::vector<pid_t> pids;
  for (int c = 0; c < children; ++c) {
    pids.push_back(fork_child([&] {
      raise_fd_limit();
      std::vector<stream> streams;
      for (int i = 0; i < per_child; ++i) {
        auto s = stream::connect({vm_id_parent, service},
                                 {.timeout = 10s, .control_socket = web_socket});
        if (!s) return 1;
        streams.push_back(std::move(*s));
      }
      for (auto& s : streams)
        if (!s.write_all("?")) return 2;
      for (auto& s : streams) {
        char c2 = 0;
        auto n = s.read(&c2, 1);
        if (!n || *n != 1 || c2 != '!') return 3;
      }
      return 0;
    }));
  }
  std::vector<stream> accepted;
  for (int i = 0; i < total; ++i) {
    auto a = l->accept(30s);
    ASSERT_TRUE(a) << "accept " << i << ": " << a.error().message();
    accepted.push_back(std::move(*a));
  }
  EXPECT_EQ(static_cast<int>(accepted.size()), total);
  for (auto& a : accepted) {
    char c = 0;
    auto n = a.read(&c, 1);
    ASSERT_TRUE(n && *n == 1 && c == '?');
    ASSERT_TRUE(a.write_all("!"));
  }
  for (pid_t pid : pids) EXPECT_EQ(wait_child(pid, 120s), 0);
  accepted.clear();

  // The daemon holds no stream fds and has closed every connect request's
  // control connection; give it a moment to process the last hang-ups.
  int daemon_fds_after = 0;
  for (int i = 0; i < 200; ++i) {
    daemon_fds_after = count_open_fds(sw.daemon().pid());
    if (daemon_fds_after <= daemon_fds_before) break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_LE(daemon_fds_after, daemon_fds_before);
}

}  // namespace
}  // namespace hvsock::test
