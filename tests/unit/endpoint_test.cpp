// Unit tests for hvsock::endpoint: its text form and the SOCKADDR_HV and
// sockaddr_vm wire layouts. No socket is created here (AF_VSOCK sockets are
// off limits in this workplace): only the structs are exercised.
#include <hvsock/endpoint.hpp>

#include <sys/socket.h>

#include <linux/vm_sockets.h>

#include <gtest/gtest.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace hvsock {
namespace {

const service_id kService5000 = service_id_from_port(5000);  // 00001388-facb-...
const vm_id kSomeVm = guid_literal("5b2e1f9c-8d43-4a6e-b1c7-0f9e8d7c6b5a");
const service_id kNonTemplate = guid_literal("3049197c-facb-11e6-bd58-64006a7986d4");

template <std::size_t N>
std::array<std::uint8_t, N> bytes_of(const void* p) {
  std::array<std::uint8_t, N> out{};
  std::memcpy(out.data(), p, N);
  return out;
}

// --- text form --------------------------------------------------------------------

TEST(EndpointText, WellKnownNames) {
  EXPECT_EQ((endpoint{vm_id_parent, kService5000}).to_string(),
            "parent:00001388-facb-11e6-bd58-64006a7986d3");
  EXPECT_EQ((endpoint{vm_id_loopback, kService5000}).to_string(),
            "loopback:00001388-facb-11e6-bd58-64006a7986d3");
  EXPECT_EQ((endpoint{vm_id_wildcard, kService5000}).to_string(),
            "wildcard:00001388-facb-11e6-bd58-64006a7986d3");
  EXPECT_EQ((endpoint{vm_id_children, kService5000}).to_string(),
            "children:00001388-facb-11e6-bd58-64006a7986d3");
  EXPECT_EQ((endpoint{vm_id_broadcast, kService5000}).to_string(),
            "broadcast:00001388-facb-11e6-bd58-64006a7986d3");
  EXPECT_EQ((endpoint{vm_id_silohost, kService5000}).to_string(),
            "silohost:00001388-facb-11e6-bd58-64006a7986d3");
}

TEST(EndpointText, SpecificVmIdAsGuid) {
  EXPECT_EQ((endpoint{kSomeVm, kNonTemplate}).to_string(),
            "5b2e1f9c-8d43-4a6e-b1c7-0f9e8d7c6b5a:3049197c-facb-11e6-bd58-64006a7986d4");
}

TEST(EndpointText, ServiceNeverNamed) {
  // A service equal to a well-known VmId is still printed as a GUID.
  EXPECT_EQ((endpoint{vm_id_parent, vm_id_parent}).to_string(),
            "parent:a42e7cda-d03f-480c-9cc2-a4de20abb878");
}

TEST(EndpointCompare, EqualityAndOrdering) {
  const endpoint a{vm_id_parent, kService5000};
  const endpoint b{vm_id_parent, service_id_from_port(5001)};
  const endpoint c{vm_id_loopback, kService5000};
  EXPECT_EQ(a, (endpoint{vm_id_parent, kService5000}));
  EXPECT_NE(a, b);
  EXPECT_NE(a, c);
  EXPECT_LT(a, b);  // same VmId, smaller service
  EXPECT_LT(a, c);  // a42e... < e0e1...
}

// --- SOCKADDR_HV -------------------------------------------------------------------

TEST(SockaddrHv, LayoutMatchesWindows) {
  EXPECT_EQ(sizeof(sockaddr_hv), 36u);
  EXPECT_EQ(offsetof(sockaddr_hv, family), 0u);
  EXPECT_EQ(offsetof(sockaddr_hv, reserved), 2u);
  EXPECT_EQ(offsetof(sockaddr_hv, vm_id), 4u);
  EXPECT_EQ(offsetof(sockaddr_hv, service_id), 20u);
  EXPECT_EQ(af_hyperv, 34);
  EXPECT_EQ(hv_protocol_raw, 1);
}

TEST(SockaddrHv, ExactBytes) {
  const endpoint ep{vm_id_parent, service_id_from_port(2761)};
  const sockaddr_hv addr = to_sockaddr_hv(ep);
  EXPECT_EQ(addr.family, 34);
  EXPECT_EQ(addr.reserved, 0);
  const std::array<std::uint8_t, 36> expected = {// Family = 34, Reserved = 0 (little-endian u16s)
                                                 0x22, 0x00, 0x00, 0x00,
                                                 // VmId a42e7cda-d03f-480c-9cc2-a4de20abb878
                                                 0xda, 0x7c, 0x2e, 0xa4, 0x3f, 0xd0, 0x0c, 0x48,
                                                 0x9c, 0xc2, 0xa4, 0xde, 0x20, 0xab, 0xb8, 0x78,
                                                 // ServiceId 00000ac9-facb-11e6-bd58-64006a7986d3
                                                 0xc9, 0x0a, 0x00, 0x00, 0xcb, 0xfa, 0xe6, 0x11,
                                                 0xbd, 0x58, 0x64, 0x00, 0x6a, 0x79, 0x86, 0xd3};
  EXPECT_EQ(bytes_of<36>(&addr), expected);
}

TEST(SockaddrHv, RoundTrip) {
  for (const endpoint& ep :
       {endpoint{vm_id_parent, kService5000}, endpoint{kSomeVm, kNonTemplate},
        endpoint{vm_id_wildcard, guid{}}, endpoint{guid::generate(), guid::generate()}}) {
    const sockaddr_hv addr = to_sockaddr_hv(ep);
    auto back = endpoint_from_sockaddr_hv(&addr, sizeof addr);
    ASSERT_TRUE(back.has_value()) << back.error().message();
    EXPECT_EQ(*back, ep) << ep.to_string();
  }
}

TEST(SockaddrHv, FromKnownBytes) {
  const std::array<std::uint8_t, 36> raw = {0x22, 0x00, 0x00, 0x00, 0x97, 0x61, 0xe1, 0xe0, 0x56,
                                            0xdd, 0x10, 0x4a, 0x91, 0x95, 0x5e, 0xe7, 0xa1, 0x55,
                                            0xa8, 0x38, 0x88, 0x13, 0x00, 0x00, 0xcb, 0xfa, 0xe6,
                                            0x11, 0xbd, 0x58, 0x64, 0x00, 0x6a, 0x79, 0x86, 0xd3};
  auto ep = endpoint_from_sockaddr_hv(raw.data(), raw.size());
  ASSERT_TRUE(ep.has_value()) << ep.error().message();
  EXPECT_EQ(ep->vm, vm_id_loopback);
  EXPECT_EQ(ep->service, kService5000);
  EXPECT_EQ(ep->to_string(), "loopback:00001388-facb-11e6-bd58-64006a7986d3");
}

TEST(SockaddrHv, LongerBufferAccepted) {
  // A caller may pass a sockaddr_storage; only the first 36 bytes count.
  sockaddr_storage storage{};
  const sockaddr_hv addr = to_sockaddr_hv(endpoint{kSomeVm, kService5000});
  std::memcpy(&storage, &addr, sizeof addr);
  auto ep = endpoint_from_sockaddr_hv(&storage, sizeof storage);
  ASSERT_TRUE(ep.has_value()) << ep.error().message();
  EXPECT_EQ(*ep, (endpoint{kSomeVm, kService5000}));
}

void expect_invalid_argument(const result<endpoint>& r, std::string_view needle) {
  ASSERT_FALSE(r.has_value()) << "accepted " << r->to_string();
  EXPECT_EQ(r.error().code(), make_error_code(errc::invalid_argument));
  EXPECT_NE(r.error().message().find(needle), std::string::npos) << r.error().message();
}

TEST(SockaddrHv, RejectsShortLength) {
  const sockaddr_hv addr = to_sockaddr_hv(endpoint{vm_id_parent, kService5000});
  expect_invalid_argument(endpoint_from_sockaddr_hv(&addr, 35), "35");
  expect_invalid_argument(endpoint_from_sockaddr_hv(&addr, 16), "36");
  expect_invalid_argument(endpoint_from_sockaddr_hv(&addr, 0), "got 0");
}

TEST(SockaddrHv, RejectsNullptr) {
  expect_invalid_argument(endpoint_from_sockaddr_hv(nullptr, sizeof(sockaddr_hv)), "SOCKADDR_HV");
}

TEST(SockaddrHv, RejectsWrongFamily) {
  sockaddr_hv addr = to_sockaddr_hv(endpoint{vm_id_parent, kService5000});
  addr.family = AF_VSOCK;
  expect_invalid_argument(endpoint_from_sockaddr_hv(&addr, sizeof addr), "family");
  addr.family = AF_UNIX;
  expect_invalid_argument(endpoint_from_sockaddr_hv(&addr, sizeof addr), "family 1");
  addr.family = 34 << 8;  // big-endian 34
  expect_invalid_argument(endpoint_from_sockaddr_hv(&addr, sizeof addr), "family");
}

TEST(SockaddrHv, RejectsNonzeroReserved) {
  sockaddr_hv addr = to_sockaddr_hv(endpoint{vm_id_parent, kService5000});
  addr.reserved = 1;
  expect_invalid_argument(endpoint_from_sockaddr_hv(&addr, sizeof addr), "Reserved");
  addr.reserved = 0x8000;
  expect_invalid_argument(endpoint_from_sockaddr_hv(&addr, sizeof addr), "Reserved");
}

// --- sockaddr_vm -------------------------------------------------------------------

TEST(SockaddrVm, LayoutMatchesLinux) {
  EXPECT_EQ(sizeof(sockaddr_vm), 16u);
  EXPECT_EQ(sizeof(sockaddr_vm), sizeof(sockaddr));
  EXPECT_EQ(offsetof(sockaddr_vm, svm_family), 0u);
  EXPECT_EQ(offsetof(sockaddr_vm, svm_reserved1), 2u);
  EXPECT_EQ(offsetof(sockaddr_vm, svm_port), 4u);
  EXPECT_EQ(offsetof(sockaddr_vm, svm_cid), 8u);
  EXPECT_EQ(offsetof(sockaddr_vm, svm_zero), 13u);
  EXPECT_EQ(AF_VSOCK, 40);
  EXPECT_EQ(VMADDR_CID_LOCAL, 1u);
  EXPECT_EQ(VMADDR_CID_HOST, 2u);
  EXPECT_EQ(VMADDR_CID_ANY, 0xffffffffu);
}

sockaddr_vm to_vm_ok(const endpoint& ep, const vm_id_to_cid& lookup = {}) {
  auto r = to_sockaddr_vm(ep, lookup);
  EXPECT_TRUE(r.has_value()) << ep.to_string() << ": " << (r ? "" : r.error().message());
  return r ? *r : sockaddr_vm{};
}

TEST(SockaddrVm, ParentIsCidHost) {
  const sockaddr_vm addr = to_vm_ok(endpoint{vm_id_parent, service_id_from_port(2761)});
  EXPECT_EQ(addr.svm_family, AF_VSOCK);
  EXPECT_EQ(addr.svm_reserved1, 0);
  EXPECT_EQ(addr.svm_port, 2761u);
  EXPECT_EQ(addr.svm_cid, 2u);
  // Exact bytes: family 40, reserved 0, port 2761, CID 2, the rest zero.
  const std::array<std::uint8_t, 16> expected = {0x28, 0x00, 0x00, 0x00, 0xc9, 0x0a, 0x00, 0x00,
                                                 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  EXPECT_EQ(bytes_of<16>(&addr), expected);
}

TEST(SockaddrVm, LoopbackIsCidLocal) {
  const sockaddr_vm addr = to_vm_ok(endpoint{vm_id_loopback, kService5000});
  EXPECT_EQ(addr.svm_cid, VMADDR_CID_LOCAL);
  EXPECT_EQ(addr.svm_port, 5000u);
}

TEST(SockaddrVm, WildcardIsCidAny) {
  const sockaddr_vm addr = to_vm_ok(endpoint{vm_id_wildcard, service_id_from_port(0x7fffffff)});
  EXPECT_EQ(addr.svm_cid, VMADDR_CID_ANY);
  EXPECT_EQ(addr.svm_port, 0x7fffffffu);
}

TEST(SockaddrVm, OtherVmIdThroughLookup) {
  int calls = 0;
  const vm_id_to_cid lookup = [&](const vm_id& id) -> std::optional<std::uint32_t> {
    ++calls;
    if (id == kSomeVm) return 7;
    return std::nullopt;
  };
  const sockaddr_vm addr = to_vm_ok(endpoint{kSomeVm, kService5000}, lookup);
  EXPECT_EQ(addr.svm_cid, 7u);
  EXPECT_EQ(addr.svm_port, 5000u);
  EXPECT_EQ(calls, 1);
  // The well-known ones never reach the lookup.
  to_vm_ok(endpoint{vm_id_parent, kService5000}, lookup);
  EXPECT_EQ(calls, 1);
}

TEST(SockaddrVm, UnknownVmIdIsUnknownPartition) {
  const vm_id_to_cid none = [](const vm_id&) -> std::optional<std::uint32_t> {
    return std::nullopt;
  };
  for (const vm_id_to_cid& lookup : {vm_id_to_cid{}, none}) {
    auto r = to_sockaddr_vm(endpoint{kSomeVm, kService5000}, lookup);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code(), make_error_code(errc::unknown_partition));
    EXPECT_NE(r.error().message().find(kSomeVm.to_string()), std::string::npos)
        << r.error().message();
  }
  // CHILDREN and SILOHOST have no CID either.
  for (const vm_id& id : {vm_id_children, vm_id_silohost}) {
    auto r = to_sockaddr_vm(endpoint{id, kService5000});
    ASSERT_FALSE(r.has_value()) << id.to_string();
    EXPECT_EQ(r.error().code(), make_error_code(errc::unknown_partition));
  }
  // BROADCAST has no meaning at all, and says so.
  auto broadcast = to_sockaddr_vm(endpoint{vm_id_broadcast, kService5000});
  ASSERT_FALSE(broadcast.has_value());
  EXPECT_EQ(broadcast.error().code(), make_error_code(errc::broadcast_not_allowed));
}

TEST(SockaddrVm, NonTemplateServiceHasNoPort) {
  for (const vm_id& id : {vm_id_parent, vm_id_loopback, vm_id_wildcard, kSomeVm}) {
    auto r = to_sockaddr_vm(endpoint{id, kNonTemplate});
    ASSERT_FALSE(r.has_value()) << id.to_string();
    EXPECT_EQ(r.error().code(), make_error_code(errc::no_vsock_port));
    EXPECT_NE(r.error().message().find(kNonTemplate.to_string()), std::string::npos)
        << r.error().message();
  }
}

TEST(SockaddrVm, FromSockaddrVmWellKnownCids) {
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_port = 2761;
  struct row {
    std::uint32_t cid;
    vm_id vm;
  };
  for (const row& r : {row{VMADDR_CID_HOST, vm_id_parent}, row{VMADDR_CID_LOCAL, vm_id_loopback},
                       row{VMADDR_CID_ANY, vm_id_wildcard}}) {
    addr.svm_cid = r.cid;
    auto ep = endpoint_from_sockaddr_vm(&addr, sizeof addr);
    ASSERT_TRUE(ep.has_value()) << r.cid << ": " << ep.error().message();
    EXPECT_EQ(ep->vm, r.vm) << r.cid;
    EXPECT_EQ(ep->service.to_string(), "00000ac9-facb-11e6-bd58-64006a7986d3");
  }
}

TEST(SockaddrVm, RoundTrip) {
  const vm_id_to_cid to_cid = [](const vm_id& id) -> std::optional<std::uint32_t> {
    if (id == kSomeVm) return 42;
    return std::nullopt;
  };
  const cid_to_vm_id to_vm = [](std::uint32_t cid) -> std::optional<vm_id> {
    if (cid == 42) return kSomeVm;
    return std::nullopt;
  };
  for (const endpoint& ep : {endpoint{vm_id_parent, service_id_from_port(0)},
                             endpoint{vm_id_loopback, service_id_from_port(2761)},
                             endpoint{vm_id_wildcard, service_id_from_port(0xffffffff)},
                             endpoint{kSomeVm, service_id_from_port(0x7fffffff)}}) {
    auto addr = to_sockaddr_vm(ep, to_cid);
    ASSERT_TRUE(addr.has_value()) << ep.to_string() << ": " << addr.error().message();
    auto back = endpoint_from_sockaddr_vm(&*addr, sizeof *addr, to_vm);
    ASSERT_TRUE(back.has_value()) << ep.to_string() << ": " << back.error().message();
    EXPECT_EQ(*back, ep);
  }
}

void expect_error(const result<endpoint>& r, errc code, std::string_view needle) {
  ASSERT_FALSE(r.has_value()) << "accepted " << r->to_string();
  EXPECT_EQ(r.error().code(), make_error_code(code));
  EXPECT_NE(r.error().message().find(needle), std::string::npos) << r.error().message();
}

TEST(SockaddrVm, FromRejectsShortLength) {
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = VMADDR_CID_HOST;
  expect_error(endpoint_from_sockaddr_vm(&addr, 15), errc::invalid_argument, "15");
  expect_error(endpoint_from_sockaddr_vm(&addr, 0), errc::invalid_argument, "16");
  expect_error(endpoint_from_sockaddr_vm(nullptr, sizeof addr), errc::invalid_argument,
               "sockaddr_vm");
}

TEST(SockaddrVm, FromRejectsWrongFamily) {
  sockaddr_vm addr{};
  addr.svm_family = af_hyperv;
  addr.svm_cid = VMADDR_CID_HOST;
  expect_error(endpoint_from_sockaddr_vm(&addr, sizeof addr), errc::invalid_argument, "family 34");
  addr.svm_family = AF_INET;
  expect_error(endpoint_from_sockaddr_vm(&addr, sizeof addr), errc::invalid_argument, "family 2");
}

TEST(SockaddrVm, FromRejectsUnknownCidWithoutLookup) {
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_port = 5000;
  addr.svm_cid = 3;
  expect_error(endpoint_from_sockaddr_vm(&addr, sizeof addr), errc::unknown_partition, "CID 3");
  const cid_to_vm_id none = [](std::uint32_t) -> std::optional<vm_id> { return std::nullopt; };
  addr.svm_cid = 1234;
  expect_error(endpoint_from_sockaddr_vm(&addr, sizeof addr, none), errc::unknown_partition,
               "1234");
  // CID 0 (the hypervisor) is not a partition either.
  addr.svm_cid = 0;
  expect_error(endpoint_from_sockaddr_vm(&addr, sizeof addr), errc::unknown_partition, "CID 0");
}

TEST(SockaddrVm, FromUsesLookupForOtherCids) {
  sockaddr_vm addr{};
  addr.svm_family = AF_VSOCK;
  addr.svm_port = 80;
  addr.svm_cid = 3;
  const cid_to_vm_id lookup = [](std::uint32_t cid) -> std::optional<vm_id> {
    if (cid == 3) return kSomeVm;
    return std::nullopt;
  };
  auto ep = endpoint_from_sockaddr_vm(&addr, sizeof addr, lookup);
  ASSERT_TRUE(ep.has_value()) << ep.error().message();
  EXPECT_EQ(*ep, (endpoint{kSomeVm, service_id_from_port(80)}));
}

}  // namespace
}  // namespace hvsock
