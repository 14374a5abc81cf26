// Registration is the permission to cross a partition boundary: connections
// to unregistered, disabled and per-VM-disabled services are refused with
// their own reasons, and binds follow the address-in-use rule.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <thread>

#include <hvsock/hvsock.hpp>

#include "switch_fixture.hpp"

namespace hvsock::test {
namespace {

using namespace std::chrono_literals;

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sw.create_vm("web");
    sw.create_vm("db");
    svc = *guid::parse(sw.register_service("billing"));
  }
  listen_options in(const std::string& p, int backlog = 16) const {
    return {.backlog = backlog, .control_socket = sw.control_socket(p)};
  }
  connect_options from(const std::string& p) const {
    return {.timeout = 5s, .control_socket = sw.control_socket(p)};
  }
  result<stream> connect_parent(const std::string& p, const service_id& s) const {
    return stream::connect({vm_id_parent, s}, from(p));
  }

  switch_fixture sw;
  service_id svc;
};

TEST_F(RegistryTest, UnregisteredServiceIsRefusedWithReason) {
  const auto unregistered = service_id_from_port(4242);
  auto l = listener::listen({vm_id_wildcard, unregistered}, in("host"));
  ASSERT_TRUE(l) << "binding needs no registration: " << l.error().message();
  auto s = connect_parent("web", unregistered);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), make_error_code(errc::service_not_registered));
  EXPECT_TRUE(s.error().code() == std::errc::permission_denied);
  EXPECT_NE(s.error().message().find(unregistered.to_string()), std::string::npos)
      << s.error().message();
  EXPECT_NE(s.error().message().find("not registered"), std::string::npos) << s.error().message();
}

TEST_F(RegistryTest, DisabledServiceIsRefusedAndReenabled) {
  auto l = listener::listen({vm_id_wildcard, svc}, in("host"));
  ASSERT_TRUE(l);
  sw.cli_ok({"service", "disable", "billing"});
  auto s = connect_parent("web", svc);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), make_error_code(errc::service_disabled));
  EXPECT_NE(s.error().message().find("billing"), std::string::npos) << s.error().message();

  sw.cli_ok({"service", "enable", svc.to_string()});
  auto again = connect_parent("web", svc);
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_TRUE(l->accept(5s));
}

TEST_F(RegistryTest, PerVmDisableRefusesOnlyThatVm) {
  auto l = listener::listen({vm_id_wildcard, svc}, in("host"));
  ASSERT_TRUE(l);
  sw.cli_ok({"service", "disable", "billing", "--vm", "web"});

  auto from_web = connect_parent("web", svc);
  ASSERT_FALSE(from_web);
  EXPECT_EQ(from_web.error().code(), make_error_code(errc::service_disabled));
  EXPECT_NE(from_web.error().message().find("web"), std::string::npos)
      << from_web.error().message();

  auto from_db = connect_parent("db", svc);
  ASSERT_TRUE(from_db) << from_db.error().message();
  EXPECT_TRUE(l->accept(5s));

  // The override covers both directions: the host reaching into web too.
  auto in_web = listener::listen({vm_id_parent, svc}, in("web"));
  ASSERT_TRUE(in_web);
  const auto web_id = sw.vm_id_of("web");
  auto to_web = stream::connect({web_id, svc}, from("host"));
  ASSERT_FALSE(to_web);
  EXPECT_EQ(to_web.error().code(), make_error_code(errc::service_disabled));

  sw.cli_ok({"service", "enable", "billing", "--vm", "web"});
  auto after = connect_parent("web", svc);
  EXPECT_TRUE(after) << after.error().message();
}

TEST_F(RegistryTest, RemovedServiceIsRefused) {
  auto l = listener::listen({vm_id_wildcard, svc}, in("host"));
  ASSERT_TRUE(l);
  sw.cli_ok({"service", "remove", "billing"});
  auto s = connect_parent("web", svc);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), make_error_code(errc::service_not_registered));
}

TEST_F(RegistryTest, SameAddressTwiceInOnePartitionIsInUse) {
  auto first = listener::listen({vm_id_wildcard, svc}, in("host"));
  ASSERT_TRUE(first);
  auto second = listener::listen({vm_id_wildcard, svc}, in("host"));
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code(), make_error_code(errc::address_in_use));
  EXPECT_TRUE(second.error().code() == std::errc::address_in_use);

  // Another VmId binding, or the same address in another partition, is fine.
  EXPECT_TRUE(listener::listen({vm_id_children, svc}, in("host")));
  EXPECT_TRUE(listener::listen({vm_id_wildcard, svc}, in("web")));

  // Closing the first frees the address.
  first->close();
  for (int i = 0; i < 100; ++i) {
    if (listener::listen({vm_id_wildcard, svc}, in("host"))) return;
    std::this_thread::sleep_for(10ms);
  }
  FAIL() << "address still in use after the listener closed";
}

TEST_F(RegistryTest, FullBacklogRefusesThenRecovers) {
  auto l = listener::listen({vm_id_wildcard, svc}, in("host", 2));
  ASSERT_TRUE(l);
  auto a = connect_parent("web", svc);
  auto b = connect_parent("web", svc);
  ASSERT_TRUE(a && b);
  auto c = connect_parent("web", svc);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code(), make_error_code(errc::backlog_full)) << c.error().message();
  EXPECT_TRUE(c.error().code() == std::errc::connection_refused);

  ASSERT_TRUE(l->accept(5s));
  // The accept's acknowledgement reaches the daemon asynchronously.
  for (int i = 0; i < 100; ++i) {
    if (connect_parent("web", svc)) return;
    std::this_thread::sleep_for(10ms);
  }
  FAIL() << "backlog did not drain after accept";
}

TEST_F(RegistryTest, StatsCountByElementName) {
  auto l = listener::listen({vm_id_wildcard, svc}, in("host", 2));
  ASSERT_TRUE(l);
  auto ok = connect_parent("web", svc);
  ASSERT_TRUE(ok);
  auto accepted = l->accept(5s);
  ASSERT_TRUE(accepted);
  sw.cli_ok({"service", "disable", "billing", "--vm", "db"});
  EXPECT_FALSE(connect_parent("db", svc));
  EXPECT_FALSE(connect_parent("web", service_id_from_port(7)));

  const auto stats = nlohmann::json::parse(sw.cli_ok({"stats", "--json"}));
  bool found = false;
  for (const auto& s : stats.at("services")) {
    if (s.at("name") != "billing") continue;
    found = true;
    EXPECT_EQ(s.at("accepted"), 1);
    EXPECT_EQ(s.at("active"), 1);
    EXPECT_EQ(s.at("refused").at("disabled"), 1);
  }
  EXPECT_TRUE(found) << stats.dump();
  EXPECT_EQ(stats.at("unregistered_refused"), 1);

  ok->close();
  accepted->close();
  // The daemon lets go of its copies of the pair when the listener's accept
  // acknowledgement arrives, which may be after the close above: wait for 0.
  nlohmann::json after;
  for (int i = 0; i < 500; ++i) {
    after = nlohmann::json::parse(sw.cli_ok({"stats", "--json"}));
    for (const auto& s : after.at("services"))
      if (s.at("name") == "billing" && s.at("active") == 0) return;
    std::this_thread::sleep_for(10ms);
  }
  FAIL() << "active did not return to 0 after both ends closed: " << after.dump();
}

}  // namespace
}  // namespace hvsock::test
