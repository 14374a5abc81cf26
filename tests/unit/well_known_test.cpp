// Unit tests for the well-known VmIds and the vsock port <-> service GUID
// template.
#include <hvsock/service_id.hpp>
#include <hvsock/vm_id.hpp>

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>

namespace hvsock {
namespace {

guid parse_ok(std::string_view text) {
  auto r = guid::parse(text);
  EXPECT_TRUE(r.has_value()) << text;
  return r ? *r : guid{};
}

// --- well-known VmIds ------------------------------------------------------------

TEST(WellKnownVmId, ExactText) {
  EXPECT_EQ(vm_id_wildcard.to_string(), "00000000-0000-0000-0000-000000000000");
  EXPECT_EQ(vm_id_broadcast.to_string(), "ffffffff-ffff-ffff-ffff-ffffffffffff");
  EXPECT_EQ(vm_id_children.to_string(), "90db8b89-0d35-4f79-8ce9-49ea0ac8b7cd");
  EXPECT_EQ(vm_id_loopback.to_string(), "e0e16197-dd56-4a10-9195-5ee7a155a838");
  EXPECT_EQ(vm_id_parent.to_string(), "a42e7cda-d03f-480c-9cc2-a4de20abb878");
  EXPECT_EQ(vm_id_silohost.to_string(), "36bd0c5c-7276-4223-88ba-7d03b654c568");
  EXPECT_TRUE(vm_id_wildcard.is_zero());
}

TEST(WellKnownVmId, WindowsBytesOfParent) {
  // HV_GUID_PARENT as it sits in a SOCKADDR_HV.
  const guid::bytes expected = {0xda, 0x7c, 0x2e, 0xa4, 0x3f, 0xd0, 0x0c, 0x48,
                                0x9c, 0xc2, 0xa4, 0xde, 0x20, 0xab, 0xb8, 0x78};
  EXPECT_EQ(vm_id_parent.to_windows_bytes(), expected);
}

TEST(WellKnownVmId, AllDistinct) {
  const std::set<vm_id> all = {vm_id_wildcard, vm_id_broadcast, vm_id_children,
                               vm_id_loopback, vm_id_parent,    vm_id_silohost};
  EXPECT_EQ(all.size(), 6u);
}

TEST(WellKnownVmId, Classify) {
  EXPECT_EQ(classify_vm_id(vm_id_wildcard), well_known_vm_id::wildcard);
  EXPECT_EQ(classify_vm_id(vm_id_broadcast), well_known_vm_id::broadcast);
  EXPECT_EQ(classify_vm_id(vm_id_children), well_known_vm_id::children);
  EXPECT_EQ(classify_vm_id(vm_id_loopback), well_known_vm_id::loopback);
  EXPECT_EQ(classify_vm_id(vm_id_parent), well_known_vm_id::parent);
  EXPECT_EQ(classify_vm_id(vm_id_silohost), well_known_vm_id::silohost);
  // Parsed from text, any case, braces.
  EXPECT_EQ(classify_vm_id(parse_ok("{A42E7CDA-D03F-480C-9CC2-A4DE20ABB878}")),
            well_known_vm_id::parent);
  EXPECT_EQ(classify_vm_id(guid{}), well_known_vm_id::wildcard);
}

TEST(WellKnownVmId, ClassifyOthersIsNullopt) {
  EXPECT_EQ(classify_vm_id(parse_ok("a42e7cda-d03f-480c-9cc2-a4de20abb879")), std::nullopt);
  EXPECT_EQ(classify_vm_id(parse_ok("00000000-0000-0000-0000-000000000001")), std::nullopt);
  EXPECT_EQ(classify_vm_id(parse_ok("fffffffe-ffff-ffff-ffff-ffffffffffff")), std::nullopt);
  EXPECT_EQ(classify_vm_id(parse_ok("00000ac9-facb-11e6-bd58-64006a7986d3")), std::nullopt);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(classify_vm_id(guid::generate()), std::nullopt);
}

TEST(WellKnownVmId, Names) {
  EXPECT_EQ(well_known_name(well_known_vm_id::wildcard), "wildcard");
  EXPECT_EQ(well_known_name(well_known_vm_id::broadcast), "broadcast");
  EXPECT_EQ(well_known_name(well_known_vm_id::children), "children");
  EXPECT_EQ(well_known_name(well_known_vm_id::loopback), "loopback");
  EXPECT_EQ(well_known_name(well_known_vm_id::parent), "parent");
  EXPECT_EQ(well_known_name(well_known_vm_id::silohost), "silohost");
}

TEST(WellKnownVmId, FromWord) {
  EXPECT_EQ(vm_id_from_word("any"), vm_id_wildcard);
  EXPECT_EQ(vm_id_from_word("wildcard"), vm_id_wildcard);
  EXPECT_EQ(vm_id_from_word("children"), vm_id_children);
  EXPECT_EQ(vm_id_from_word("loopback"), vm_id_loopback);
  EXPECT_EQ(vm_id_from_word("parent"), vm_id_parent);
  EXPECT_EQ(vm_id_from_word("broadcast"), vm_id_broadcast);
  EXPECT_EQ(vm_id_from_word("silohost"), vm_id_silohost);
}

TEST(WellKnownVmId, FromWordUnknown) {
  for (std::string_view word : {"", "host", "child", "parents", " parent", "parent ", "zero",
                                "a42e7cda-d03f-480c-9cc2-a4de20abb878", "unknown", "vm1"}) {
    EXPECT_EQ(vm_id_from_word(word), std::nullopt) << '"' << word << '"';
  }
}

TEST(WellKnownVmId, NameAndWordRoundTrip) {
  for (auto which :
       {well_known_vm_id::wildcard, well_known_vm_id::broadcast, well_known_vm_id::children,
        well_known_vm_id::loopback, well_known_vm_id::parent, well_known_vm_id::silohost}) {
    const auto id = vm_id_from_word(well_known_name(which));
    ASSERT_TRUE(id.has_value()) << well_known_name(which);
    EXPECT_EQ(classify_vm_id(*id), which);
  }
}

// --- vsock template -----------------------------------------------------------------

TEST(VsockTemplate, TemplateText) {
  EXPECT_EQ(vsock_template_service.to_string(), "00000000-facb-11e6-bd58-64006a7986d3");
  EXPECT_EQ(max_listen_port, 0x7fffffffu);
}

TEST(VsockTemplate, Port2761) {
  const service_id id = service_id_from_port(2761);
  EXPECT_EQ(id.to_string(), "00000ac9-facb-11e6-bd58-64006a7986d3");
  EXPECT_EQ(id, parse_ok("00000ac9-facb-11e6-bd58-64006a7986d3"));
  auto port = port_from_service_id(parse_ok("{00000AC9-FACB-11E6-BD58-64006A7986D3}"));
  ASSERT_TRUE(port.has_value()) << port.error().message();
  EXPECT_EQ(*port, 2761u);
}

TEST(VsockTemplate, Port0) {
  EXPECT_EQ(service_id_from_port(0), vsock_template_service);
  EXPECT_EQ(service_id_from_port(0).to_string(), "00000000-facb-11e6-bd58-64006a7986d3");
  auto port = port_from_service_id(vsock_template_service);
  ASSERT_TRUE(port.has_value());
  EXPECT_EQ(*port, 0u);
}

TEST(VsockTemplate, MaxListenPort) {
  const service_id id = service_id_from_port(0x7fffffff);
  EXPECT_EQ(id.to_string(), "7fffffff-facb-11e6-bd58-64006a7986d3");
  auto port = port_from_service_id(id);
  ASSERT_TRUE(port.has_value());
  EXPECT_EQ(*port, 0x7fffffffu);
}

TEST(VsockTemplate, AllOnesPort) {
  const service_id id = service_id_from_port(0xffffffff);
  EXPECT_EQ(id.to_string(), "ffffffff-facb-11e6-bd58-64006a7986d3");
  auto port = port_from_service_id(id);
  ASSERT_TRUE(port.has_value());
  EXPECT_EQ(*port, 0xffffffffu);
}

TEST(VsockTemplate, RoundTripManyPorts) {
  for (std::uint32_t port : {1u, 22u, 80u, 1024u, 5000u, 0x10000u, 0x12345678u, 0x80000000u}) {
    const service_id id = service_id_from_port(port);
    EXPECT_TRUE(is_vsock_template(id));
    EXPECT_EQ(id.data1(), port);
    auto back = port_from_service_id(id);
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(*back, port);
  }
}

TEST(VsockTemplate, IsVsockTemplate) {
  EXPECT_TRUE(is_vsock_template(parse_ok("00000ac9-facb-11e6-bd58-64006a7986d3")));
  EXPECT_TRUE(is_vsock_template(parse_ok("deadbeef-FACB-11E6-BD58-64006A7986D3")));
  EXPECT_FALSE(is_vsock_template(guid{}));
  EXPECT_FALSE(is_vsock_template(vm_id_broadcast));
  EXPECT_FALSE(is_vsock_template(vm_id_parent));
  // One field off at a time.
  EXPECT_FALSE(is_vsock_template(parse_ok("00000ac9-facc-11e6-bd58-64006a7986d3")));
  EXPECT_FALSE(is_vsock_template(parse_ok("00000ac9-facb-11e7-bd58-64006a7986d3")));
  EXPECT_FALSE(is_vsock_template(parse_ok("00000ac9-facb-11e6-bd59-64006a7986d3")));
  EXPECT_FALSE(is_vsock_template(parse_ok("00000ac9-facb-11e6-bd58-64006a7986d4")));
  EXPECT_FALSE(is_vsock_template(parse_ok("00000ac9-facb-11e6-bd58-74006a7986d3")));
}

TEST(VsockTemplate, NonTemplateHasNoPort) {
  for (std::string_view text :
       {"00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff",
        "a42e7cda-d03f-480c-9cc2-a4de20abb878", "00000ac9-facb-11e6-bd58-64006a7986d4",
        "00000ac9-0000-11e6-bd58-64006a7986d3", "00000ac9-facb-0000-bd58-64006a7986d3",
        "00000ac9-facb-11e6-0000-64006a7986d3"}) {
    const service_id id = parse_ok(text);
    EXPECT_FALSE(is_vsock_template(id)) << text;
    auto port = port_from_service_id(id);
    ASSERT_FALSE(port.has_value()) << text << " gave port " << *port;
    EXPECT_EQ(port.error().code(), make_error_code(errc::no_vsock_port)) << text;
    const std::string& message = port.error().message();
    EXPECT_NE(message.find(std::string(text)), std::string::npos) << message;
    EXPECT_NE(message.find("vsock port"), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace hvsock
