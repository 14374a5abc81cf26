// message_socket and message_listener against a real hvsockd: boundaries at
// every size, truncation, the end of messages after an empty one, the
// switch keeping stream and seqpacket apart, and the counters.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include <hvsock/hvsock.hpp>

#include "switch_fixture.hpp"

namespace hvsock::test {
namespace {

using namespace std::chrono_literals;

// Message i of a run: its size and a pattern that differs per message, so a
// message delivered in the wrong place or cut short shows.
std::vector<std::byte> message_of(std::size_t size, unsigned seed) {
  std::vector<std::byte> m(size);
  for (std::size_t i = 0; i < size; ++i)
    m[i] = static_cast<std::byte>((i * 131 + seed * 17 + (i >> 8)) & 0xff);
  return m;
}

// Joins a sender thread however the test leaves its scope: a failed ASSERT
// returns early, and a std::thread destroyed unjoined ends the whole run
// (std::terminate). Shutting both sockets down first wakes a sender blocked
// on a full queue, whose sends then fail instead of waiting forever.
class sender_joiner {
 public:
  sender_joiner(std::thread& thread, message_socket& sender, message_socket& receiver)
      : thread_(thread), sender_(sender), receiver_(receiver) {}
  sender_joiner(const sender_joiner&) = delete;
  sender_joiner& operator=(const sender_joiner&) = delete;
  ~sender_joiner() {
    if (!thread_.joinable()) return;
    (void)receiver_.shutdown(shutdown_how::both);
    (void)sender_.shutdown(shutdown_how::both);
    thread_.join();
  }

 private:
  std::thread& thread_;
  message_socket& sender_;
  message_socket& receiver_;
};

class MessageSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sw.create_vm("web");
    svc = *guid::parse(sw.register_service("rpc"));
  }
  listen_options in(const std::string& p, int backlog = 16) const {
    return {.backlog = backlog, .control_socket = sw.control_socket(p)};
  }
  connect_options from(const std::string& p) const {
    return {.timeout = 5s, .control_socket = sw.control_socket(p)};
  }
  // A connected pair: `web` connects to the host's listener.
  std::pair<message_socket, message_socket> connected_pair() {
    auto l = message_listener::listen({vm_id_wildcard, svc}, in("host"));
    EXPECT_TRUE(l) << l.error().message();
    if (!l) return {};
    auto c = message_socket::connect({vm_id_parent, svc}, from("web"));
    EXPECT_TRUE(c) << c.error().message();
    if (!c) return {};
    auto a = l->accept(5s);
    EXPECT_TRUE(a) << a.error().message();
    if (!a) return {};
    return {std::move(*c), std::move(*a)};
  }

  switch_fixture sw;
  service_id svc;
};

TEST_F(MessageSocketTest, EveryMessageArrivesWholeAndAloneBothWays) {
  auto [c, a] = connected_pair();
  ASSERT_TRUE(c.is_open() && a.is_open());
  const auto limit = c.max_message_size();
  ASSERT_TRUE(limit) << limit.error().message();
  std::vector<std::size_t> sizes{0, 1, 4096, 65536, 200000};
  // 1 MiB needs a send buffer that only CAP_NET_ADMIN gets past
  // net.core.wmem_max; CI runs as root and has it.
  if (*limit >= (1u << 20)) sizes.push_back(1u << 20);
  std::cout << "largest message: " << *limit << " bytes; sizes tried: " << sizes.size() << "\n";
  for (auto* pair : {&c, &a}) {
    message_socket& sender = *pair;
    message_socket& receiver = pair == &c ? a : c;
    // The sender runs on its own thread: the big ones fill the queue.
    std::thread send_all([&] {
      for (unsigned i = 0; i < sizes.size(); ++i) {
        auto sent = sender.send(message_of(sizes[i], i));
        EXPECT_TRUE(sent) << sizes[i] << ": " << sent.error().message();
      }
    });
    const sender_joiner joined(send_all, sender, receiver);
    std::vector<std::byte> buffer((1u << 20) + 1);
    for (unsigned i = 0; i < sizes.size(); ++i) {
      auto got = receiver.receive(buffer);
      ASSERT_TRUE(got) << got.error().message();
      EXPECT_FALSE(got->end_of_stream) << "message " << i << " of " << sizes[i] << " bytes";
      EXPECT_FALSE(got->truncated());
      ASSERT_EQ(got->size, sizes[i]);
      EXPECT_TRUE(
          std::equal(buffer.begin(), buffer.begin() + got->size, message_of(sizes[i], i).begin()))
          << "message " << i << " of " << sizes[i] << " bytes differs";
    }
    send_all.join();
  }
}

TEST_F(MessageSocketTest, ASmallBufferKeepsTheStartAndSaysTheRestWasCut) {
  auto [c, a] = connected_pair();
  ASSERT_TRUE(c.is_open() && a.is_open());
  ASSERT_TRUE(c.send("0123456789abcdef"));
  ASSERT_TRUE(c.send("next"));
  std::array<std::byte, 10> small;
  auto got = a.receive(small);
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_EQ(got->size, 10u);
  EXPECT_EQ(got->length, 16u);
  EXPECT_TRUE(got->truncated());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(small.data()), 10), "0123456789");
  // The rest of the cut message is gone; the next one is whole.
  got = a.receive(small);
  ASSERT_TRUE(got);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(small.data()), got->size), "next");
  EXPECT_FALSE(got->truncated());
}

TEST_F(MessageSocketTest, AnEmptyMessageIsNotTheEnd) {
  auto [c, a] = connected_pair();
  ASSERT_TRUE(c.is_open() && a.is_open());
  ASSERT_TRUE(c.send(std::string_view()));
  ASSERT_TRUE(c.shutdown(shutdown_how::write));
  std::array<std::byte, 16> buffer;
  auto empty = a.receive(buffer);
  ASSERT_TRUE(empty) << empty.error().message();
  EXPECT_EQ(empty->size, 0u);
  EXPECT_FALSE(empty->end_of_stream) << "the empty message read as the end";
  auto end = a.receive(buffer);
  ASSERT_TRUE(end) << end.error().message();
  EXPECT_TRUE(end->end_of_stream);
  // Half-closed: the other way still works.
  ASSERT_TRUE(a.send("reply"));
  auto reply = c.receive(buffer);
  ASSERT_TRUE(reply);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(buffer.data()), reply->size), "reply");
  a.close();
  auto closed = c.receive(buffer);
  ASSERT_TRUE(closed);
  EXPECT_TRUE(closed->end_of_stream);
}

TEST_F(MessageSocketTest, AMessageTooLongIsRefusedWholeAndNothingIsSent) {
  auto [c, a] = connected_pair();
  ASSERT_TRUE(c.is_open() && a.is_open());
  const auto limit = c.max_message_size();
  ASSERT_TRUE(limit) << limit.error().message();
  auto sent = c.send(message_of(*limit + 1, 1));
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error().code(), make_error_code(errc::message_too_long));
  EXPECT_TRUE(sent.error().code() == std::errc::message_size);
  EXPECT_NE(sent.error().message().find(std::to_string(*limit)), std::string::npos)
      << sent.error().message();
  ASSERT_TRUE(c.send("after"));
  std::array<std::byte, 16> buffer;
  auto got = a.receive(buffer);
  ASSERT_TRUE(got);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(buffer.data()), got->size), "after");
}

TEST_F(MessageSocketTest, FdsAPeerPassesAlongAreNotKept) {
  auto [c, a] = connected_pair();
  ASSERT_TRUE(c.is_open() && a.is_open());
  // The peer (another partition's program) attaches an fd to a message.
  int passed[2];
  ASSERT_EQ(::pipe2(passed, O_CLOEXEC), 0);
  char text[] = "with an fd";
  iovec iov{text, sizeof text - 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(cm), &passed[0], sizeof(int));
  ASSERT_EQ(::sendmsg(c.native_handle(), &msg, MSG_NOSIGNAL), 10) << std::strerror(errno);
  ::close(passed[0]);
  ::close(passed[1]);
  const int before = count_open_fds(::getpid());
  std::array<std::byte, 32> buffer;
  auto got = a.receive(buffer);
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_EQ(got->size, 10u);
  EXPECT_EQ(count_open_fds(::getpid()), before) << "the passed fd was kept";
}

TEST_F(MessageSocketTest, NonBlockingReceiveAndPoll) {
  auto [c, a] = connected_pair();
  ASSERT_TRUE(c.is_open() && a.is_open());
  ASSERT_TRUE(a.set_non_blocking(true));
  std::array<std::byte, 16> buffer;
  auto none = a.receive(buffer);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), make_error_code(errc::would_block));
  ASSERT_TRUE(c.send("ping"));
  pollfd p{a.native_handle(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1);
  auto got = a.receive(buffer);
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_EQ(got->size, 4u);
}

TEST_F(MessageSocketTest, TheSwitchKeepsStreamsAndMessagesApart) {
  {
    auto l = listener::listen({vm_id_wildcard, svc}, in("host"));
    ASSERT_TRUE(l) << l.error().message();
    auto m = message_socket::connect({vm_id_parent, svc}, from("web"));
    ASSERT_FALSE(m);
    EXPECT_EQ(m.error().code(), make_error_code(errc::connection_refused));
    EXPECT_NE(m.error().message().find("takes stream connections, not seqpacket"),
              std::string::npos)
        << m.error().message();
    // One address space: the stream listener holds the address for both.
    auto ml = message_listener::listen({vm_id_wildcard, svc}, in("host"));
    ASSERT_FALSE(ml);
    EXPECT_EQ(ml.error().code(), make_error_code(errc::address_in_use));
  }
  auto ml = message_listener::listen({vm_id_wildcard, svc}, in("host"));
  ASSERT_TRUE(ml) << ml.error().message();
  auto s = stream::connect({vm_id_parent, svc}, from("web"));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), make_error_code(errc::connection_refused));
  EXPECT_NE(s.error().message().find("takes seqpacket connections, not stream"), std::string::npos)
      << s.error().message();
  // Nothing was queued by the refusals: the right type still gets through.
  auto m = message_socket::connect({vm_id_parent, svc}, from("web"));
  ASSERT_TRUE(m) << m.error().message();
  auto a = ml->accept(5s);
  ASSERT_TRUE(a) << a.error().message();
  EXPECT_EQ(a->peer_endpoint().vm, sw.vm_id_of("web"));

  const auto stats = nlohmann::json::parse(sw.cli_ok({"stats", "--json"}));
  bool found = false;
  for (const auto& entry : stats.at("services")) {
    if (entry.at("name") != "rpc") continue;
    found = true;
    EXPECT_EQ(entry.at("accepted"), 1) << entry.dump();
    EXPECT_EQ(entry.at("accepted_seqpacket"), 1) << entry.dump();
    // The two refusals above are the type's, not a missing listener's.
    EXPECT_EQ(entry.at("refused").at("type_mismatch"), 2) << entry.dump();
    EXPECT_EQ(entry.at("refused").at("no_listener"), 0) << entry.dump();
  }
  EXPECT_TRUE(found) << stats.dump();
  const std::string metrics = sw.cli_ok({"stats", "--format", "prometheus"});
  EXPECT_NE(metrics.find("hvsock_service_seqpacket_connections_accepted_total{service_id=\"" +
                         svc.to_string() + "\",service=\"rpc\"} 1"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("hvsock_service_connections_refused_total{service_id=\"" +
                         svc.to_string() + "\",service=\"rpc\",reason=\"type_mismatch\"} 2"),
            std::string::npos)
      << metrics;
  // The table has a column for them.
  const std::string table = sw.cli_ok({"stats"});
  EXPECT_NE(table.find("TYPE-MISMATCH"), std::string::npos) << table;
}

TEST_F(MessageSocketTest, AQemuGuestTakesMessagesAndAHybridVmIsRefusedClearly) {
  const auto port = service_id_from_port(5000);
  sw.register_service("guest rpc", port.to_string());
  // A QEMU guest's device carries SEQPACKET (tests/guest/qemu_seqpacket_test.sh
  // runs it in a real guest): with no QEMU attached, that is the refusal.
  sw.cli_ok({"vm", "create", "guest", "--qemu"});
  auto m = message_socket::connect({sw.vm_id_of("guest"), port}, from("host"));
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code(), make_error_code(errc::connection_refused));
  EXPECT_NE(m.error().message().find("no QEMU is attached"), std::string::npos)
      << m.error().message();
  // The hybrid vsock protocol has no messages: refused at once, saying so.
  sw.cli_ok({"vm", "create", "fc", "--hybrid-vsock", sw.state_dir() + "/fc-vmm.sock"});
  m = message_socket::connect({sw.vm_id_of("fc"), port}, from("host"));
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code(), make_error_code(errc::connection_refused));
  EXPECT_NE(m.error().message().find("stream connections only"), std::string::npos)
      << m.error().message();
  const auto stats = nlohmann::json::parse(sw.cli_ok({"stats", "--json"}));
  bool found = false;
  for (const auto& entry : stats.at("services")) {
    if (entry.at("name") != "guest rpc") continue;
    found = true;
    EXPECT_EQ(entry.at("refused").at("type_mismatch"), 1) << entry.dump();
  }
  EXPECT_TRUE(found) << stats.dump();
}

TEST_F(MessageSocketTest, ACliConversationKeepsLines) {
  auto server = sw.cli_async({"listen", "--seqpacket", "rpc"});
  // The listener is up once its line is on stderr.
  ASSERT_TRUE(server->wait_for_stderr("listening on", 10s)) << server->err();
  server->write_stdin("an answer\n");
  server->close_stdin();
  const auto r =
      sw.cli({"connect", "--seqpacket", "loopback", "rpc"}, "first\n\nthird line\nno newline");
  EXPECT_EQ(r.status.code, 0) << r.err;
  EXPECT_EQ(r.out, "an answer\n");
  const auto done = server->wait(10s);
  EXPECT_EQ(done.code, 0) << server->err();
  EXPECT_EQ(server->out(), "first\n\nthird line\nno newline\n");
}

TEST_F(MessageSocketTest, ACliLineLongerThanAMessageIsRefusedAtOnceNamingTheLimit) {
  auto l = message_listener::listen({vm_id_wildcard, svc}, in("host"));
  ASSERT_TRUE(l) << l.error().message();
  auto client = sw.cli_async({"connect", "--seqpacket", "loopback", "rpc"});
  auto a = l->accept(10s);
  ASSERT_TRUE(a) << a.error().message() << client->err();
  const auto limit = a->max_message_size();  // hvsockd sizes both ends alike
  ASSERT_TRUE(limit) << limit.error().message();
  // One line, then a second one byte too long, not ended and stdin left
  // open: the CLI refuses it as soon as it is too long, not at its end.
  client->write_stdin("first\n" + std::string(*limit + 1, 'x'));
  const auto done = client->wait(10s);
  EXPECT_EQ(done.code, 1) << client->err();
  const std::string& err = client->err();
  EXPECT_NE(err.find("line 2 of stdin is longer than " + std::to_string(*limit) + " bytes"),
            std::string::npos)
      << err;
  client->close_stdin();
  // The line before it was sent, then the end; nothing of the long one.
  std::vector<std::byte> buffer(*limit + 2);
  pollfd p{a->native_handle(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1);
  auto got = a->receive(buffer);
  ASSERT_TRUE(got) << got.error().message();
  ASSERT_FALSE(got->end_of_stream);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(buffer.data()), got->size), "first");
  ASSERT_EQ(::poll(&p, 1, 5000), 1);
  got = a->receive(buffer);
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_TRUE(got->end_of_stream) << got->size << " bytes";
}

}  // namespace
}  // namespace hvsock::test
