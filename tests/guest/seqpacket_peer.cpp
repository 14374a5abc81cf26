// seqpacket_peer: both ends of the QEMU SEQPACKET test, on libhvsock's
// message_socket. Like echo_peer, the same program runs on the host
// (emulated transport) and, static, in the guest (the guest kernel's
// AF_VSOCK SOCK_SEQPACKET through the vhost-user device).
//
//   seqpacket_peer serve SERVICE CONNECTIONS
//       listen on WILDCARD:SERVICE, print "listening on ...", then for each
//       of CONNECTIONS connections (one after the other) send every message
//       back as it came, until the end of the peer's messages; exit 0. An
//       empty message is answered with the 5-byte message "empty": Linux's
//       vsock sends nothing for a zero-length send, so an empty echo would
//       never leave a guest.
//   seqpacket_peer connect VMID SERVICE SIZE[,SIZE...]
//       send one message of each SIZE (echo_pattern.h bytes, seeded by its
//       index) and check that the echo is that message: the same length, the
//       same bytes, nothing truncated (for SIZE 0: "empty"). Then 200 small messages (0..999 bytes)
//       back to back before reading any echo, each checked the same way, so
//       boundaries hold when messages queue up. Then the end: the echo side
//       must see it and end too. Exit 0 when all matched.
//
// SERVICE is a service GUID or a vsock port number; VMID a VmId GUID or
// parent, loopback, ... A refused connect prints "connect failed: ..." and
// exits 3.
#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <hvsock/hvsock.hpp>
#include <hvsock/message_socket.hpp>

#include "echo_pattern.h"
#include "peer_args.hpp"

namespace {

constexpr int exit_usage = 2, exit_refused = 3;
// Room for the largest message plus one byte, so a too-long echo shows.
constexpr std::size_t buffer_size = hvsock::max_seqpacket_message_size + 1;
constexpr std::string_view empty_reply = "empty";

int usage() {
  std::fprintf(stderr,
               "usage: seqpacket_peer serve SERVICE CONNECTIONS\n"
               "       seqpacket_peer connect VMID SERVICE SIZE[,SIZE...]\n");
  return exit_usage;
}

using peer_args::number;
using peer_args::parse_service;
using peer_args::parse_vm;

std::vector<std::byte> message(std::size_t size, std::uint64_t seed) {
  std::vector<std::byte> m(size);
  for (std::size_t i = 0; i < size; ++i) m[i] = static_cast<std::byte>(echo_pattern_byte(seed, i));
  return m;
}

std::vector<std::byte> message_of(std::string_view text) {
  const auto b = std::as_bytes(std::span(text));
  return {b.begin(), b.end()};
}

int serve(const hvsock::service_id& service, int connections) {
  auto l = hvsock::message_listener::listen({hvsock::vm_id_wildcard, service});
  if (!l) {
    std::printf("listen failed: %s\n", l.error().message().c_str());
    return 1;
  }
  std::printf("listening on %s\n", l->local_endpoint().to_string().c_str());
  std::fflush(stdout);
  std::vector<std::byte> buf(buffer_size);
  for (int i = 0; i < connections; ++i) {
    auto s = l->accept();
    if (!s) {
      std::printf("accept failed: %s\n", s.error().message().c_str());
      return 1;
    }
    std::uint64_t count = 0, bytes = 0;
    for (;;) {
      auto got = s->receive(buf);
      if (!got) {
        std::printf("connection %d: receive: %s\n", i, got.error().message().c_str());
        return 1;
      }
      if (got->end_of_stream) break;
      if (got->truncated()) {
        std::printf("connection %d: a message of %zu bytes is over %zu\n", i, got->length,
                    buf.size());
        return 1;
      }
      const auto reply = got->size == 0 ? std::as_bytes(std::span(empty_reply))
                                        : std::span<const std::byte>(buf).first(got->size);
      if (auto sent = s->send(reply); !sent) {
        std::printf("connection %d: send: %s\n", i, sent.error().message().c_str());
        return 1;
      }
      ++count;
      bytes += got->size;
    }
    (void)s->shutdown(hvsock::shutdown_how::write);
    std::printf("connection %d from %s: echoed %llu messages, %llu bytes\n", i,
                s->peer_endpoint().to_string().c_str(), static_cast<unsigned long long>(count),
                static_cast<unsigned long long>(bytes));
    std::fflush(stdout);
  }
  return 0;
}

// Receives one echo and checks it is `expected`; prints why not.
bool check_echo(hvsock::message_socket& s, std::vector<std::byte>& buf,
                const std::vector<std::byte>& expected, const std::string& what) {
  auto got = s.receive(buf);
  if (!got) {
    std::printf("%s: receive: %s\n", what.c_str(), got.error().message().c_str());
    return false;
  }
  if (got->end_of_stream || got->length != expected.size() ||
      !std::equal(expected.begin(), expected.end(), buf.begin())) {
    std::printf("%s: echo is %s%zu bytes, expected %zu bytes%s\n", what.c_str(),
                got->end_of_stream ? "the end, " : "", got->length, expected.size(),
                got->length == expected.size() ? " (contents differ)" : "");
    return false;
  }
  return true;
}

int connect(const hvsock::vm_id& vm, const hvsock::service_id& service,
            const std::vector<std::size_t>& sizes) {
  auto s = hvsock::message_socket::connect({vm, service});
  if (!s) {
    std::printf("connect failed: %s\n", s.error().message().c_str());
    return exit_refused;
  }
  std::vector<std::byte> buf(buffer_size);
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const auto m = message(sizes[i], i);
    if (auto sent = s->send(m); !sent) {
      std::printf("send of %zu bytes: %s\n", sizes[i], sent.error().message().c_str());
      return 1;
    }
    const auto expected = m.empty() ? message_of(empty_reply) : m;
    if (!check_echo(*s, buf, expected, "message of " + std::to_string(sizes[i]) + " bytes"))
      return 1;
    std::printf("message of %zu bytes: echoed whole\n", sizes[i]);
  }
  constexpr std::size_t queued = 200;
  std::vector<std::vector<std::byte>> small;
  // Sizes 1..999 (an empty one would be answered with "empty").
  for (std::size_t i = 0; i < queued; ++i) small.push_back(message(1 + (i * 397) % 999, 1000 + i));
  for (const auto& m : small) {
    if (auto sent = s->send(m); !sent) {
      std::printf("queued send: %s\n", sent.error().message().c_str());
      return 1;
    }
  }
  for (std::size_t i = 0; i < queued; ++i)
    if (!check_echo(*s, buf, small[i], "queued message " + std::to_string(i))) return 1;
  std::printf("%zu queued messages: echoed whole and in order\n", queued);
  if (auto shut = s->shutdown(hvsock::shutdown_how::write); !shut) {
    std::printf("shutdown: %s\n", shut.error().message().c_str());
    return 1;
  }
  auto end = s->receive(buf);
  if (!end || !end->end_of_stream) {
    std::printf("after the end: expected the peer's end, got %s\n",
                end ? "a message" : end.error().message().c_str());
    return 1;
  }
  std::printf("messages ok to %s\n", s->peer_endpoint().to_string().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (argc < 2) return usage();
  const std::string_view cmd = argv[1];
  if (cmd == "serve" && argc == 4) {
    auto service = parse_service(argv[2]);
    auto n = number(argv[3]);
    if (!service || !n || *n == 0) return usage();
    return serve(*service, static_cast<int>(*n));
  }
  if (cmd == "connect" && argc == 5) {
    auto vm = parse_vm(argv[2]);
    auto service = parse_service(argv[3]);
    if (!vm || !service) return usage();
    std::vector<std::size_t> sizes;
    std::string_view list = argv[4];
    while (!list.empty()) {
      const auto comma = list.find(',');
      auto n = number(list.substr(0, comma));
      if (!n || *n > hvsock::max_seqpacket_message_size) return usage();
      sizes.push_back(static_cast<std::size_t>(*n));
      list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    }
    return connect(*vm, *service, sizes);
  }
  return usage();
}
