// echo_peer: both ends of the QEMU guest tests, on libhvsock. The same
// program runs on the host (emulated transport, through hvsockd) and, linked
// statically, inside the guest (kernel transport, the guest's AF_VSOCK), so
// it is also the proof that libhvsock code runs unchanged in a real VM.
//
//   echo_peer serve SERVICE CONNECTIONS
//       listen on WILDCARD:SERVICE, print "listening", echo CONNECTIONS
//       connections concurrently (each until EOF, then half-close), exit 0.
//   echo_peer connect VMID SERVICE CONNECTIONS BYTES
//       open CONNECTIONS connections at once; each sends BYTES bytes of
//       echo_pattern.h (seeded by its index), half-closes, and checks that
//       exactly the same bytes come back. Exit 0 when all match.
//   echo_peer timed VMID SERVICE CONNECTIONS SECONDS
//       like connect, but each connection sends for SECONDS instead of a
//       byte count (bench/faults.sh: streams that run through restarts of
//       hvsockd). Prints a line per connection and a summary line
//       "timed: ... sent S, echoed intact E, lost L, reset R, failed F";
//       exit 0 when every connection echoed all it sent.
//   echo_peer flood VMID SERVICE
//       one connection that sends and reads the echo until the connection
//       fails; prints how it ended. Exit 0 when it ended with a reset
//       (ECONNRESET/EPIPE), 4 on a clean EOF, 1 otherwise.
//
// SERVICE is a service GUID or a vsock port number; VMID a VmId GUID or
// parent, loopback, ... A refused connect prints "connect failed: ..." and
// exits 3.
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <hvsock/hvsock.hpp>

#include "echo_pattern.h"
#include "peer_args.hpp"

namespace {

using namespace std::chrono_literals;

constexpr std::size_t chunk = 64 * 1024;
constexpr int exit_usage = 2, exit_refused = 3, exit_clean_eof = 4;

int usage() {
  std::fprintf(stderr,
               "usage: echo_peer serve SERVICE CONNECTIONS\n"
               "       echo_peer connect VMID SERVICE CONNECTIONS BYTES\n"
               "       echo_peer timed VMID SERVICE CONNECTIONS SECONDS\n"
               "       echo_peer flood VMID SERVICE\n");
  return exit_usage;
}

using peer_args::number;
using peer_args::parse_service;
using peer_args::parse_vm;

// Reads until EOF and writes every byte back, then half-closes.
void echo_one(hvsock::stream s, int index, std::atomic<int>& failures) {
  std::vector<std::byte> buf(chunk);
  std::uint64_t total = 0;
  for (;;) {
    auto n = s.read(buf);
    if (!n) {
      std::printf("connection %d: read: %s\n", index, n.error().message().c_str());
      ++failures;
      return;
    }
    if (*n == 0) break;
    if (auto w = s.write_all(std::span(buf).first(*n)); !w) {
      std::printf("connection %d: write: %s\n", index, w.error().message().c_str());
      ++failures;
      return;
    }
    total += *n;
  }
  (void)s.shutdown(hvsock::shutdown_how::write);
  // A guest kernel sends queued data after close() returns; lingering makes
  // close wait for the peer to take it, so the guest may power off at once.
  const linger wait_for_peer{1, 30};
  (void)::setsockopt(s.native_handle(), SOL_SOCKET, SO_LINGER, &wait_for_peer,
                     sizeof wait_for_peer);
  s.close();
  std::printf("connection %d from %s: echoed %llu bytes\n", index,
              s.peer_endpoint().to_string().c_str(), static_cast<unsigned long long>(total));
}

int serve(const hvsock::service_id& service, int connections) {
  auto l = hvsock::listen({hvsock::vm_id_wildcard, service}, {.backlog = 64, .control_socket = {}});
  if (!l) {
    std::printf("listen failed: %s\n", l.error().message().c_str());
    return 1;
  }
  std::printf("listening on %s\n", l->local_endpoint().to_string().c_str());
  std::fflush(stdout);
  std::atomic<int> failures{0};
  std::vector<std::thread> workers;
  for (int i = 0; i < connections; ++i) {
    auto s = l->accept();
    if (!s) {
      std::printf("accept failed: %s\n", s.error().message().c_str());
      ++failures;
      break;
    }
    workers.emplace_back(echo_one, std::move(*s), i, std::ref(failures));
  }
  for (auto& w : workers) w.join();
  std::printf("served %d connections, %d failed\n", connections, failures.load());
  return failures == 0 ? 0 : 1;
}

struct outcome {
  bool ok = false;
  std::uint64_t sent_hash = ECHO_FNV_INIT, got_hash = ECHO_FNV_INIT, got = 0, sent = 0;
  std::string error;
  std::error_code code;  // of the read or write that failed
};

// Sends `bytes` of pattern `seed` (or less, up to `deadline`) on one thread
// while this one reads back.
void run_echo(
    hvsock::stream& s, std::uint64_t seed, std::uint64_t bytes, outcome& out,
    std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max()) {
  std::string write_error;
  std::error_code write_code;
  std::thread writer([&] {
    std::vector<unsigned char> buf(chunk);
    while (out.sent < bytes && std::chrono::steady_clock::now() < deadline) {
      const std::size_t n =
          static_cast<std::size_t>(std::min<std::uint64_t>(chunk, bytes - out.sent));
      for (std::size_t i = 0; i < n; ++i) buf[i] = echo_pattern_byte(seed, out.sent + i);
      out.sent_hash = echo_fnv(out.sent_hash, buf.data(), n);
      if (auto w = s.write_all(buf.data(), n); !w) {
        write_error = "write: " + w.error().message();
        write_code = w.error().code();
        return;
      }
      out.sent += n;
    }
    (void)s.shutdown(hvsock::shutdown_how::write);
  });
  std::vector<unsigned char> buf(chunk);
  for (;;) {
    auto n = s.read(buf.data(), buf.size());
    if (!n) {
      out.error = "read: " + n.error().message();
      out.code = n.error().code();
      break;
    }
    if (*n == 0) break;
    for (std::size_t i = 0; i < *n; ++i) {
      if (buf[i] != echo_pattern_byte(seed, out.got + i)) {
        out.error = "data mismatch at byte " + std::to_string(out.got + i);
        break;
      }
    }
    if (!out.error.empty()) break;
    out.got_hash = echo_fnv(out.got_hash, buf.data(), *n);
    out.got += *n;
  }
  if (!out.error.empty()) (void)s.shutdown(hvsock::shutdown_how::both);  // unblocks the writer
  writer.join();
  if (out.error.empty()) {
    out.error = write_error;
    out.code = write_code;
  }
  if (out.error.empty() && out.got != out.sent)
    out.error =
        "EOF after " + std::to_string(out.got) + " of " + std::to_string(out.sent) + " bytes";
  out.ok = out.error.empty();
}

// Opens `connections` streams to `target` at once, then echoes on each in
// a thread of its own (run_echo: `bytes`, or less by `deadline`). Empty when
// a connect failed (said on stdout).
std::optional<std::vector<outcome>> echo_concurrently(
    const hvsock::endpoint& target, int connections, std::uint64_t bytes,
    std::optional<std::chrono::seconds> duration = std::nullopt) {
  std::vector<hvsock::stream> streams;
  for (int i = 0; i < connections; ++i) {
    auto s = hvsock::connect(target, {.timeout = 10s, .control_socket = {}});
    if (!s) {
      std::printf("connect failed: %s\n", s.error().message().c_str());
      return std::nullopt;
    }
    streams.push_back(std::move(*s));
  }
  std::printf("connected %d to %s\n", connections, target.to_string().c_str());
  std::fflush(stdout);
  const auto deadline = duration ? std::chrono::steady_clock::now() + *duration
                                 : std::chrono::steady_clock::time_point::max();
  std::vector<outcome> results(static_cast<std::size_t>(connections));
  std::vector<std::thread> workers;
  for (int i = 0; i < connections; ++i)
    workers.emplace_back(run_echo, std::ref(streams[static_cast<std::size_t>(i)]),
                         static_cast<std::uint64_t>(i), bytes,
                         std::ref(results[static_cast<std::size_t>(i)]), deadline);
  for (auto& w : workers) w.join();
  return results;
}

int connect_and_echo(const hvsock::endpoint& target, int connections, std::uint64_t bytes) {
  auto echoed = echo_concurrently(target, connections, bytes);
  if (!echoed) return exit_refused;
  const std::vector<outcome>& results = *echoed;
  int failed = 0;
  for (int i = 0; i < connections; ++i) {
    const outcome& r = results[static_cast<std::size_t>(i)];
    if (!r.ok) {
      ++failed;
      std::printf("connection %d: FAIL: %s\n", i, r.error.c_str());
    } else if (r.sent_hash != r.got_hash) {
      ++failed;
      std::printf("connection %d: FAIL: checksum sent %016llx, got %016llx\n", i,
                  static_cast<unsigned long long>(r.sent_hash),
                  static_cast<unsigned long long>(r.got_hash));
    } else if (connections == 1) {
      std::printf("checksum %016llx both ways\n", static_cast<unsigned long long>(r.got_hash));
    }
  }
  std::printf("echo %s: %d connections, %llu bytes each way each, %d failed\n",
              failed == 0 ? "ok" : "FAILED", connections, static_cast<unsigned long long>(bytes),
              failed);
  return failed == 0 ? 0 : 1;
}

int timed_echo(const hvsock::endpoint& target, int connections, std::chrono::seconds duration) {
  auto echoed = echo_concurrently(target, connections, UINT64_MAX, duration);
  if (!echoed) return exit_refused;
  const std::vector<outcome>& results = *echoed;
  // A reset is how a stream through a restarted daemon may legitimately
  // end (QEMU guests); anything else lost or changed is a failure.
  std::uint64_t sent = 0, intact = 0, lost = 0;
  int reset = 0, failed = 0;
  for (int i = 0; i < connections; ++i) {
    const outcome& r = results[static_cast<std::size_t>(i)];
    sent += r.sent;
    intact += r.got;
    const bool was_reset =
        r.code == std::errc::connection_reset || r.code == std::errc::broken_pipe;
    if (r.ok && r.sent_hash == r.got_hash) {
      std::printf("connection %d: ok, %llu bytes echoed\n", i,
                  static_cast<unsigned long long>(r.got));
    } else if (was_reset) {
      ++reset;
      std::printf("connection %d: reset after %llu bytes echoed (%s)\n", i,
                  static_cast<unsigned long long>(r.got), r.error.c_str());
    } else {
      ++failed;
      lost += r.sent - std::min(r.sent, r.got);
      std::printf("connection %d: FAIL after %llu of %llu bytes: %s\n", i,
                  static_cast<unsigned long long>(r.got), static_cast<unsigned long long>(r.sent),
                  r.error.empty() ? "checksum differs" : r.error.c_str());
    }
  }
  std::printf(
      "timed: %d connections, sent %llu, echoed intact %llu, lost %llu, reset %d, failed %d\n",
      connections, static_cast<unsigned long long>(sent), static_cast<unsigned long long>(intact),
      static_cast<unsigned long long>(lost), reset, failed);
  return failed == 0 && reset == 0 ? 0 : 1;
}

int flood(const hvsock::endpoint& target) {
  auto s = hvsock::connect(target, {.timeout = 10s, .control_socket = {}});
  if (!s) {
    std::printf("connect failed: %s\n", s.error().message().c_str());
    return exit_refused;
  }
  std::printf("flooding %s\n", target.to_string().c_str());
  std::fflush(stdout);
  outcome out;
  run_echo(*s, 0, UINT64_MAX, out);
  std::printf("ended after %llu bytes: %s\n", static_cast<unsigned long long>(out.got),
              out.error.c_str());
  if (out.code == std::errc::connection_reset || out.code == std::errc::broken_pipe) return 0;
  return out.code ? 1 : exit_clean_eof;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::vector<std::string_view> args(argv + 1, argv + argc);
  if (args.size() == 3 && args[0] == "serve") {
    auto service = parse_service(args[1]);
    auto count = number(args[2]);
    if (!service || !count || *count == 0) return usage();
    return serve(*service, static_cast<int>(*count));
  }
  if (args.size() == 5 && args[0] == "connect") {
    auto vm = parse_vm(args[1]);
    auto service = parse_service(args[2]);
    auto count = number(args[3]);
    auto bytes = number(args[4]);
    if (!vm || !service || !count || *count == 0 || !bytes) return usage();
    return connect_and_echo({*vm, *service}, static_cast<int>(*count), *bytes);
  }
  if (args.size() == 5 && args[0] == "timed") {
    auto vm = parse_vm(args[1]);
    auto service = parse_service(args[2]);
    auto count = number(args[3]);
    auto seconds = number(args[4]);
    if (!vm || !service || !count || *count == 0 || !seconds) return usage();
    return timed_echo({*vm, *service}, static_cast<int>(*count),
                      std::chrono::seconds(static_cast<std::int64_t>(*seconds)));
  }
  if (args.size() == 3 && args[0] == "flood") {
    auto vm = parse_vm(args[1]);
    auto service = parse_service(args[2]);
    if (!vm || !service) return usage();
    return flood({*vm, *service});
  }
  return usage();
}
