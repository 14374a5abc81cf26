// router: every routing, permission, matching, naming and bind rule.
//
// The tree used throughout:
//   host ─┬─ vm1 ─── c1 (container)
//         ├─ vm2 ─── c3 (container)
//         └─ c2 (container on the host)
#include "daemon/router.hpp"

#include <gtest/gtest.h>

#include <hvsock/listener.hpp>

#include <string>

namespace hvsock::daemon {
namespace {

const vm_id host_id = guid_literal("00000001-0000-4000-8000-000000000000");
const vm_id unknown_id = guid_literal("0000dead-0000-4000-8000-000000000000");
const service_id demo = service_id_from_port(5000);
const service_id unregistered = service_id_from_port(6000);

class RouterTest : public ::testing::Test {
 protected:
  RouterTest() : tree_(host_id), router_(tree_, registry_) {
    add("vm1", partition_kind::vm, "host");
    add("vm2", partition_kind::vm, "host");
    add("c1", partition_kind::container, "vm1");
    add("c2", partition_kind::container, "host");
    add("c3", partition_kind::container, "vm2");
    EXPECT_TRUE(registry_.register_service(demo, "demo"));
  }

  void add(const std::string& name, partition_kind kind, const std::string& parent) {
    partition_spec spec;
    spec.name = name;
    spec.kind = kind;
    spec.parent = parent;
    auto created = tree_.create(spec);
    ASSERT_TRUE(created) << created.error().message();
  }

  const partition& p(const std::string& name) { return *tree_.find(name); }
  vm_id id(const std::string& name) { return p(name).id; }

  // Where a connect from `from` to `target` goes (the partition's name), or
  // the error code.
  std::string target_of(const std::string& from, const vm_id& target) {
    auto r = router_.resolve_target(p(from), target);
    return r ? (*r)->name : "error";
  }
  errc resolve_error(const std::string& from, const vm_id& target) {
    auto r = router_.resolve_target(p(from), target);
    EXPECT_FALSE(r) << "resolved to " << (r ? (*r)->name : "");
    return r ? errc{} : static_cast<errc>(r.error().code().value());
  }

  void bind(const std::string& in, const vm_id& bound, listener_handle handle,
            const service_id& s = demo) {
    auto r = router_.bind(p(in), endpoint{bound, s}, 16, handle);
    ASSERT_TRUE(r) << r.error().message();
  }
  errc bind_error(const std::string& in, const vm_id& bound, std::int64_t backlog = 16) {
    auto r = router_.bind(p(in), endpoint{bound, demo}, backlog, 999);
    EXPECT_FALSE(r);
    return r ? errc{} : static_cast<errc>(r.error().code().value());
  }

  result<route_decision> route(const std::string& from, const vm_id& target,
                               const service_id& s = demo) {
    return router_.route(p(from), endpoint{target, s});
  }
  // The handle a connect reaches, 0 when refused.
  listener_handle handle_for(const std::string& from, const vm_id& target) {
    auto r = route(from, target);
    return r ? r->listener : 0;
  }

  partition_tree tree_;
  service_registry registry_;
  router router_;
};

// --- step 1: the target partition ----------------------------------------------

TEST_F(RouterTest, BroadcastIsRefusedEverywhere) {
  for (const char* from : {"host", "vm1", "c1"})
    EXPECT_EQ(resolve_error(from, vm_id_broadcast), errc::broadcast_not_allowed) << from;
}

TEST_F(RouterTest, LoopbackAndOwnIdReachTheCaller) {
  for (const char* from : {"host", "vm1", "c1", "c2"}) {
    EXPECT_EQ(target_of(from, vm_id_loopback), from);
    EXPECT_EQ(target_of(from, id(from)), from);
  }
}

TEST_F(RouterTest, ParentIsTheCallersParent) {
  EXPECT_EQ(target_of("vm1", vm_id_parent), "host");
  EXPECT_EQ(target_of("c1", vm_id_parent), "vm1");   // a container in a VM
  EXPECT_EQ(target_of("c2", vm_id_parent), "host");  // a container on the host
  EXPECT_EQ(resolve_error("host", vm_id_parent), errc::parent_on_host);
}

TEST_F(RouterTest, SiloHostOnlyFromAContainer) {
  EXPECT_EQ(target_of("c1", vm_id_silohost), "vm1");
  EXPECT_EQ(target_of("c2", vm_id_silohost), "host");
  EXPECT_EQ(resolve_error("vm1", vm_id_silohost), errc::network_unreachable);
  EXPECT_EQ(resolve_error("host", vm_id_silohost), errc::network_unreachable);
}

TEST_F(RouterTest, ChildrenAndParentByVmId) {
  EXPECT_EQ(target_of("host", id("vm1")), "vm1");
  EXPECT_EQ(target_of("host", id("c2")), "c2");
  EXPECT_EQ(target_of("vm1", id("c1")), "c1");
  EXPECT_EQ(target_of("vm1", host_id), "host");
  EXPECT_EQ(target_of("c1", id("vm1")), "vm1");
  EXPECT_EQ(target_of("c2", host_id), "host");
}

TEST_F(RouterTest, ListenerOnlyIdsAreInvalidTargets) {
  auto r = router_.resolve_target(p("vm1"), vm_id_wildcard);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), errc::invalid_argument);
  EXPECT_NE(r.error().message().find("listeners"), std::string::npos);
  EXPECT_EQ(resolve_error("host", vm_id_children), errc::invalid_argument);
}

TEST_F(RouterTest, OtherPartitionsAreUnreachable) {
  EXPECT_EQ(resolve_error("vm1", id("vm2")), errc::network_unreachable);  // sibling VMs
  EXPECT_EQ(resolve_error("c1", id("c3")), errc::network_unreachable);    // cousins
  EXPECT_EQ(resolve_error("c2", id("vm1")), errc::network_unreachable);   // container and VM
  EXPECT_EQ(resolve_error("host", id("c1")), errc::network_unreachable);  // grandchild
  EXPECT_EQ(resolve_error("c1", host_id), errc::network_unreachable);     // grandparent
  EXPECT_EQ(resolve_error("vm1", id("c3")), errc::network_unreachable);   // nephew
  auto r = router_.resolve_target(p("vm1"), id("vm2"));
  EXPECT_NE(r.error().message().find("vm2"), std::string::npos);
}

TEST_F(RouterTest, UnknownVmId) {
  EXPECT_EQ(resolve_error("vm1", unknown_id), errc::unknown_partition);
  EXPECT_EQ(resolve_error("host", unknown_id), errc::unknown_partition);
}

// --- step 2: permission ----------------------------------------------------------

TEST_F(RouterTest, UnregisteredServiceIsRefused) {
  bind("host", vm_id_wildcard, 1, unregistered);
  auto r = route("vm1", vm_id_parent, unregistered);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), errc::service_not_registered);
  EXPECT_NE(r.error().message().find(unregistered.to_string()), std::string::npos);
}

TEST_F(RouterTest, DisabledServiceIsRefusedAndNamed) {
  bind("host", vm_id_wildcard, 1);
  ASSERT_TRUE(registry_.set_enabled(demo, false));
  auto r = route("vm1", vm_id_parent);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), errc::service_disabled);
  EXPECT_NE(r.error().message().find("\"demo\""), std::string::npos);
  EXPECT_NE(r.error().message().find(demo.to_string()), std::string::npos);
  ASSERT_TRUE(registry_.set_enabled(demo, true));
  EXPECT_TRUE(route("vm1", vm_id_parent));
}

TEST_F(RouterTest, DisabledForTheConnectingPartition) {
  bind("host", vm_id_wildcard, 1);
  ASSERT_TRUE(registry_.set_enabled_for(demo, id("vm1"), false));
  auto r = route("vm1", vm_id_parent);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), errc::service_disabled);
  EXPECT_NE(r.error().message().find("VM \"vm1\""), std::string::npos);
  // Other VMs are unaffected.
  EXPECT_TRUE(route("vm2", vm_id_parent));
}

TEST_F(RouterTest, DisabledForTheTargetPartition) {
  bind("vm1", vm_id_parent, 1);
  ASSERT_TRUE(registry_.set_enabled_for(demo, id("vm1"), false));
  auto r = route("host", id("vm1"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), errc::service_disabled);
  EXPECT_NE(r.error().message().find("vm1"), std::string::npos);
}

TEST_F(RouterTest, RoutingErrorsComeBeforePermission) {
  // An unreachable partition is unreachable whatever the registry says.
  auto r = route("vm1", id("vm2"), unregistered);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), errc::network_unreachable);
}

// --- step 3: listener matching -----------------------------------------------------

TEST_F(RouterTest, NoListenerIsConnectionRefused) {
  auto r = route("vm1", vm_id_parent);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), errc::connection_refused);
  // A listener for another service does not count.
  bind("host", vm_id_wildcard, 1, unregistered);
  EXPECT_EQ(handle_for("vm1", vm_id_parent), 0u);
}

TEST_F(RouterTest, SpecificBeforeRelationBeforeWildcard) {
  bind("host", vm_id_wildcard, 1);
  bind("host", vm_id_children, 2);
  bind("host", id("vm1"), 3);
  EXPECT_EQ(handle_for("vm1", vm_id_parent), 3u);  // its own VmId
  EXPECT_EQ(handle_for("vm2", vm_id_parent), 2u);  // children
  EXPECT_EQ(handle_for("c2", vm_id_parent), 2u);   // a container on the host is a child too
  router_.unbind(2);
  EXPECT_EQ(handle_for("vm2", vm_id_parent), 1u);  // wildcard
  EXPECT_EQ(handle_for("vm1", vm_id_parent), 3u);
  router_.unbind(3);
  EXPECT_EQ(handle_for("vm1", vm_id_parent), 1u);
  router_.unbind(1);
  EXPECT_EQ(handle_for("vm1", vm_id_parent), 0u);
}

TEST_F(RouterTest, SpecificListenerOnlyAcceptsThatPeer) {
  bind("host", id("vm1"), 1);
  EXPECT_EQ(handle_for("vm1", vm_id_parent), 1u);
  auto r = route("vm2", vm_id_parent);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), errc::connection_refused);
}

TEST_F(RouterTest, LoopbackListener) {
  bind("host", vm_id_loopback, 1);
  EXPECT_EQ(handle_for("host", vm_id_loopback), 1u);
  EXPECT_EQ(handle_for("host", host_id), 1u);
  EXPECT_EQ(handle_for("vm1", vm_id_parent), 0u);  // not for children
  bind("host", host_id, 2);                        // its own VmId is more specific
  EXPECT_EQ(handle_for("host", vm_id_loopback), 2u);
}

TEST_F(RouterTest, WildcardAcceptsLoopbackToo) {
  bind("vm1", vm_id_wildcard, 1);
  EXPECT_EQ(handle_for("vm1", vm_id_loopback), 1u);
  EXPECT_EQ(handle_for("host", id("vm1")), 1u);
  EXPECT_EQ(handle_for("c1", vm_id_parent), 1u);
}

TEST_F(RouterTest, ParentListenerInAVm) {
  bind("vm1", vm_id_parent, 1);
  EXPECT_EQ(handle_for("host", id("vm1")), 1u);
  EXPECT_EQ(handle_for("c1", vm_id_parent), 0u);     // c1 is a child, not the parent
  EXPECT_EQ(handle_for("vm1", vm_id_loopback), 0u);  // nor is vm1 itself
}

TEST_F(RouterTest, ChildrenListenerInAVm) {
  bind("vm1", vm_id_children, 1);
  EXPECT_EQ(handle_for("c1", vm_id_parent), 1u);
  EXPECT_EQ(handle_for("c1", vm_id_silohost), 1u);
  EXPECT_EQ(handle_for("host", id("vm1")), 0u);  // the host is the parent
}

TEST_F(RouterTest, ParentAndSiloHostListenersInAContainer) {
  bind("c1", vm_id_parent, 1);
  EXPECT_EQ(handle_for("vm1", id("c1")), 1u);
  router_.unbind(1);
  bind("c1", vm_id_silohost, 2);
  EXPECT_EQ(handle_for("vm1", id("c1")), 2u);
  bind("c1", vm_id_parent, 3);  // PARENT is checked before SILOHOST
  EXPECT_EQ(handle_for("vm1", id("c1")), 3u);
  EXPECT_EQ(handle_for("c1", vm_id_loopback), 0u);
}

// --- how each side names the other --------------------------------------------------

TEST_F(RouterTest, ChildConnectsToParent) {
  bind("host", vm_id_wildcard, 1);
  auto r = route("vm1", vm_id_parent);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->target, host_id);
  EXPECT_EQ(r->target_name, "host");
  EXPECT_EQ(r->listener_local, (endpoint{vm_id_wildcard, demo}));
  EXPECT_EQ(r->acceptor_peer, id("vm1"));  // the host sees its child's VmId
  EXPECT_EQ(r->connector_peer, vm_id_parent);
}

TEST_F(RouterTest, ParentConnectsToChild) {
  bind("vm1", vm_id_parent, 1);
  auto r = route("host", id("vm1"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->listener_local, (endpoint{vm_id_parent, demo}));
  EXPECT_EQ(r->acceptor_peer, vm_id_parent);
  EXPECT_EQ(r->connector_peer, id("vm1"));
}

TEST_F(RouterTest, ContainerInAVmConnectsToItsHost) {
  bind("vm1", vm_id_children, 1);
  auto r = route("c1", vm_id_silohost);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->target, id("vm1"));
  EXPECT_EQ(r->acceptor_peer, id("c1"));
  EXPECT_EQ(r->connector_peer, vm_id_parent);
}

TEST_F(RouterTest, LoopbackNamesBothSidesLoopback) {
  bind("vm1", vm_id_loopback, 1);
  auto r = route("vm1", vm_id_loopback);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->acceptor_peer, vm_id_loopback);
  EXPECT_EQ(r->connector_peer, vm_id_loopback);
}

// --- bind rules ------------------------------------------------------------------------

TEST_F(RouterTest, BindBroadcastIsRefused) {
  EXPECT_EQ(bind_error("host", vm_id_broadcast), errc::broadcast_not_allowed);
  EXPECT_EQ(bind_error("vm1", vm_id_broadcast), errc::broadcast_not_allowed);
}

TEST_F(RouterTest, BindParentOnHostIsRefused) {
  EXPECT_EQ(bind_error("host", vm_id_parent), errc::parent_on_host);
  EXPECT_TRUE(router_.bind(p("vm1"), endpoint{vm_id_parent, demo}, 1, 1));
  EXPECT_TRUE(router_.bind(p("c1"), endpoint{vm_id_parent, demo}, 1, 2));
}

TEST_F(RouterTest, BindSiloHostOnlyInAContainer) {
  EXPECT_EQ(bind_error("host", vm_id_silohost), errc::invalid_argument);
  EXPECT_EQ(bind_error("vm1", vm_id_silohost), errc::invalid_argument);
  EXPECT_TRUE(router_.bind(p("c1"), endpoint{vm_id_silohost, demo}, 1, 1));
}

TEST_F(RouterTest, BindSpecificVmIdMustBeAPartition) {
  EXPECT_EQ(bind_error("host", unknown_id), errc::unknown_partition);
  EXPECT_TRUE(router_.bind(p("host"), endpoint{id("vm1"), demo}, 1, 1));
}

TEST_F(RouterTest, BindSameAddressTwiceIsAddressInUse) {
  bind("host", vm_id_wildcard, 1);
  EXPECT_EQ(bind_error("host", vm_id_wildcard), errc::address_in_use);
  // The same address in another partition, another VmId or another service is fine.
  bind("vm1", vm_id_wildcard, 2);
  bind("host", vm_id_children, 3);
  bind("host", vm_id_wildcard, 4, unregistered);
  EXPECT_EQ(router_.listener_count(), 4u);
  router_.unbind(1);
  bind("host", vm_id_wildcard, 5);
}

TEST_F(RouterTest, BindBacklogRange) {
  // 0 reserves the address without listening (bind(2) before listen(2)).
  EXPECT_TRUE(router_.bind(p("vm2"), endpoint{vm_id_wildcard, demo}, 0, 3));
  EXPECT_EQ(bind_error("host", vm_id_wildcard, -1), errc::invalid_argument);
  EXPECT_EQ(bind_error("host", vm_id_wildcard, max_backlog + 1), errc::invalid_argument);
  EXPECT_TRUE(router_.bind(p("host"), endpoint{vm_id_wildcard, demo}, max_backlog, 1));
  EXPECT_TRUE(router_.bind(p("vm1"), endpoint{vm_id_wildcard, demo}, 1, 2));
}

TEST_F(RouterTest, UnbindUnknownHandleIsHarmless) {
  router_.unbind(12345);
  EXPECT_EQ(router_.listener_count(), 0u);
}

}  // namespace
}  // namespace hvsock::daemon
