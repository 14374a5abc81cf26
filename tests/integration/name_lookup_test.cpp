// Name lookups through a partition's own control socket (lookup_request):
// what programs inside an isolated partition use instead of the management
// socket. Services by ElementName; partitions only if the caller may reach
// them, refused with the router's reason otherwise; bad requests refused
// without harm to the daemon.
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <string>

#include <hvsock/hvsock.hpp>

#include "protocol/control_client.hpp"
#include "protocol/control_wire.hpp"
#include "switch_fixture.hpp"
#include "sys/fd_passing.hpp"

namespace hvsock::test {
namespace {

using detail::look_up;
using detail::wire::lookup_kind;

class NameLookupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    web_id = *guid::parse(sw.create_vm("web"));
    db_id = *guid::parse(sw.create_vm("db"));
    box_id = *guid::parse(sw.create_vm("box", "web", "container"));
    svc = *guid::parse(sw.register_service("lookup test"));
  }

  switch_fixture sw;
  guid web_id, db_id, box_id, svc;
};

TEST_F(NameLookupTest, ServiceByNameFromAnyPartition) {
  for (const char* p : {"host", "web", "box"}) {
    auto found = look_up(sw.control_socket(p), lookup_kind::service, "lookup test");
    ASSERT_TRUE(found) << p << ": " << found.error().message();
    EXPECT_EQ(*found, svc) << p;
  }
}

TEST_F(NameLookupTest, UnknownServiceIsNotRegistered) {
  auto found = look_up(sw.control_socket("web"), lookup_kind::service, "no such service");
  ASSERT_FALSE(found);
  EXPECT_EQ(found.error().code(), make_error_code(errc::service_not_registered));
  EXPECT_NE(found.error().message().find("no such service"), std::string::npos);
}

TEST_F(NameLookupTest, ReachablePartitionsAnswerTheirVmId) {
  EXPECT_EQ(*look_up(sw.control_socket("host"), lookup_kind::partition, "web"), web_id);
  EXPECT_EQ(*look_up(sw.control_socket("web"), lookup_kind::partition, "box"), box_id);
  EXPECT_EQ(*look_up(sw.control_socket("web"), lookup_kind::partition, "web"), web_id);
  EXPECT_EQ(*look_up(sw.control_socket("box"), lookup_kind::partition, "web"), web_id);
}

// How the switch names each partition to the caller, as accept() reports a
// peer: what `hvsock agent --allow NAME` matches against.
TEST_F(NameLookupTest, PartitionsComeWithHowTheCallerSeesThem) {
  const guid host_id = sw.vm_id_of("host");
  auto parent = detail::look_up_partition(sw.control_socket("web"), "host");
  ASSERT_TRUE(parent) << parent.error().message();
  EXPECT_EQ(parent->id, host_id);
  EXPECT_EQ(parent->as_peer, vm_id_parent);
  auto self = detail::look_up_partition(sw.control_socket("web"), "web");
  ASSERT_TRUE(self);
  EXPECT_EQ(self->as_peer, vm_id_loopback);
  auto child = detail::look_up_partition(sw.control_socket("web"), box_id.to_string());
  ASSERT_TRUE(child) << child.error().message();
  EXPECT_EQ(child->id, box_id);
  EXPECT_EQ(child->as_peer, box_id);
  auto by_id = detail::look_up_partition(sw.control_socket("box"), host_id.to_string());
  ASSERT_FALSE(by_id);  // a container of web cannot reach the host
  EXPECT_EQ(by_id.error().code(), make_error_code(errc::network_unreachable));
}

TEST_F(NameLookupTest, UnreachablePartitionsAreRefusedWithTheRoutersReason) {
  auto sibling = look_up(sw.control_socket("web"), lookup_kind::partition, "db");
  ASSERT_FALSE(sibling);
  EXPECT_EQ(sibling.error().code(), make_error_code(errc::network_unreachable));
  EXPECT_NE(sibling.error().message().find("cannot reach"), std::string::npos)
      << sibling.error().message();
  auto grandchild = look_up(sw.control_socket("host"), lookup_kind::partition, "box");
  ASSERT_FALSE(grandchild);
  EXPECT_EQ(grandchild.error().code(), make_error_code(errc::network_unreachable));
  auto unknown = look_up(sw.control_socket("web"), lookup_kind::partition, "nowhere");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code(), make_error_code(errc::unknown_partition));
}

TEST_F(NameLookupTest, EmptyAndOverlongNamesAreRefusedBeforeSending) {
  EXPECT_EQ(look_up(sw.control_socket("web"), lookup_kind::service, "").error().code(),
            make_error_code(errc::invalid_argument));
  EXPECT_EQ(
      look_up(sw.control_socket("web"), lookup_kind::service, std::string(300, 'x')).error().code(),
      make_error_code(errc::invalid_argument));
}

// Raw requests a misbehaving client could send: a bad kind, a length past the
// buffer. Each gets a refusal; the daemon carries on.
TEST_F(NameLookupTest, MalformedLookupsAreRefusedAndTheDaemonCarriesOn) {
  namespace wire = detail::wire;
  for (auto [kind, length] : {std::pair{7u, 4}, std::pair{1u, 0}, std::pair{1u, 4000}}) {
    auto control = detail::open_control(sw.control_socket("web"));
    ASSERT_TRUE(control) << control.error().message();
    auto request = wire::make<wire::lookup_request>(wire::message_type::lookup_request);
    request.kind = kind;
    request.name_length = static_cast<std::uint16_t>(length);
    std::memcpy(request.name, "echo", 4);
    ASSERT_TRUE(detail::send_message(control->get(), wire::as_bytes(request)));
    auto answer = detail::await_reply(control->get(), std::chrono::seconds(5), "");
    ASSERT_FALSE(answer) << "kind " << kind << " length " << length;
    EXPECT_EQ(answer.error().code(), make_error_code(errc::invalid_argument))
        << answer.error().message();
  }
  EXPECT_EQ(*look_up(sw.control_socket("web"), lookup_kind::service, "lookup test"), svc);
}

}  // namespace
}  // namespace hvsock::test
