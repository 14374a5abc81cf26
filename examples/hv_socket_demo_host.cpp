// hv_socket_demo_host: the host side of the "HV Socket Demo".
//
// Step 2 of the reference's "Make your own integration services": with the
// service registered (`hvsock service register --name "HV Socket Demo" ...`),
// a host process listens on HV_GUID_WILDCARD for that service, so any
// partition allowed to reach the host can connect. For each connection it
// answers every line it receives with "host got: <line>", and when the client
// half-closes (shuts down its write side) it finishes its answers and
// half-closes too, which is the graceful disconnect the reference lists as
// unfinished.
//
// Written only against the public API (<hvsock/hvsock.hpp>). Single-threaded;
// connections are served one after another.
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>

#include <hvsock/hvsock.hpp>

namespace {

constexpr std::string_view usage_text =
    "Usage: hv_socket_demo_host [--connections N] SERVICE_GUID\n"
    "       hv_socket_demo_host [--connections N] --port N\n"
    "\n"
    "The host side of the HV Socket Demo. Listens on HV_GUID_WILDCARD for the\n"
    "service in this (the host) partition, prints a line starting \"listening\"\n"
    "to stderr when ready, and answers every line a client sends with\n"
    "\"host got: <line>\". When the client shuts down its write side, the host\n"
    "answers what is left and shuts down its own.\n"
    "\n"
    "Options:\n"
    "  --port N            use the vsock-template service GUID for port N\n"
    "                      (N-facb-11e6-bd58-64006a7986d3) instead of SERVICE_GUID\n"
    "  --connections N     serve N connections, then exit (default 1; 0 = forever)\n"
    "  -h, --help          show this help\n"
    "\n"
    "The service must be registered and enabled with hvsockd, for example:\n"
    "  hvsock service register --name \"HV Socket Demo\" --id SERVICE_GUID\n";

struct options {
  hvsock::service_id service;
  std::uint64_t connections = 1;
};

[[noreturn]] void fail(const std::string& message) {
  std::cerr << "hv_socket_demo_host: " << message << '\n';
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
    } else if (arg == "--connections") {
      const auto value = next_value();
      const auto count = parse_number<std::uint64_t>(value);
      if (!count) fail("--connections: '" + std::string(value) + "' is not a count");
      parsed.connections = *count;
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
  return parsed;
}

// Answers one line. Returns false (after reporting) if the reply cannot be sent.
bool answer(hvsock::stream& conn, std::string_view line) {
  std::cout << "host: received \"" << line << "\"\n" << std::flush;
  std::string reply = "host got: ";
  reply.append(line);
  reply.push_back('\n');
  if (auto sent = conn.write_all(reply); !sent) {
    std::cerr << "hv_socket_demo_host: " << sent.error().message() << '\n';
    return false;
  }
  return true;
}

// Serves one connection until the client has finished sending and every
// line is answered. Returns false on an I/O error.
bool serve(hvsock::stream conn) {
  std::cout << "host: connection from " << conn.peer_endpoint().to_string() << '\n' << std::flush;
  std::string pending;
  std::size_t answered = 0;
  char buffer[4096];
  for (;;) {
    auto got = conn.read(buffer, sizeof buffer);
    if (!got) {
      std::cerr << "hv_socket_demo_host: " << got.error().message() << '\n';
      return false;
    }
    if (*got == 0) break;  // the client shut down its write side
    pending.append(buffer, *got);
    std::size_t newline;
    while ((newline = pending.find('\n')) != std::string::npos) {
      std::string_view line(pending.data(), newline);
      if (line.ends_with('\r')) line.remove_suffix(1);
      if (!answer(conn, line)) return false;
      ++answered;
      pending.erase(0, newline + 1);
    }
  }
  // A last line without a newline still gets its answer.
  if (!pending.empty()) {
    if (!answer(conn, pending)) return false;
    ++answered;
  }
  if (auto done = conn.shutdown(hvsock::shutdown_how::write); !done) {
    std::cerr << "hv_socket_demo_host: " << done.error().message() << '\n';
    return false;
  }
  std::cout << "host: client finished; answered " << answered << " line(s), closing\n"
            << std::flush;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const options opts = parse_arguments(argc, argv);

  const hvsock::endpoint local{hvsock::vm_id_wildcard, opts.service};
  auto server = hvsock::listen(local);
  if (!server) fail(server.error().message());

  // Scripts wait for this line before starting the client.
  std::cerr << "listening on " << local.to_string() << '\n' << std::flush;

  bool all_ok = true;
  for (std::uint64_t served = 0; opts.connections == 0 || served < opts.connections; ++served) {
    auto conn = server->accept();
    if (!conn) fail(conn.error().message());
    all_ok = serve(std::move(*conn)) && all_ok;
  }
  return all_ok ? 0 : 1;
}
