// Runs inside the QEMU guest (statically linked, HVSOCK_TRANSPORT=kernel):
// libhvsock's kernel transport over the guest kernel's real AF_VSOCK, on
// the loopback CID, since no host device is involved. Prints one line per
// check and exits 0 only when all pass.
#include <poll.h>
#include <sys/socket.h>

#include <linux/vm_sockets.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <hvsock/hvsock.hpp>
#include <hvsock/message_socket.hpp>

namespace {

using namespace std::chrono_literals;
using hvsock::endpoint;

int failures = 0;

void check(bool ok, const std::string& what) {
  std::printf("%s: %s\n", ok ? "ok" : "FAIL", what.c_str());
  if (!ok) ++failures;
}

std::uint64_t fnv(const std::vector<std::byte>& data) {
  std::uint64_t h = 1469598103934665603ull;
  for (auto b : data) h = (h ^ static_cast<std::uint64_t>(b)) * 1099511628211ull;
  return h;
}

std::vector<std::byte> read_to_eof(hvsock::stream& s) {
  std::vector<std::byte> data;
  std::byte buf[65536];
  for (;;) {
    auto n = s.read(buf, sizeof buf);
    if (!n || *n == 0) return data;
    data.insert(data.end(), buf, buf + *n);
  }
}

// message_socket over AF_VSOCK SOCK_SEQPACKET: a message too big is
// message_too_long both when this end's own buffer size refuses it and when
// the kernel does (the peer's smaller buffer: EMSGSIZE on 6.12, ENOMEM on 6.1).
void check_messages() {
  const auto service = hvsock::service_id_from_port(5001);
  auto l = hvsock::message_listener::listen({hvsock::vm_id_wildcard, service});
  check(l.has_value(), "message listen" + (l ? "" : ": " + l.error().message()));
  if (!l) return;
  auto c = hvsock::message_socket::connect({hvsock::vm_id_loopback, service});
  check(c.has_value(), "message connect" + (c ? "" : ": " + c.error().message()));
  if (!c) return;
  auto a = l->accept(10s);
  check(a.has_value(), "message accept" + (a ? "" : ": " + a.error().message()));
  if (!a) return;
  auto limit = c->max_message_size();
  check(limit.has_value() && *limit > 8192, "max_message_size of a vsock message socket");
  if (!limit) return;
  std::vector<std::byte> data(*limit + 1, std::byte{0x5a});
  auto over = c->send(std::span(data));
  check(!over && over.error().code() == hvsock::errc::message_too_long,
        "a message over this socket's own buffer size is message_too_long");
  // The peer shrinks its buffer, and tells the sender so with a message.
  const unsigned long long small = 4096;
  check(::setsockopt(a->native_handle(), AF_VSOCK, SO_VM_SOCKETS_BUFFER_SIZE, &small,
                     sizeof small) == 0,
        "the peer's buffer set to 4096");
  check(a->send("hello").has_value(), "the peer sends a message");
  std::byte buffer[64];
  auto hello = c->receive(buffer);
  check(hello && hello->length == 5, "and it arrives");
  auto peer_small = c->send(std::span(data.data(), 8192));
  check(!peer_small && peer_small.error().code() == hvsock::errc::message_too_long,
        "a message over the peer's buffer size is message_too_long" +
            (peer_small ? "" : ": " + peer_small.error().message()));
  check(c->send(std::span(data.data(), 4096)).has_value(),
        "a message of the peer's buffer size goes");
  std::vector<std::byte> got(8192);
  auto fits = a->receive(got);
  check(fits && fits->length == 4096 && !fits->truncated(), "and arrives whole");
}

}  // namespace

int main() {
  const auto service = hvsock::service_id_from_port(5000);

  auto l = hvsock::listen({hvsock::vm_id_wildcard, service});
  check(l.has_value(), "listen wildcard:5000" + (l ? "" : ": " + l.error().message()));
  if (!l) return 1;
  check(l->local_endpoint() == endpoint{hvsock::vm_id_wildcard, service}, "listener endpoint");

  auto again = hvsock::listen({hvsock::vm_id_wildcard, service});
  check(!again && again.error().code() == hvsock::errc::address_in_use,
        "second bind of the port is address_in_use");

  auto timed = l->accept(50ms);
  check(!timed && timed.error().code() == hvsock::errc::timed_out, "accept times out");

  // 4 MiB each way with half-close, client on a thread.
  std::vector<std::byte> up(4 << 20), down(3 << 20);
  for (std::size_t i = 0; i < up.size(); ++i) up[i] = std::byte(i * 7 + 1);
  for (std::size_t i = 0; i < down.size(); ++i) down[i] = std::byte(i * 13 + 5);
  std::vector<std::byte> client_got;
  bool client_ok = false;
  std::thread client([&] {
    auto s = hvsock::connect({hvsock::vm_id_loopback, service});
    if (!s) {
      std::printf("client: %s\n", s.error().message().c_str());
      return;
    }
    client_ok = s->write_all(up).has_value() && s->shutdown(hvsock::shutdown_how::write);
    client_got = read_to_eof(*s);
  });
  auto a = l->accept(10s);
  check(a.has_value(), "accept" + (a ? "" : ": " + a.error().message()));
  if (a) {
    check(a->peer_endpoint().vm == hvsock::vm_id_loopback, "peer is LOOPBACK");
    pollfd p{a->native_handle(), POLLIN, 0};
    check(::poll(&p, 1, 10000) == 1, "accepted stream polls readable");
    auto got = read_to_eof(*a);
    check(got.size() == up.size() && fnv(got) == fnv(up), "4 MiB up with checksum");
    check(a->write_all(down).has_value(), "write 3 MiB down after the peer's half-close");
    a->close();
  }
  client.join();
  check(client_ok, "client wrote and half-closed");
  check(client_got.size() == down.size() && fnv(client_got) == fnv(down),
        "3 MiB down with checksum");

  auto refused = hvsock::connect({hvsock::vm_id_loopback, hvsock::service_id_from_port(5999)});
  check(!refused && refused.error().code() == std::errc::connection_refused,
        "no listener is connection_refused" + (refused ? "" : ": " + refused.error().message()));

  const auto non_template = hvsock::guid::parse("12345678-1234-1234-1234-123456789abc").value();
  auto bad = hvsock::connect({hvsock::vm_id_loopback, non_template});
  check(!bad && bad.error().code() == hvsock::errc::no_vsock_port,
        "non-template service is no_vsock_port" + (bad ? "" : ": " + bad.error().message()));

  auto sibling = hvsock::connect({hvsock::guid::generate(), service});
  check(!sibling && sibling.error().code() == hvsock::errc::network_unreachable,
        "a VmId other than PARENT/LOOPBACK is unreachable");

  check_messages();

  std::printf("kernel transport: %d failure(s)\n", failures);
  return failures == 0 ? 0 : 1;
}
