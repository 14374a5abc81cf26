// The control protocol's "connect this socket" job (connect_socket_request)
// and the bind-then-listen split (bind_request with backlog 0, then
// listen_request), which the preload shim is built on: the daemon connects
// the client's own AF_UNIX socket, so the client's fd keeps its identity
// (epoll registrations, flags), and a refused connect leaves it reusable.
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include <hvsock/hvsock.hpp>

#include "protocol/control_wire.hpp"
#include "switch_fixture.hpp"
#include "sys/fd_passing.hpp"

namespace hvsock::test {
namespace {

using namespace std::chrono_literals;
namespace wire = hvsock::detail::wire;

unique_fd control_connection(const std::string& path) {
  unique_fd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return {};
  return fd;
}

// The daemon's answer on `control`: a reply, or nullopt when it closed the
// connection (or said nothing within 5 s).
std::optional<wire::reply> next_reply(int control) {
  pollfd p{control, POLLIN, 0};
  if (::poll(&p, 1, 5000) != 1) return std::nullopt;
  std::array<std::byte, wire::max_message_size + 1> buf{};
  auto got = detail::receive_message(control, buf);
  if (!got || got->size == 0) return std::nullopt;
  return wire::decode<wire::reply>(std::span(buf.data(), got->size), wire::message_type::reply);
}

unique_fd stream_socket(int flags = 0) {
  return unique_fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | flags, 0));
}

bool is_connected(int fd) {
  sockaddr_un peer{};
  socklen_t len = sizeof peer;
  return ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) == 0;
}

class SocketConnectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    web_id = *guid::parse(sw.create_vm("web"));
    svc = *guid::parse(sw.register_service("socket connect"));
    const auto vms = nlohmann::json::parse(sw.cli_ok({"vm", "list", "--json"}));
    for (const auto& p : vms)
      if (p.at("name") == "web") web_cid = p.at("cid").get<std::uint32_t>();
  }

  wire::connect_socket_request request_to(const endpoint& target) const {
    auto r = wire::make<wire::connect_socket_request>(wire::message_type::connect_socket_request);
    r.target = wire::to_raw(target);
    return r;
  }
  wire::connect_socket_request request_to_cid(std::uint32_t cid, const service_id& s) const {
    auto r = request_to({vm_id_wildcard, s});
    r.flags = wire::target_by_cid;
    r.target_cid = cid;
    return r;
  }

  // Sends `request` from `partition` with `socket` attached; the reply, or
  // nullopt if the daemon closed the control connection.
  std::optional<wire::reply> send(const std::string& partition,
                                  const wire::connect_socket_request& request, int socket) {
    auto control = control_connection(sw.control_socket(partition));
    EXPECT_TRUE(control);
    EXPECT_TRUE(detail::send_message(control.get(), wire::as_bytes(request), socket));
    return next_reply(control.get());
  }

  listener listen_in(const std::string& partition, const vm_id& bound = vm_id_wildcard) {
    auto l = listener::listen({bound, svc},
                              {.backlog = 8, .control_socket = sw.control_socket(partition)});
    EXPECT_TRUE(l) << l.error().message();
    return std::move(*l);
  }

  switch_fixture sw;
  vm_id web_id;
  service_id svc;
  std::uint32_t web_cid = 0;
};

TEST_F(SocketConnectTest, ConnectsTheClientsOwnSocketKeepingEpollAndFlags) {
  auto l = listen_in("host");
  auto app = stream_socket(SOCK_NONBLOCK);
  // Registered before the connect, as an event-driven program does.
  unique_fd ep(::epoll_create1(EPOLL_CLOEXEC));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ASSERT_EQ(::epoll_ctl(ep.get(), EPOLL_CTL_ADD, app.get(), &ev), 0);

  auto reply = send("web", request_to({vm_id_parent, svc}), app.get());
  ASSERT_TRUE(reply);
  ASSERT_EQ(reply->status, 0) << wire::reply_reason(*reply);
  EXPECT_EQ(wire::from_raw(reply->local).vm, web_id);
  EXPECT_EQ(wire::from_raw(reply->peer), (endpoint{vm_id_parent, svc}));
  EXPECT_EQ(reply->local_cid, web_cid);
  EXPECT_EQ(reply->peer_cid, 2u);
  EXPECT_TRUE(is_connected(app.get()));
  EXPECT_TRUE(::fcntl(app.get(), F_GETFL) & O_NONBLOCK);

  auto accepted = l.accept(5s);
  ASSERT_TRUE(accepted) << accepted.error().message();
  EXPECT_EQ(accepted->peer_endpoint().vm, web_id);
  EXPECT_EQ(accepted->peer_endpoint().service, wire::from_raw(reply->local).service);
  ASSERT_TRUE(accepted->write_all("from the host"));
  epoll_event got{};
  ASSERT_EQ(::epoll_wait(ep.get(), &got, 1, 5000), 1) << "the epoll registration was lost";
  char buf[64] = {};
  EXPECT_EQ(::read(app.get(), buf, sizeof buf), 13);
  EXPECT_STREQ(buf, "from the host");
  ASSERT_EQ(::write(app.get(), "from web", 8), 8);
  char back[8];
  auto n = accepted->read(back, sizeof back);
  ASSERT_TRUE(n);
  EXPECT_EQ(std::string(back, *n), "from web");
}

TEST_F(SocketConnectTest, TargetsByCidAndLocalPort) {
  auto on_host = listen_in("host");
  auto app = stream_socket();
  auto request = request_to_cid(2, svc);
  request.flags |= wire::local_port_given;
  request.local_port = 4242;
  auto reply = send("web", request, app.get());
  ASSERT_TRUE(reply);
  ASSERT_EQ(reply->status, 0) << wire::reply_reason(*reply);
  auto a = on_host.accept(5s);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->peer_endpoint(), (endpoint{web_id, service_id_from_port(4242)}));

  // The host reaches web by its CID; CID 1 and a partition's own CID are itself.
  auto in_web = listen_in("web");
  for (std::uint32_t cid : {web_cid}) {
    auto s = stream_socket();
    auto r = send("host", request_to_cid(cid, svc), s.get());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 0) << cid << ": " << wire::reply_reason(*r);
    EXPECT_EQ(r->peer_cid, web_cid);
  }
  for (std::uint32_t cid : {1u, web_cid}) {
    auto s = stream_socket();
    auto r = send("web", request_to_cid(cid, svc), s.get());
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 0) << cid << ": " << wire::reply_reason(*r);
    EXPECT_EQ(wire::from_raw(r->peer).vm, vm_id_loopback) << cid;
  }
  // The listener in web hears the host's (web's CID, from 2), then its own
  // with the CID they used, as Linux's loopback reports them.
  std::array<std::byte, wire::max_message_size + 1> buf{};
  const std::pair<std::uint32_t, std::uint32_t> expected[] = {
      {web_cid, 2}, {1, 1}, {web_cid, web_cid}};
  for (const auto& [local_cid, peer_cid] : expected) {
    auto got = detail::receive_message(in_web.native_handle(), buf);
    ASSERT_TRUE(got);
    auto incoming = wire::decode<wire::incoming>(std::span(buf.data(), got->size),
                                                 wire::message_type::incoming);
    ASSERT_TRUE(incoming);
    EXPECT_EQ(incoming->local_cid, local_cid);
    EXPECT_EQ(incoming->peer_cid, peer_cid);
  }
  auto s = stream_socket();
  auto unknown = send("web", request_to_cid(99, svc), s.get());
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, static_cast<int>(errc::unknown_partition));
  auto any = send("web", request_to_cid(0xffffffffu, svc), s.get());
  ASSERT_TRUE(any);
  EXPECT_EQ(any->status, static_cast<int>(errc::invalid_argument));
  EXPECT_FALSE(is_connected(s.get()));
}

TEST_F(SocketConnectTest, ARefusedConnectLeavesTheSocketReusable) {
  auto app = stream_socket();
  auto refused = send("web", request_to({vm_id_parent, svc}), app.get());
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, static_cast<int>(errc::connection_refused));
  EXPECT_FALSE(is_connected(app.get()));
  auto l = listen_in("host");
  auto ok = send("web", request_to({vm_id_parent, svc}), app.get());
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 0) << wire::reply_reason(*ok);
  EXPECT_TRUE(is_connected(app.get()));
  // A connected socket cannot be connected again.
  auto again = send("web", request_to({vm_id_parent, svc}), app.get());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, static_cast<int>(errc::invalid_argument)) << wire::reply_reason(*again);
}

TEST_F(SocketConnectTest, BadAttachmentsAreRefusedOrClosedAndHarmNoOne) {
  auto l = listen_in("host");
  const auto request = request_to({vm_id_parent, svc});
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  unique_fd pipe_r(pipe_fds[0]), pipe_w(pipe_fds[1]);
  auto not_a_socket = send("web", request, pipe_r.get());
  ASSERT_TRUE(not_a_socket);
  EXPECT_EQ(not_a_socket->status, static_cast<int>(errc::invalid_argument));

  unique_fd dgram(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  auto wrong_type = send("web", request, dgram.get());
  ASSERT_TRUE(wrong_type);
  EXPECT_EQ(wrong_type->status, static_cast<int>(errc::invalid_argument));

  auto listening = stream_socket();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;  // autobind: an abstract address
  ASSERT_EQ(::bind(listening.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(sa_family_t)), 0);
  ASSERT_EQ(::listen(listening.get(), 1), 0);
  auto refused_listening = send("web", request, listening.get());
  ASSERT_TRUE(refused_listening);
  EXPECT_EQ(refused_listening->status, static_cast<int>(errc::invalid_argument));

  // Without its fd, or with two, the client is closed.
  auto control = control_connection(sw.control_socket("web"));
  ASSERT_TRUE(detail::send_message(control.get(), wire::as_bytes(request)));
  EXPECT_FALSE(next_reply(control.get()));
  auto a = stream_socket(), b = stream_socket();
  const int two[] = {a.get(), b.get()};
  control = control_connection(sw.control_socket("web"));
  ASSERT_TRUE(detail::send_message(control.get(), wire::as_bytes(request), std::span(two)));
  EXPECT_FALSE(next_reply(control.get()));
  // An fd on any other message closes the client too.
  auto plain = wire::make<wire::connect_request>(wire::message_type::connect_request);
  plain.target = wire::to_raw({vm_id_parent, svc});
  control = control_connection(sw.control_socket("web"));
  ASSERT_TRUE(detail::send_message(control.get(), wire::as_bytes(plain), a.get()));
  EXPECT_FALSE(next_reply(control.get()));
  EXPECT_FALSE(is_connected(a.get()));

  // The daemon still serves.
  auto s = stream::connect({vm_id_parent, svc},
                           {.timeout = 5s, .control_socket = sw.control_socket("web")});
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_TRUE(l.accept(5s));
}

TEST_F(SocketConnectTest, BindReservesAndListenStartsListening) {
  auto control = control_connection(sw.control_socket("host"));
  auto bind = wire::make<wire::bind_request>(wire::message_type::bind_request);
  bind.local = wire::to_raw({vm_id_wildcard, svc});
  bind.backlog = 0;
  ASSERT_TRUE(detail::send_message(control.get(), wire::as_bytes(bind)));
  auto bound = next_reply(control.get());
  ASSERT_TRUE(bound);
  ASSERT_EQ(bound->status, 0) << wire::reply_reason(*bound);
  EXPECT_EQ(bound->local_cid, 2u);

  // Reserved: a second bind is address_in_use, a connect is refused.
  auto second = listener::listen({vm_id_wildcard, svc},
                                 {.backlog = 1, .control_socket = sw.control_socket("host")});
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code(), make_error_code(errc::address_in_use));
  const connect_options from_web{.timeout = 5s, .control_socket = sw.control_socket("web")};
  auto early = stream::connect({vm_id_parent, svc}, from_web);
  ASSERT_FALSE(early);
  EXPECT_EQ(early.error().code(), make_error_code(errc::connection_refused));
  EXPECT_NE(early.error().message().find("not listening"), std::string::npos)
      << early.error().message();

  auto listen = wire::make<wire::listen_request>(wire::message_type::listen_request);
  listen.backlog = max_backlog + 1;
  ASSERT_TRUE(detail::send_message(control.get(), wire::as_bytes(listen)));
  auto too_big = next_reply(control.get());
  ASSERT_TRUE(too_big);
  EXPECT_EQ(too_big->status, static_cast<int>(errc::invalid_argument));
  listen.backlog = 4;
  ASSERT_TRUE(detail::send_message(control.get(), wire::as_bytes(listen)));
  auto listening = next_reply(control.get());
  ASSERT_TRUE(listening);
  ASSERT_EQ(listening->status, 0) << wire::reply_reason(*listening);

  auto s = stream::connect({vm_id_parent, svc}, from_web);
  ASSERT_TRUE(s) << s.error().message();
  std::array<std::byte, wire::max_message_size + 1> buf{};
  auto got = detail::receive_message(control.get(), buf);
  ASSERT_TRUE(got);
  auto incoming =
      wire::decode<wire::incoming>(std::span(buf.data(), got->size), wire::message_type::incoming);
  ASSERT_TRUE(incoming);
  EXPECT_TRUE(got->fd.valid());
  EXPECT_EQ(incoming->local_cid, 2u);
  EXPECT_EQ(incoming->peer_cid, web_cid);

  // listen_request is only for a bound connection.
  auto fresh = control_connection(sw.control_socket("host"));
  ASSERT_TRUE(detail::send_message(fresh.get(), wire::as_bytes(listen)));
  EXPECT_FALSE(next_reply(fresh.get()));
}

}  // namespace
}  // namespace hvsock::test
