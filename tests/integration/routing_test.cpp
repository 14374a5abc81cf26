// Every row of the VmId wildcard / parent table (DESIGN.md), against a real
// hvsockd: who may reach whom, which listener wins, and what each side is
// told about the other. The test process joins partitions by choosing the
// partition's control socket, exactly as `hvsock run` makes a process do.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <thread>

#include <hvsock/hvsock.hpp>

#include "switch_fixture.hpp"

namespace hvsock::test {
namespace {

using namespace std::chrono_literals;

class RoutingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    host_id = sw.vm_id_of("host");
    web_id = must(guid::parse(sw.create_vm("web")));
    db_id = must(guid::parse(sw.create_vm("db")));
    box_id = must(guid::parse(sw.create_vm("box", "web", "container")));
    hostbox_id = must(guid::parse(sw.create_vm("hostbox", "", "container")));
    svc = must(guid::parse(sw.register_service("routing test")));
  }

  template <class T>
  static T must(result<T> r) {
    if (!r) throw std::runtime_error(r.error().message());
    return std::move(*r);
  }

  listen_options in(const std::string& partition) const {
    return {.backlog = 16, .control_socket = sw.control_socket(partition)};
  }
  connect_options from(const std::string& partition) const {
    return {.timeout = 5s, .control_socket = sw.control_socket(partition)};
  }

  // Listens in `listener_partition` bound to `bound`, connects from
  // `connector` to `target`, and checks the connection works and that the
  // acceptor sees the peer as `expected_peer`.
  void expect_reaches(const std::string& listener_partition, const vm_id& bound,
                      const std::string& connector, const vm_id& target,
                      const vm_id& expected_peer) {
    SCOPED_TRACE(connector + " -> " + target.to_string() + " (listener in " + listener_partition +
                 " bound " + bound.to_string() + ")");
    auto l = listener::listen({bound, svc}, in(listener_partition));
    ASSERT_TRUE(l) << l.error().message();
    auto s = stream::connect({target, svc}, from(connector));
    ASSERT_TRUE(s) << s.error().message();
    auto a = l->accept(5s);
    ASSERT_TRUE(a) << a.error().message();
    EXPECT_EQ(a->peer_endpoint().vm, expected_peer);
    EXPECT_EQ(a->local_endpoint().service, svc);
    EXPECT_EQ(s->peer_endpoint().service, svc);
    ASSERT_TRUE(s->write_all("ping"));
    char buf[4];
    auto n = a->read(buf, sizeof buf);
    ASSERT_TRUE(n);
    EXPECT_EQ(std::string(buf, *n), "ping");
  }

  void expect_refused(const std::string& listener_partition, const vm_id& bound,
                      const std::string& connector, const vm_id& target, errc expected) {
    SCOPED_TRACE(connector + " -> " + target.to_string());
    auto l = listener::listen({bound, svc}, in(listener_partition));
    ASSERT_TRUE(l) << l.error().message();
    auto s = stream::connect({target, svc}, from(connector));
    ASSERT_FALSE(s) << "connected but should be refused";
    EXPECT_EQ(s.error().code(), make_error_code(expected)) << s.error().message();
    EXPECT_NE(s.error().message().find(svc.to_string()), std::string::npos)
        << "message should name the endpoint: " << s.error().message();
  }

  switch_fixture sw;
  guid host_id, web_id, db_id, box_id, hostbox_id, svc;
};

// --- WILDCARD ---------------------------------------------------------------

TEST_F(RoutingTest, WildcardOnHostAcceptsChildVmViaParent) {
  expect_reaches("host", vm_id_wildcard, "web", vm_id_parent, web_id);
}

TEST_F(RoutingTest, WildcardOnHostAcceptsContainerOfHost) {
  expect_reaches("host", vm_id_wildcard, "hostbox", vm_id_parent, hostbox_id);
}

TEST_F(RoutingTest, WildcardOnHostAcceptsLoopback) {
  expect_reaches("host", vm_id_wildcard, "host", vm_id_loopback, vm_id_loopback);
}

TEST_F(RoutingTest, WildcardInVmAcceptsHostByVmId) {
  expect_reaches("web", vm_id_wildcard, "host", web_id, vm_id_parent);
}

TEST_F(RoutingTest, WildcardInVmAcceptsItsContainer) {
  expect_reaches("web", vm_id_wildcard, "box", vm_id_parent, box_id);
}

// --- CHILDREN ---------------------------------------------------------------

TEST_F(RoutingTest, ChildrenOnHostAcceptsVm) {
  expect_reaches("host", vm_id_children, "web", vm_id_parent, web_id);
}

TEST_F(RoutingTest, ChildrenOnHostRefusesLoopback) {
  expect_refused("host", vm_id_children, "host", vm_id_loopback, errc::connection_refused);
}

TEST_F(RoutingTest, ChildrenInVmAcceptsContainerInsideIt) {
  expect_reaches("web", vm_id_children, "box", vm_id_parent, box_id);
}

TEST_F(RoutingTest, ChildrenInVmRefusesItsParent) {
  expect_refused("web", vm_id_children, "host", web_id, errc::connection_refused);
}

// --- LOOPBACK ---------------------------------------------------------------

TEST_F(RoutingTest, LoopbackListenerAcceptsOwnPartition) {
  expect_reaches("web", vm_id_loopback, "web", vm_id_loopback, vm_id_loopback);
}

TEST_F(RoutingTest, LoopbackListenerRefusesChildren) {
  expect_refused("host", vm_id_loopback, "web", vm_id_parent, errc::connection_refused);
}

TEST_F(RoutingTest, ConnectToOwnVmIdIsLoopback) {
  expect_reaches("web", vm_id_loopback, "web", web_id, vm_id_loopback);
}

// --- PARENT -----------------------------------------------------------------

TEST_F(RoutingTest, ParentListenerInVmAcceptsHost) {
  expect_reaches("web", vm_id_parent, "host", web_id, vm_id_parent);
}

TEST_F(RoutingTest, ParentListenerInContainerAcceptsItsVm) {
  expect_reaches("box", vm_id_parent, "web", box_id, vm_id_parent);
}

TEST_F(RoutingTest, ParentListenerInContainerOfHostAcceptsHost) {
  expect_reaches("hostbox", vm_id_parent, "host", hostbox_id, vm_id_parent);
}

TEST_F(RoutingTest, ParentListenerInVmRefusesItsChildren) {
  expect_refused("web", vm_id_parent, "box", vm_id_parent, errc::connection_refused);
}

TEST_F(RoutingTest, ContainerConnectsToParentVm) {
  expect_reaches("web", vm_id_wildcard, "box", vm_id_parent, box_id);
}

TEST_F(RoutingTest, BindParentOnHostIsRefused) {
  auto l = listener::listen({vm_id_parent, svc}, in("host"));
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error().code(), make_error_code(errc::parent_on_host)) << l.error().message();
}

TEST_F(RoutingTest, ConnectParentFromHostIsRefused) {
  auto s = stream::connect({vm_id_parent, svc}, from("host"));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), make_error_code(errc::parent_on_host)) << s.error().message();
}

// --- specific VmIds and precedence -------------------------------------------

TEST_F(RoutingTest, SpecificVmIdListenerAcceptsOnlyThatVm) {
  auto l = listener::listen({web_id, svc}, in("host"));
  ASSERT_TRUE(l) << l.error().message();
  auto from_db = stream::connect({vm_id_parent, svc}, from("db"));
  ASSERT_FALSE(from_db);
  EXPECT_EQ(from_db.error().code(), make_error_code(errc::connection_refused));
  auto from_web = stream::connect({vm_id_parent, svc}, from("web"));
  ASSERT_TRUE(from_web) << from_web.error().message();
  auto a = l->accept(5s);
  ASSERT_TRUE(a) << a.error().message();
  EXPECT_EQ(a->peer_endpoint().vm, web_id);
}

TEST_F(RoutingTest, SpecificBeatsChildrenBeatsWildcard) {
  auto wildcard = listener::listen({vm_id_wildcard, svc}, in("host"));
  auto children = listener::listen({vm_id_children, svc}, in("host"));
  auto specific = listener::listen({web_id, svc}, in("host"));
  ASSERT_TRUE(wildcard && children && specific);
  ASSERT_TRUE(specific->set_non_blocking(true));
  ASSERT_TRUE(children->set_non_blocking(true));
  ASSERT_TRUE(wildcard->set_non_blocking(true));

  auto s1 = stream::connect({vm_id_parent, svc}, from("web"));
  ASSERT_TRUE(s1) << s1.error().message();
  EXPECT_TRUE(specific->accept(5s));
  EXPECT_FALSE(children->accept(0ms));
  EXPECT_FALSE(wildcard->accept(0ms));

  auto s2 = stream::connect({vm_id_parent, svc}, from("db"));
  ASSERT_TRUE(s2) << s2.error().message();
  EXPECT_TRUE(children->accept(5s));
  EXPECT_FALSE(wildcard->accept(0ms));

  auto s3 = stream::connect({vm_id_loopback, svc}, from("host"));
  ASSERT_TRUE(s3) << s3.error().message();
  EXPECT_TRUE(wildcard->accept(5s));
}

// --- unreachable ------------------------------------------------------------

TEST_F(RoutingTest, SiblingVmsCannotReachEachOther) {
  expect_refused("db", vm_id_wildcard, "web", db_id, errc::network_unreachable);
}

TEST_F(RoutingTest, HostCannotReachGrandchildDirectly) {
  expect_refused("box", vm_id_wildcard, "host", box_id, errc::network_unreachable);
}

TEST_F(RoutingTest, ContainerCannotReachGrandparent) {
  expect_refused("host", vm_id_wildcard, "box", host_id, errc::network_unreachable);
}

TEST_F(RoutingTest, VmReachesHostByHostVmId) {
  expect_reaches("host", vm_id_wildcard, "web", host_id, web_id);
}

TEST_F(RoutingTest, UnknownVmIdIsUnknownPartition) {
  const auto unknown = must(guid::parse("12345678-1234-1234-1234-123456789abc"));
  expect_refused("host", vm_id_wildcard, "host", unknown, errc::unknown_partition);
}

TEST_F(RoutingTest, BroadcastIsRefused) {
  expect_refused("host", vm_id_wildcard, "web", vm_id_broadcast, errc::broadcast_not_allowed);
  auto l = listener::listen({vm_id_broadcast, svc}, in("web"));
  ASSERT_FALSE(l);
  EXPECT_EQ(l.error().code(), make_error_code(errc::broadcast_not_allowed));
}

TEST_F(RoutingTest, WildcardIsNotAConnectTarget) {
  auto s = stream::connect({vm_id_wildcard, svc}, from("web"));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), make_error_code(errc::invalid_argument)) << s.error().message();
}

TEST_F(RoutingTest, NoListenerIsConnectionRefused) {
  auto s = stream::connect({vm_id_parent, svc}, from("web"));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), make_error_code(errc::connection_refused));
  EXPECT_TRUE(s.error().code() == std::errc::connection_refused);
}

TEST_F(RoutingTest, ListenerGoneMeansRefused) {
  {
    auto l = listener::listen({vm_id_wildcard, svc}, in("host"));
    ASSERT_TRUE(l);
  }
  // The daemon learns of the close asynchronously; allow it a moment.
  for (int i = 0; i < 100; ++i) {
    auto s = stream::connect({vm_id_parent, svc}, from("web"));
    if (!s && s.error().code() == make_error_code(errc::connection_refused)) return;
    std::this_thread::sleep_for(10ms);
  }
  FAIL() << "connect still succeeded after the listener closed";
}

TEST_F(RoutingTest, RemovedPartitionCannotBeReached) {
  sw.cli_ok({"vm", "remove", "db"});
  auto s = stream::connect({db_id, svc}, from("host"));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), make_error_code(errc::unknown_partition)) << s.error().message();
  // ...and its control socket is gone.
  auto c = stream::connect({vm_id_parent, svc}, from("db"));
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code(), make_error_code(errc::daemon_unavailable));
}

}  // namespace
}  // namespace hvsock::test
