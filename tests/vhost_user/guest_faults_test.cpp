// Misbehaving QEMU guests against a real hvsockd (issue 10, part 4), played
// by fake_frontend over the real vhost-user socket with a real memfd:
// - a guest flooding REQUESTs to unregistered ports does not starve another
//   guest's 64 MiB transfer or the CLI, and its refusals are rate-limited in
//   the log;
// - a guest whose memory file shrinks under hvsockd loses its own device,
//   and hvsockd and the other guests carry on.
// Every wait is on an event (call eventfds, sockets, processes) with a
// generous bound; nothing sleeps for a fixed time.
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <hvsock/hvsock.hpp>

#include "fake_frontend.hpp"
#include "guest_stream.hpp"
#include "switch_fixture.hpp"

#include "fnv1a.h"

namespace hvsock::test {
namespace {

using namespace std::chrono_literals;
using virtio::virtio_vsock_hdr;
using virtio::vsock_op;

#ifdef HVSOCK_TEST_SANITIZED
constexpr std::size_t transfer_bytes = 8u << 20;  // sanitizers are ~10x slower
#else
constexpr std::size_t transfer_bytes = 64u << 20;
#endif
constexpr std::uint32_t sink_port = 5000;

using checksum = fnv_checksum;

// The bytes guest b sends: a deterministic stream, generated in chunks.
class pattern_source {
 public:
  void fill(std::span<std::byte> out) {
    for (auto& b : out) {
      x_ ^= x_ << 13;
      x_ ^= x_ >> 7;
      x_ ^= x_ << 17;
      b = static_cast<std::byte>(x_);
    }
  }

 private:
  std::uint64_t x_ = 0x9e3779b97f4a7c15ull;
};

// A host program listening on the sink service: each accepted stream is read
// to EOF (or an error) and summed.
struct host_sink {
  struct received {
    checksum sum;
    bool ended_with_error = false;
  };

  explicit host_sink(const switch_fixture& sw) {
    const auto svc =
        *guid::parse(sw.register_service("sink", service_id_from_port(sink_port).to_string()));
    auto l = listener::listen({vm_id_wildcard, svc}, {.control_socket = sw.control_socket("host")});
    EXPECT_TRUE(l) << (l ? "" : l.error().message());
    if (l) listening.emplace(std::move(*l));
  }

  // Accepts one stream and reads it to the end (bounded by `timeout`).
  received take_one(std::chrono::milliseconds timeout) {
    received r;
    if (!listening) return r;
    auto s = listening->accept(timeout);
    EXPECT_TRUE(s) << (s ? "" : s.error().message());
    if (!s) return r;
    std::vector<std::byte> buf(256 * 1024);
    for (;;) {
      auto n = s->read(std::span(buf));
      if (!n) {
        r.ended_with_error = true;
        break;
      }
      if (*n == 0) break;
      r.sum.add(std::span(buf).first(*n));
    }
    return r;
  }

  std::optional<listener> listening;
};

// Moves `bytes` of the pattern from guest `g` to the sink; returns the
// guest's checksum of what it sent.
result<checksum> send_pattern(fake_frontend& g, std::uint32_t src_port, std::size_t bytes) {
  guest_stream s(g, src_port, sink_port);
  if (auto ok = s.connect(); !ok) return ok.error();
  pattern_source source;
  checksum sent;
  std::vector<std::byte> chunk(256 * 1024);
  for (std::size_t left = bytes; left > 0;) {
    const auto piece = std::span(chunk).first(std::min(left, chunk.size()));
    source.fill(piece);
    sent.add(piece);
    if (auto ok = s.write(piece); !ok) return ok.error();
    left -= piece.size();
  }
  if (auto ok = s.shutdown_send(); !ok) return ok.error();
  return sent;
}

TEST(GuestFaults, AFloodingGuestDoesNotStarveAnotherGuestOrTheCli) {
  switch_fixture sw;
  host_sink sink(sw);
  auto flooder = attach_guest(sw, "a", 7);
  auto mover = attach_guest(sw, "b", 8);
  ASSERT_TRUE(flooder && mover);

  std::atomic<bool> transfer_done{false}, flood_over{false};
  std::atomic<std::uint64_t> flood_sent{0};
  // Guest a keeps its tx ring full of REQUESTs to a port no service is
  // registered for (each is refused: route, count, RST), until b is done,
  // at most 20 s.
  std::thread flood([&] {
    const auto end = std::chrono::steady_clock::now() + 20s;
    flooder->flood_tx(guest_header(*flooder, vsock_op::request, 1024, 40000),
                      [&](std::uint64_t consumed) {
                        flood_sent = consumed;
                        flood_sent.notify_all();
                        return !transfer_done && std::chrono::steady_clock::now() < end;
                      });
    flood_over = true;
    flood_sent.notify_all();
  });

  std::optional<host_sink::received> got;
  std::thread receiver([&] { got = sink.take_one(60s); });
  result<checksum> sent = failure(errc::timed_out, "not run");
  std::chrono::steady_clock::duration transfer_time{};
  std::uint64_t flood_at_start = 0, flood_at_end = 0;
  std::thread mover_thread([&] {
    // Start once the flood is on.
    for (auto v = flood_sent.load(); v < 10000 && !flood_over; v = flood_sent.load())
      flood_sent.wait(v);
    flood_at_start = flood_sent;
    const auto t0 = std::chrono::steady_clock::now();
    sent = send_pattern(*mover, 1025, transfer_bytes);
    transfer_time = std::chrono::steady_clock::now() - t0;
    flood_at_end = flood_sent;
    transfer_done = true;
  });

  // The CLI answers throughout; the daemon's log is drained as we go.
  int answers = 0, failures = 0;
  std::string failure_text;
  while (!transfer_done) {
    const auto st = sw.cli({"status"}, {}, 10s);
    if (st.status.code == 0) {
      ++answers;
    } else {
      ++failures;
      failure_text = st.err;
    }
    sw.daemon().wait_for_stderr("\x7f(drain only)", 1ms);
  }
  mover_thread.join();
  receiver.join();
  flood.join();

  ASSERT_TRUE(sent) << sent.error().message();
  ASSERT_TRUE(got.has_value());
  EXPECT_FALSE(got->ended_with_error);
  EXPECT_EQ(got->sum.n, transfer_bytes);
  EXPECT_EQ(got->sum.h, sent->h);
  EXPECT_EQ(failures, 0) << failure_text;
  EXPECT_GE(answers, 3);
  // The flood really ran during the transfer.
  EXPECT_GT(flood_at_end - flood_at_start, 10000u);
  std::printf(
      "flood: %llu REQUESTs refused (%llu during the transfer); %zu MiB in %.2f s; "
      "hvsock status answered %d times\n",
      static_cast<unsigned long long>(flood_sent.load()),
      static_cast<unsigned long long>(flood_at_end - flood_at_start), transfer_bytes >> 20,
      std::chrono::duration<double>(transfer_time).count(), answers);
  // Refusals are logged, but rate-limited.
  EXPECT_TRUE(sw.daemon().wait_for_stderr("more refusals suppressed", 5s)) << sw.daemon().err();
  EXPECT_EQ(sw.cli({"status"}).status.code, 0);
}

TEST(GuestFaults, AGuestWhoseMemoryShrinksLosesOnlyItsDevice) {
  switch_fixture sw;
  host_sink sink(sw);
  auto victim = attach_guest(sw, "c", 9);
  auto other = attach_guest(sw, "d", 10);
  ASSERT_TRUE(victim && other);

  // c has a stream open to the host, with data through it.
  guest_stream s(*victim, 1030, sink_port);
  ASSERT_TRUE(s.connect());
  ASSERT_TRUE(sink.listening);
  auto accepted = sink.listening->accept(10s);
  ASSERT_TRUE(accepted) << accepted.error().message();
  std::vector<std::byte> hello(1000, std::byte{'h'});
  ASSERT_TRUE(s.write(hello));
  std::vector<std::byte> buf(4096);
  std::size_t read_so_far = 0;
  while (read_so_far < hello.size()) {
    auto n = accepted->read(std::span(buf));
    ASSERT_TRUE(n && *n > 0);
    read_so_far += *n;
  }

  // The front-end cuts its memory file to a fraction (the tx ring is gone)
  // and kicks: hvsockd touches the lost pages.
  ASSERT_TRUE(victim->shrink_memory(fake_frontend::rx_area / 2));
  victim->kick_tx();

  // c's device is detached: hvsockd closes its vhost-user connection...
  pollfd p{victim->vhost_user_fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 10000), 1) << "hvsockd kept the shrunk guest attached";
  char c;
  EXPECT_EQ(::read(victim->vhost_user_fd(), &c, 1), 0);
  // ...its stream is closed on the host side...
  pollfd h{accepted->native_handle(), POLLIN, 0};
  ASSERT_EQ(::poll(&h, 1, 10000), 1) << "the host end of c's stream stayed open";
  auto n = accepted->read(std::span(buf));
  EXPECT_TRUE(!n || *n == 0);
  // ...it says why, and `vm list` agrees.
  EXPECT_TRUE(sw.daemon().wait_for_stderr("c: QEMU detached: guest memory is gone", 10s))
      << sw.daemon().err();
  EXPECT_EQ(partition(sw, "c").at("guest_attached"), false);

  // hvsockd is alive and serves everyone else.
  EXPECT_EQ(sw.cli({"status"}).status.code, 0);
  EXPECT_EQ(partition(sw, "d").at("guest_attached"), true);
  std::optional<host_sink::received> got;
  std::thread receiver([&] { got = sink.take_one(30s); });
  auto sent = send_pattern(*other, 1031, 1u << 20);
  receiver.join();
  ASSERT_TRUE(sent) << sent.error().message();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->sum.n, std::size_t{1} << 20);
  EXPECT_EQ(got->sum.h, sent->h);
  // And c's socket takes the next QEMU.
  auto again = fake_frontend::attach(partition(sw, "c").at("vhost_user_socket"), 9);
  EXPECT_TRUE(again) << (again ? "" : again.error().message());
}

}  // namespace
}  // namespace hvsock::test
