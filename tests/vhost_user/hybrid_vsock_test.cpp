// Hybrid vsock on QEMU partitions (docs/hybrid-vsock.md) against a real
// hvsockd, the guest played by fake_frontend and the host side by a raw
// C-style Unix socket client, as Firecracker's users write it:
// - CONNECT <port> reaches the guest's port; "OK <host port>\n" comes only
//   after the guest accepted, and bytes sent after the line are the
//   stream's;
// - refusals (unregistered port, the guest's RST), garbage, an over-long
//   line and a silent client close the socket without OK, and the socket
//   serves the next client;
// - a guest's connect to a host port no hvsock listener takes reaches a
//   Unix listener at <hybrid socket>_<port>; an hvsock listener is tried
//   first; an unregistered port is refused even with a Unix listener.
// And a Firecracker-style VM as a partition of a second switch (issue 12,
// part 3): switch A's `vm create --hybrid-vsock` on switch B's hybrid socket
// of that guest; A's host programs reach the guest, and the guest reaches
// A's host listeners through <socket>_<port>, both under A's rules.
// Every wait is on a socket or the device's call eventfds, bounded.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <future>
#include <optional>
#include <string>
#include <vector>

#include <hvsock/hvsock.hpp>

#include "fake_frontend.hpp"
#include "guest_stream.hpp"
#include "switch_fixture.hpp"

namespace hvsock::test {
namespace {

using namespace std::chrono_literals;

// --- a raw Unix stream client and listener --------------------------------

sockaddr_un unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  EXPECT_LT(path.size(), sizeof addr.sun_path);
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  return addr;
}

unique_fd unix_connect(const std::string& path) {
  unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const sockaddr_un addr = unix_address(path);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) < 0) {
    ADD_FAILURE() << "connect " << path << ": " << std::strerror(errno);
    return {};
  }
  return fd;
}

unique_fd unix_listen(const std::string& path) {
  unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const sockaddr_un addr = unix_address(path);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0)
      << std::strerror(errno);
  EXPECT_EQ(::listen(fd.get(), 8), 0);
  return fd;
}

bool readable(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(timeout.count())) == 1;
}

void send_all(int fd, const std::string& text) {
  ASSERT_EQ(::send(fd, text.data(), text.size(), MSG_NOSIGNAL), static_cast<ssize_t>(text.size()))
      << std::strerror(errno);
}

// Reads until `bytes` arrived, EOF, or `timeout`; `eof` says whether it ended.
std::string read_some(int fd, std::size_t bytes, std::chrono::milliseconds timeout,
                      bool* eof = nullptr) {
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  if (eof) *eof = false;
  while (got.size() < bytes) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= 0ms || !readable(fd, left)) break;
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      if (eof) *eof = true;
      break;
    }
    got.append(buf, static_cast<std::size_t>(n));
  }
  return got;
}

// The socket was closed without a byte: what a refusal looks like.
void expect_closed_without_answer(int fd, std::chrono::milliseconds timeout,
                                  const std::string& what) {
  bool eof = false;
  const std::string got = read_some(fd, 1, timeout, &eof);
  EXPECT_TRUE(eof) << what << ": not closed";
  EXPECT_EQ(got, "") << what << ": answered";
}

std::span<const std::byte> bytes_of(const std::string& s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

class HybridVsock : public ::testing::Test {
 protected:
  void SetUp() override {
    guest = attach_guest(sw, "fc", 21);
    ASSERT_TRUE(guest);
    hybrid = partition(sw, "fc").at("hybrid_socket");
    sw.register_service("guest echo", service_id_from_port(5200).to_string());
  }

  switch_fixture sw;
  std::unique_ptr<fake_frontend> guest;
  std::string hybrid;
};

TEST_F(HybridVsock, ConnectReachesTheGuestPortAndOkComesAfterItsAnswer) {
  EXPECT_NE(sw.cli({"vm", "create", "fc2", "--qemu"}).err.find("hybrid vsock socket: "),
            std::string::npos);
  unique_fd host = unix_connect(hybrid);
  ASSERT_TRUE(host);
  // The line and the stream's first bytes in one write.
  send_all(host.get(), "CONNECT 5200\nfirst bytes");
  EXPECT_FALSE(readable(host.get(), 200ms)) << "OK before the guest answered";
  auto s = guest_stream::accept(*guest, 5200, 10s);
  ASSERT_TRUE(s) << s.error().message();
  const std::string ok = "OK " + std::to_string(s->host_port()) + "\n";
  EXPECT_EQ(read_some(host.get(), ok.size(), 10s), ok);
  EXPECT_EQ(s->read(11, 10s), "first bytes");
  ASSERT_TRUE(s->write(bytes_of("from the guest")));
  EXPECT_EQ(read_some(host.get(), 14, 10s), "from the guest");
  send_all(host.get(), " and more");
  EXPECT_EQ(s->read(20, 10s), "first bytes and more");
  const auto stats = nlohmann::json::parse(sw.cli_ok({"stats", "--json"}));
  bool counted = false;
  for (const auto& svc : stats.at("services"))
    if (svc.at("name") == "guest echo") counted = svc.at("accepted").get<int>() == 1;
  EXPECT_TRUE(counted) << stats.dump();
}

TEST_F(HybridVsock, RefusalsAndGarbageCloseWithoutOkAndTheSocketServesOn) {
  {
    unique_fd host = unix_connect(hybrid);
    send_all(host.get(), "CONNECT 5999\n");  // no such service
    expect_closed_without_answer(host.get(), 10s, "unregistered port");
    // Refused by the switch: the guest never heard of it.
    for (const auto& p : guest->receive())
      EXPECT_FALSE(p.hdr.op == op(virtio::vsock_op::request) && p.hdr.dst_port == 5999)
          << "the REQUEST for an unregistered port reached the guest";
  }
  {
    unique_fd host = unix_connect(hybrid);
    send_all(host.get(), "CONNECT 5200\n");
    ASSERT_TRUE(guest_stream::refuse(*guest, 5200, 10s));
    expect_closed_without_answer(host.get(), 10s, "the guest's RST");
  }
  const std::vector<std::string> garbage_lines{
      "HELLO 5200\n",        "CONNECT\n",
      "CONNECT -1\n",        "CONNECT 99999999999\n",
      "CONNECT 52 00\n",     std::string("CONNECT \0 5200\n", 15),
      std::string(100, 'x'), "\n"};
  for (const std::string& garbage : garbage_lines) {
    unique_fd host = unix_connect(hybrid);
    send_all(host.get(), garbage);
    expect_closed_without_answer(host.get(), 10s, "garbage " + garbage);
  }
  {
    unique_fd host = unix_connect(hybrid);  // sends nothing: closed at the 5 s deadline
    expect_closed_without_answer(host.get(), 15s, "a silent client");
  }
  EXPECT_TRUE(sw.daemon().wait_for_stderr("no CONNECT line within 5000 ms", 5s))
      << sw.daemon().err();
  // Blanks and a '\r' are tolerated (clients written for Windows line ends).
  unique_fd host = unix_connect(hybrid);
  send_all(host.get(), "CONNECT\t 5200 \r\n");
  auto s = guest_stream::accept(*guest, 5200, 10s);
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ(read_some(host.get(), 3, 10s).substr(0, 3), "OK ");
  EXPECT_EQ(sw.cli({"status"}).status.code, 0);
}

TEST_F(HybridVsock, AGuestReachesAUnixListenerBesideTheHybridSocket) {
  sw.register_service("unix side", service_id_from_port(5300).to_string());
  unique_fd unix_side = unix_listen(hybrid + "_5300");
  unique_fd unregistered = unix_listen(hybrid + "_5301");

  guest_stream s(*guest, 1500, 5300);
  ASSERT_TRUE(s.connect()) << sw.daemon().err();
  ASSERT_TRUE(readable(unix_side.get(), 10s));
  unique_fd accepted(::accept4(unix_side.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(accepted);
  ASSERT_TRUE(s.write(bytes_of("to the unix listener")));
  EXPECT_EQ(read_some(accepted.get(), 20, 10s), "to the unix listener");
  send_all(accepted.get(), "back");
  EXPECT_EQ(s.read(4, 10s), "back");

  // Port 5301 is no registered service: refused, its listener never sees it.
  guest_stream refused(*guest, 1501, 5301);
  EXPECT_FALSE(refused.connect());
  EXPECT_FALSE(readable(unregistered.get(), 100ms));

  // An hvsock listener on 5300 comes first.
  auto l = listener::listen({vm_id_wildcard, service_id_from_port(5300)},
                            {.control_socket = sw.control_socket("host")});
  ASSERT_TRUE(l) << l.error().message();
  guest_stream second(*guest, 1502, 5300);
  ASSERT_TRUE(second.connect());
  auto via_hvsock = l->accept(10s);
  ASSERT_TRUE(via_hvsock) << via_hvsock.error().message();
  EXPECT_FALSE(readable(unix_side.get(), 100ms));
}

std::string read_stream(stream& s, std::size_t bytes) {
  std::string got;
  char buf[4096];
  while (got.size() < bytes) {
    auto n = s.read(buf, sizeof buf);
    if (!n || *n == 0) break;
    got.append(buf, *n);
  }
  return got;
}

TEST(HybridVsockVm, ASecondSwitchReachesTheGuestThroughItsHybridSocketBothWays) {
  switch_fixture b;  // serves the guest, as a VMM does
  auto guest = attach_guest(b, "inner", 22);
  ASSERT_TRUE(guest);
  const std::string vmm_socket = partition(b, "inner").at("hybrid_socket");
  for (const auto* sw : {&b})
    for (std::uint32_t port : {5200u, 5201u, 5400u})
      sw->register_service("svc " + std::to_string(port), service_id_from_port(port).to_string());

  switch_fixture a;  // the switch the VM joins through its VMM's socket
  for (std::uint32_t port : {5200u, 5400u})
    a.register_service("svc " + std::to_string(port), service_id_from_port(port).to_string());
  a.cli_ok({"vm", "create", "fcvm", "--hybrid-vsock", vmm_socket, "--cid", "30"});
  const auto described = partition(a, "fcvm");
  EXPECT_EQ(described.at("backend"), "hybrid");
  EXPECT_EQ(described.at("hybrid_vsock"), vmm_socket);
  EXPECT_EQ(described.at("vmm_socket_present"), true);
  const vm_id fcvm{a.vm_id_of("fcvm")};

  // A's host -> the guest's port 5200.
  auto connecting = std::async(std::launch::async, [&] {
    return hvsock::connect({fcvm, service_id_from_port(5200)},
                           {.timeout = 10s, .control_socket = a.control_socket("host")});
  });
  auto in_guest = guest_stream::accept(*guest, 5200, 10s);
  ASSERT_TRUE(in_guest) << in_guest.error().message();
  auto host_side = connecting.get();
  ASSERT_TRUE(host_side) << host_side.error().message() << a.daemon().err();
  ASSERT_TRUE(host_side->write_all("host of A to the guest"));
  EXPECT_EQ(in_guest->read(22, 10s), "host of A to the guest");
  ASSERT_TRUE(in_guest->write(bytes_of("guest to the host of A")));
  EXPECT_EQ(read_stream(*host_side, 22), "guest to the host of A");

  // The guest -> A's host listener on 5400, through B (no listener there)
  // and <vmm socket>_5400, where A listens for the VM.
  auto l = listener::listen({vm_id_wildcard, service_id_from_port(5400)},
                            {.control_socket = a.control_socket("host")});
  ASSERT_TRUE(l) << l.error().message();
  guest_stream out(*guest, 1600, 5400);
  ASSERT_TRUE(out.connect()) << b.daemon().err() << a.daemon().err();
  auto accepted = l->accept(10s);
  ASSERT_TRUE(accepted) << accepted.error().message();
  EXPECT_EQ(accepted->peer_endpoint().vm, fcvm);  // it came from partition fcvm
  ASSERT_TRUE(out.write(bytes_of("guest to A's listener")));
  EXPECT_EQ(read_stream(*accepted, 21), "guest to A's listener");
  ASSERT_TRUE(accepted->write_all("listener back"));
  EXPECT_EQ(out.read(13, 10s), "listener back");

  // Refusals: 5201 is registered on B only (A refuses without asking B), and
  // 5200 with nothing accepting in the guest (B's close without OK).
  auto unregistered = hvsock::connect({fcvm, service_id_from_port(5201)},
                                      {.timeout = 10s, .control_socket = a.control_socket("host")});
  ASSERT_FALSE(unregistered);
  EXPECT_EQ(unregistered.error().code(), make_error_code(errc::service_not_registered));
  auto refusing =
      std::async(std::launch::async, [&] { return guest_stream::refuse(*guest, 5200, 10s); });
  auto refused = hvsock::connect({fcvm, service_id_from_port(5200)},
                                 {.timeout = 10s, .control_socket = a.control_socket("host")});
  ASSERT_TRUE(refusing.get());
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), make_error_code(errc::connection_refused))
      << refused.error().message();

  // Its guest-port listeners follow the registry, and go with the VM.
  struct stat st {};
  EXPECT_EQ(::stat((vmm_socket + "_5400").c_str(), &st), 0);
  a.cli_ok({"service", "disable", service_id_from_port(5400).to_string(), "--vm", "fcvm"});
  EXPECT_NE(::stat((vmm_socket + "_5400").c_str(), &st), 0) << "disabled for the VM";
  a.cli_ok({"service", "enable", service_id_from_port(5400).to_string(), "--vm", "fcvm"});
  EXPECT_EQ(::stat((vmm_socket + "_5400").c_str(), &st), 0) << "enabled again";
  a.cli_ok({"service", "remove", service_id_from_port(5400).to_string()});
  EXPECT_NE(::stat((vmm_socket + "_5400").c_str(), &st), 0);
  EXPECT_EQ(::stat((vmm_socket + "_5200").c_str(), &st), 0);
  a.cli_ok({"vm", "remove", "fcvm"});
  EXPECT_NE(::stat((vmm_socket + "_5200").c_str(), &st), 0);
}

TEST(HybridVsockVm, AMissingVmmSocketIsShownAndRefusedClearly) {
  switch_fixture a;
  a.register_service("svc", service_id_from_port(5200).to_string());
  const std::string path = a.root() + "/no-vmm.sock";
  a.cli_ok({"vm", "create", "down", "--hybrid-vsock", path});
  EXPECT_EQ(partition(a, "down").at("vmm_socket_present"), false);
  EXPECT_NE(a.cli_ok({"vm", "list"}).find("hybrid (no VMM socket)"), std::string::npos);
  auto refused = hvsock::connect({a.vm_id_of("down"), service_id_from_port(5200)},
                                 {.timeout = 10s, .control_socket = a.control_socket("host")});
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("is the VM running?"), std::string::npos)
      << refused.error().message();
  // Bad paths are turned away by the CLI and by hvsockd.
  EXPECT_EQ(a.cli({"vm", "create", "rel", "--hybrid-vsock", "relative.sock"}).status.code, 2);
  EXPECT_NE(a.cli({"vm", "create", "both", "--qemu", "--hybrid-vsock", path}).status.code, 0);
  EXPECT_NE(a.cli({"vm", "create", "twice", "--hybrid-vsock", path}).status.code, 0);
  EXPECT_NE(
      a.cli({"vm", "create", "long", "--hybrid-vsock", "/" + std::string(100, 'x')}).status.code,
      0);
  // A program's own listener at <socket>_<port>, or another file, is never
  // replaced; the registered port the file is in the way of is left out.
  const std::string vmm = a.root() + "/vmm.sock";
  unique_fd theirs = unix_listen(vmm + "_5200");
  { std::ofstream(vmm + "_5201") << "not a socket"; }
  a.register_service("svc 5201", service_id_from_port(5201).to_string());
  a.cli_ok({"vm", "create", "crowded", "--hybrid-vsock", vmm});
  EXPECT_TRUE(a.daemon().wait_for_stderr("another program listens at " + vmm + "_5200", 5s));
  EXPECT_TRUE(a.daemon().wait_for_stderr("exists and is not a socket", 5s));
  // Found listening in /proc/net/unix, not by connecting to it. hvsockd
  // follows a change before the CLI's call returns, and a connect to a Unix
  // listener is queued at once: nothing pending now means none was made.
  EXPECT_FALSE(readable(theirs.get(), 0ms)) << "hvsockd connected to the program's listener";
  // Nor at registry changes.
  a.register_service("svc 5202", service_id_from_port(5202).to_string());
  a.cli_ok({"service", "disable", "svc 5202"});
  EXPECT_FALSE(readable(theirs.get(), 0ms)) << "connected to at a registry change";
  EXPECT_EQ(std::ifstream(vmm + "_5201").get(), 'n');
  // The program gone (its socket closed, as when it is killed; the file
  // stays): the next registry change replaces the stale socket, and the
  // VMM's connects to _5200 reach hvsockd (a stale socket refuses them).
  theirs.reset();
  a.cli_ok({"service", "enable", "svc 5202"});
  EXPECT_TRUE(unix_connect(vmm + "_5200")) << "the stale socket was not replaced\n"
                                           << a.daemon().err();
  // Kept across a restart of hvsockd.
  a.stop_daemon();
  a.start_daemon();
  EXPECT_EQ(partition(a, "down").at("hybrid_vsock"), path);
}

TEST(HybridVsockVm, AVmmThatMisbehavesIsRefusedAndTheSwitchServesOn) {
  switch_fixture a;
  const auto port = service_id_from_port(5200);
  a.register_service("svc", port.to_string());
  auto connect_to = [&](const std::string& vm) {
    return hvsock::connect({a.vm_id_of(vm), port},
                           {.timeout = 20s, .control_socket = a.control_socket("host")});
  };

  // A VMM that answers each CONNECT with one of these, then closes.
  const std::string talker = a.root() + "/talker.sock";
  unique_fd talking = unix_listen(talker);
  a.cli_ok({"vm", "create", "talker", "--hybrid-vsock", talker});
  const std::vector<std::string> answers{"OK\n", "OK 12x\n", "KO 1\n", std::string(100, 'O'), ""};
  auto vmm = std::async(std::launch::async, [&] {
    std::vector<std::string> lines;
    for (const auto& answer : answers) {
      if (!readable(talking.get(), 10s)) break;
      unique_fd c(::accept4(talking.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!c) break;
      std::string line;
      while (line.find('\n') == std::string::npos) {
        const std::string more = read_some(c.get(), 1, 5s);
        if (more.empty()) break;
        line += more;
      }
      lines.push_back(line);
      (void)::send(c.get(), answer.data(), answer.size(), MSG_NOSIGNAL);
    }
    return lines;
  });
  for (const auto& answer : answers) {
    SCOPED_TRACE("the VMM answered \"" + answer.substr(0, 12) + "\"");
    auto refused = connect_to("talker");
    ASSERT_FALSE(refused);
    if (answer.empty() || answer.back() != '\n') {  // a close, or a line over 64 bytes
      EXPECT_EQ(refused.error().code(), make_error_code(errc::connection_refused))
          << refused.error().message();
    } else {
      EXPECT_EQ(refused.error().code(), make_error_code(errc::protocol_error))
          << refused.error().message();
      EXPECT_NE(refused.error().message().find("not \"OK <port>\""), std::string::npos)
          << refused.error().message();
    }
  }
  const auto lines = vmm.get();
  ASSERT_EQ(lines.size(), answers.size());
  for (const auto& line : lines) EXPECT_EQ(line, "CONNECT 5200\n");

  // A VMM that never accepts: the first connect waits in its backlog (of
  // one) for the OK that never comes, the next finds the backlog full.
  const std::string silent = a.root() + "/silent.sock";
  unique_fd quiet(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const sockaddr_un addr = unix_address(silent);
  ASSERT_EQ(::bind(quiet.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(quiet.get(), 0), 0);
  a.cli_ok({"vm", "create", "silent", "--hybrid-vsock", silent});
  auto waiting = std::async(std::launch::async, [&] { return connect_to("silent"); });
  // The first is in the backlog once the socket shows a pending connection.
  ASSERT_TRUE(readable(quiet.get(), 10s));
  auto full = connect_to("silent");
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code(), make_error_code(errc::backlog_full)) << full.error().message();
  auto timed_out = waiting.get();
  ASSERT_FALSE(timed_out);
  EXPECT_EQ(timed_out.error().code(), make_error_code(errc::timed_out))
      << timed_out.error().message();
  EXPECT_NE(timed_out.error().message().find("did not answer CONNECT 5200"), std::string::npos)
      << timed_out.error().message();

  // Nothing of that reached anyone else: the switch serves on.
  auto l = listener::listen({vm_id_wildcard, port}, {.control_socket = a.control_socket("host")});
  ASSERT_TRUE(l) << l.error().message();
  auto s = hvsock::connect({vm_id_loopback, port}, {.control_socket = a.control_socket("host")});
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_TRUE(l->accept(5s));
}

}  // namespace
}  // namespace hvsock::test
