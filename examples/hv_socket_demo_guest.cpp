// hv_socket_demo_guest: the guest side of the "HV Socket Demo".
//
// Step 3 of the reference's "Make your own integration services": a process
// inside a VM connects to HV_GUID_PARENT (its host) for the registered
// service, sends a few lines, shuts down its write side (graceful
// disconnect), then reads the host's replies until the host closes, and
// succeeds when every line was answered.
//
// Run it inside a VM partition of the emulated switch with
//   hvsock run --vm demo-vm -- hv_socket_demo_guest SERVICE_GUID
//
// Written only against the public API (<hvsock/hvsock.hpp>). Single-threaded.
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <hvsock/hvsock.hpp>

namespace {

constexpr std::string_view usage_text =
    "Usage: hv_socket_demo_guest [options] SERVICE_GUID\n"
    "       hv_socket_demo_guest [options] --port N\n"
    "\n"
    "The guest side of the HV Socket Demo. Connects to HV_GUID_PARENT (this\n"
    "partition's host) for the service, sends some lines, shuts down its write\n"
    "side, prints the host's replies and exits 0 once every line was answered.\n"
    "Run it inside a VM partition:\n"
    "  hvsock run --vm demo-vm -- hv_socket_demo_guest SERVICE_GUID\n"
    "\n"
    "Options:\n"
    "  --port N            use the vsock-template service GUID for port N\n"
    "                      (N-facb-11e6-bd58-64006a7986d3) instead of SERVICE_GUID\n"
    "  --message TEXT      a line to send; repeat for more (default: three lines)\n"
    "  --timeout-ms N      give up when the replies take longer than N ms\n"
    "                      (default 10000)\n"
    "  -h, --help          show this help\n";

struct options {
  hvsock::service_id service;
  std::vector<std::string> messages;
  std::chrono::milliseconds timeout{10000};
};

[[noreturn]] void fail(const std::string& message) {
  std::cerr << "hv_socket_demo_guest: " << message << '\n';
  std::exit(1);
}

template <class Int>
std::optional<Int> parse_number(std::string_view text) {
  Int value{};
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc{} || ptr != end || text.empty()) return std::nullopt;
  return value;
}

options parse_arguments(int argc, char** argv) {
  options parsed;
  std::optional<hvsock::service_id> service;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto next_value = [&]() -> std::string_view {
      if (i + 1 >= argc) fail(std::string(arg) + " needs a value (see --help)");
      return argv[++i];
    };
    if (arg == "-h" || arg == "--help") {
      std::cout << usage_text;
      std::exit(0);
    } else if (arg == "--port") {
      const auto value = next_value();
      const auto port = parse_number<std::uint32_t>(value);
      if (!port || *port > hvsock::max_listen_port)
        fail("--port: '" + std::string(value) + "' is not a port in 0..2147483647");
      if (service) fail("give either SERVICE_GUID or --port, not both");
      service = hvsock::service_id_from_port(*port);
    } else if (arg == "--message") {
      const auto value = next_value();
      if (value.find('\n') != std::string_view::npos) fail("--message: one line per --message");
      parsed.messages.emplace_back(value);
    } else if (arg == "--timeout-ms") {
      const auto value = next_value();
      const auto ms = parse_number<std::uint32_t>(value);
      if (!ms || *ms == 0)
        fail("--timeout-ms: '" + std::string(value) + "' is not a positive count");
      parsed.timeout = std::chrono::milliseconds(*ms);
    } else if (arg.starts_with("-") && arg.size() > 1) {
      fail("unknown option " + std::string(arg) + " (see --help)");
    } else {
      if (service) fail("give exactly one service (see --help)");
      auto id = hvsock::guid::parse(arg);
      if (!id) fail(id.error().message());
      service = *id;
    }
  }
  if (!service) fail("missing SERVICE_GUID or --port (see --help)");
  parsed.service = *service;
  if (parsed.messages.empty())
    parsed.messages = {"Hello from the guest", "This is the HV Socket Demo",
                       "Goodbye (half-closing now)"};
  return parsed;
}

// Waits until `fd` is readable or the deadline passes.
bool wait_readable(int fd, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd pfd{fd, POLLIN, 0};
    const auto wait_ms = std::min<std::chrono::milliseconds::rep>(left.count(), 60'000);
    const int ready = ::poll(&pfd, 1, static_cast<int>(wait_ms));
    if (ready > 0) return true;
    if (ready < 0 && errno != EINTR) fail(std::string("poll: ") + std::strerror(errno));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const options opts = parse_arguments(argc, argv);

  const hvsock::endpoint target{hvsock::vm_id_parent, opts.service};
  auto conn = hvsock::connect(target);
  if (!conn) fail(conn.error().message());
  std::cout << "guest: connected to " << conn->peer_endpoint().to_string() << '\n';

  for (const auto& message : opts.messages) {
    std::cout << "guest: sending \"" << message << "\"\n";
    if (auto sent = conn->write_all(message + "\n"); !sent) fail(sent.error().message());
  }
  // Graceful disconnect: the host sees EOF, answers what it has, and closes.
  if (auto done = conn->shutdown(hvsock::shutdown_how::write); !done) fail(done.error().message());
  std::cout << "guest: sent " << opts.messages.size() << " line(s), write side shut down\n"
            << std::flush;

  const auto deadline = std::chrono::steady_clock::now() + opts.timeout;
  std::string pending;
  std::size_t replies = 0;
  char buffer[4096];
  for (;;) {
    if (!wait_readable(conn->native_handle(), deadline))
      fail("timed out after " + std::to_string(opts.timeout.count()) + " ms with " +
           std::to_string(replies) + " of " + std::to_string(opts.messages.size()) + " replies");
    auto got = conn->read(buffer, sizeof buffer);
    if (!got) fail(got.error().message());
    if (*got == 0) break;  // the host closed its side: no more replies
    pending.append(buffer, *got);
    std::size_t newline;
    while ((newline = pending.find('\n')) != std::string::npos) {
      std::cout << "guest: reply \"" << std::string_view(pending.data(), newline) << "\"\n";
      ++replies;
      pending.erase(0, newline + 1);
    }
  }
  if (!pending.empty()) {
    std::cout << "guest: reply \"" << pending << "\" (no newline)\n";
    ++replies;
  }

  if (replies != opts.messages.size())
    fail("host closed the connection after " + std::to_string(replies) + " of " +
         std::to_string(opts.messages.size()) + " replies");
  std::cout << "guest: all " << replies << " replies received, done\n";
  return 0;
}
