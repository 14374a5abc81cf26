// vsock_packet: the header's wire layout, packets read out of transmit
// chains (split anywhere), the verdict on bad ones, and packets written into
// receive chains.
#include "virtio/vsock_packet.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "fake_driver.hpp"

namespace hvsock::virtio {
namespace {

using testing::buffer;
using testing::fake_driver;

virtio_vsock_hdr sample_header(vsock_op op, std::uint32_t len = 0) {
  virtio_vsock_hdr h;
  h.src_cid = 3;
  h.dst_cid = vmaddr_cid_host;
  h.src_port = 1025;
  h.dst_port = 2761;
  h.len = len;
  h.type = static_cast<std::uint16_t>(vsock_type::stream);
  h.op = static_cast<std::uint16_t>(op);
  h.flags = 0;
  h.buf_alloc = 262144;
  h.fwd_cnt = 77;
  return h;
}

std::vector<std::byte> pattern(std::size_t n, unsigned seed = 1) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 131 + seed) & 0xff);
  return v;
}

// Lays `wire` (header + payload bytes) out in guest memory cut at `cuts`,
// as a transmit chain, and pops it.
descriptor_chain tx_chain(fake_driver& drv, split_virtqueue& q, std::span<const std::byte> wire,
                          std::vector<std::size_t> cuts) {
  cuts.push_back(wire.size());
  std::vector<buffer> bufs;
  std::size_t at = 0;
  for (std::size_t cut : cuts) {
    const auto gpa = drv.alloc(cut - at + 1, 1);
    drv.fill(gpa, wire.subspan(at, cut - at));
    bufs.push_back({gpa, static_cast<std::uint32_t>(cut - at), false});
    at = cut;
  }
  drv.add_chain(bufs);
  auto r = q.pop();
  EXPECT_TRUE(r && r->has_value());
  return std::move(**r);
}

std::vector<std::byte> wire_of(const virtio_vsock_hdr& h, std::span<const std::byte> payload) {
  const auto hb = encode_header(h);
  std::vector<std::byte> w(vsock_header_size + payload.size());
  std::copy(hb.begin(), hb.end(), w.begin());
  std::copy(payload.begin(), payload.end(), w.begin() + vsock_header_size);
  return w;
}

TEST(VsockPacket, HeaderWireLayoutIsLittleEndian) {
  virtio_vsock_hdr h;
  h.src_cid = 0x0102030405060708;
  h.dst_cid = 2;
  h.src_port = 0x11223344;
  h.dst_port = 0xaabbccdd;
  h.len = 5;
  h.type = 1;
  h.op = 0x0506;
  h.flags = 3;
  h.buf_alloc = 0x10000;
  h.fwd_cnt = 0xdeadbeef;
  const auto b = encode_header(h);
  EXPECT_EQ(b[0], std::byte{0x08});
  EXPECT_EQ(b[7], std::byte{0x01});
  EXPECT_EQ(b[8], std::byte{0x02});
  EXPECT_EQ(b[16], std::byte{0x44});
  EXPECT_EQ(b[23], std::byte{0xaa});
  EXPECT_EQ(b[24], std::byte{0x05});
  EXPECT_EQ(b[28], std::byte{0x01});
  EXPECT_EQ(b[30], std::byte{0x06});
  EXPECT_EQ(b[31], std::byte{0x05});
  EXPECT_EQ(b[32], std::byte{0x03});
  EXPECT_EQ(b[38], std::byte{0x01});
  EXPECT_EQ(b[40], std::byte{0xef});
  EXPECT_EQ(b[43], std::byte{0xde});
  const auto back = decode_header(b);
  EXPECT_EQ(back.src_cid, h.src_cid);
  EXPECT_EQ(back.dst_port, h.dst_port);
  EXPECT_EQ(back.op, h.op);
  EXPECT_EQ(back.fwd_cnt, h.fwd_cnt);
}

TEST(VsockPacket, ParsesControlAndDataPackets) {
  fake_driver drv(16);
  auto q = drv.make_queue();
  for (auto op : {vsock_op::request, vsock_op::response, vsock_op::rst, vsock_op::shutdown,
                  vsock_op::credit_update, vsock_op::credit_request}) {
    const auto w = wire_of(sample_header(op), {});
    auto p = parse_packet(tx_chain(drv, q, w, {}));
    EXPECT_EQ(p.status, packet_status::ok) << p.reason;
    EXPECT_EQ(p.header.op, static_cast<std::uint16_t>(op));
    EXPECT_EQ(p.header.dst_port, 2761u);
    EXPECT_EQ(p.payload_size(), 0u);
  }
}

TEST(VsockPacket, DataRoundTripsWhereverTheBuffersAreCut) {
  const auto payload = pattern(1000);
  const auto w = wire_of(sample_header(vsock_op::rw, 1000), payload);
  const std::vector<std::vector<std::size_t>> cut_sets = {
      {},              // one buffer: header and payload together
      {44},            // Linux's layout: header, payload
      {10},            // header split across buffers
      {10, 30, 43},    // header in four pieces
      {44, 45, 500},   // payload in three pieces
      {1, 2, 3, 100},  // everything split
  };
  for (const auto& cuts : cut_sets) {
    fake_driver drv(16);
    auto q = drv.make_queue();
    auto p = parse_packet(tx_chain(drv, q, w, cuts));
    ASSERT_EQ(p.status, packet_status::ok) << p.reason;
    EXPECT_EQ(p.header.len, 1000u);
    EXPECT_EQ(p.header.src_cid, 3u);
    EXPECT_EQ(p.header.fwd_cnt, 77u);
    std::size_t total = 0;
    for (auto s : p.payload) total += s.size();
    EXPECT_EQ(total, 1000u);
    std::vector<std::byte> got(1000);
    p.copy_payload(got);
    EXPECT_EQ(got, payload);
  }
}

// What a 6.12 guest kernel sends (seen with the guest kit's 6.12 kernel):
// besides 6.1's header + one linear payload buffer, RW packets whose payload
// is a non-linear skb, one descriptor per page fragment, up to 64 KiB.
TEST(VsockPacket, Linux612NonLinearPayloadsParse) {
  for (const std::size_t len : {std::size_t{4096}, std::size_t{10000}, default_max_payload}) {
    const auto payload = pattern(len, 3);
    const auto w = wire_of(sample_header(vsock_op::rw, static_cast<std::uint32_t>(len)), payload);
    std::vector<std::size_t> cuts{vsock_header_size};  // the header alone first
    for (std::size_t at = vsock_header_size + 4096; at < w.size(); at += 4096) cuts.push_back(at);
    fake_driver drv(32);
    auto q = drv.make_queue();
    auto p = parse_packet(tx_chain(drv, q, w, cuts));
    ASSERT_EQ(p.status, packet_status::ok) << len << ": " << p.reason;
    EXPECT_EQ(p.payload.size(), (len + 4095) / 4096);
    std::vector<std::byte> got(len);
    p.copy_payload(got);
    EXPECT_EQ(got, payload) << len;
  }
}

TEST(VsockPacket, LengthMismatchIsMalformed) {
  fake_driver drv(16);
  auto q = drv.make_queue();
  const auto payload = pattern(100);
  // Header claims more than follows.
  auto p = parse_packet(tx_chain(drv, q, wire_of(sample_header(vsock_op::rw, 200), payload), {44}));
  EXPECT_EQ(p.status, packet_status::malformed);
  EXPECT_NE(p.reason.find("header says 200"), std::string::npos) << p.reason;
  // Header claims less than follows.
  p = parse_packet(tx_chain(drv, q, wire_of(sample_header(vsock_op::rw, 10), payload), {44}));
  EXPECT_EQ(p.status, packet_status::malformed);
  // Shorter than a header.
  const auto hb = encode_header(sample_header(vsock_op::request));
  p = parse_packet(tx_chain(drv, q, std::span(hb).first(43), {20}));
  EXPECT_EQ(p.status, packet_status::malformed);
  EXPECT_NE(p.reason.find("shorter than the 44-byte header"), std::string::npos);
  // No readable buffers at all (a receive-style chain on the transmit queue).
  drv.add_chain({{drv.alloc(64), 64, true}});
  auto c = q.pop();
  ASSERT_TRUE(c && c->has_value());
  EXPECT_EQ(parse_packet(**c).status, packet_status::malformed);
  // A payload on a packet that may not carry one.
  p = parse_packet(
      tx_chain(drv, q, wire_of(sample_header(vsock_op::request, 4), pattern(4)), {44}));
  EXPECT_EQ(p.status, packet_status::malformed);
  EXPECT_NE(p.reason.find("only RW packets"), std::string::npos);
}

TEST(VsockPacket, OversizedPayloadIsMalformed) {
  fake_driver drv(16);
  auto q = drv.make_queue();
  const auto big = pattern(default_max_payload + 1);
  auto p = parse_packet(tx_chain(
      drv, q, wire_of(sample_header(vsock_op::rw, static_cast<std::uint32_t>(big.size())), big),
      {44}));
  EXPECT_EQ(p.status, packet_status::malformed);
  EXPECT_NE(p.reason.find("exceeds 65536"), std::string::npos) << p.reason;
  // Exactly the maximum is fine, and the maximum is a parameter.
  const auto max = pattern(default_max_payload);
  auto chain = tx_chain(
      drv, q, wire_of(sample_header(vsock_op::rw, static_cast<std::uint32_t>(max.size())), max),
      {44});
  EXPECT_EQ(parse_packet(chain).status, packet_status::ok);
  EXPECT_EQ(parse_packet(chain, 4096).status, packet_status::malformed);
}

TEST(VsockPacket, UnknownOpOrTypeAsksForAnRst) {
  fake_driver drv(16);
  auto q = drv.make_queue();
  auto h = sample_header(vsock_op::request);
  h.op = 8;
  auto p = parse_packet(tx_chain(drv, q, wire_of(h, {}), {}));
  EXPECT_EQ(p.status, packet_status::reply_rst);
  EXPECT_NE(p.reason.find("unknown operation"), std::string::npos);
  h.op = 0;  // VIRTIO_VSOCK_OP_INVALID
  EXPECT_EQ(parse_packet(tx_chain(drv, q, wire_of(h, {}), {})).status, packet_status::reply_rst);

  h = sample_header(vsock_op::request);
  h.type = static_cast<std::uint16_t>(vsock_type::seqpacket);
  EXPECT_EQ(parse_packet(tx_chain(drv, q, wire_of(h, {}), {})).status, packet_status::ok);
  h.type = 3;  // neither STREAM nor SEQPACKET
  p = parse_packet(tx_chain(drv, q, wire_of(h, {}), {}));
  EXPECT_EQ(p.status, packet_status::reply_rst);
  EXPECT_NE(p.reason.find("unsupported socket type"), std::string::npos);
  h.type = 0x7777;
  EXPECT_EQ(parse_packet(tx_chain(drv, q, wire_of(h, {}), {})).status, packet_status::reply_rst);
  // Never answer an RST with an RST.
  h.op = static_cast<std::uint16_t>(vsock_op::rst);
  EXPECT_EQ(parse_packet(tx_chain(drv, q, wire_of(h, {}), {})).status, packet_status::ignore);

  const auto reply = make_rst_reply(p.header);
  EXPECT_EQ(reply.src_cid, vmaddr_cid_host);
  EXPECT_EQ(reply.dst_cid, 3u);
  EXPECT_EQ(reply.src_port, 2761u);
  EXPECT_EQ(reply.dst_port, 1025u);
  EXPECT_EQ(reply.type, 3u);
  EXPECT_EQ(reply.op, static_cast<std::uint16_t>(vsock_op::rst));
  EXPECT_EQ(reply.len, 0u);
}

TEST(VsockPacket, WritesPacketsIntoReceiveChains) {
  const auto payload = pattern(3000, 7);
  for (const std::vector<std::uint32_t>& sizes :
       {std::vector<std::uint32_t>{4096},             // one buffer (Linux ≥ 6.x)
        std::vector<std::uint32_t>{44, 4096},         // header, payload
        std::vector<std::uint32_t>{20, 30, 3000}}) {  // header split
    fake_driver drv(16);
    auto q = drv.make_queue();
    std::vector<buffer> bufs;
    for (auto s : sizes) bufs.push_back({drv.alloc(s), s, true});
    drv.add_chain(bufs);
    auto c = q.pop();
    ASSERT_TRUE(c && c->has_value());
    const auto& chain = **c;
    auto h = sample_header(vsock_op::rw, 999);  // len is replaced by the payload size
    auto written = write_packet(chain, h, payload);
    ASSERT_TRUE(written) << written.error().message();
    EXPECT_EQ(*written, 44u + 3000u);
    ASSERT_TRUE(q.push_used(chain.head, *written));

    // Read it back as the guest would: concatenate the buffers.
    std::vector<std::byte> seen;
    for (const auto& b : bufs) {
      auto s = drv.bytes(b.gpa, b.len);
      seen.insert(seen.end(), s.begin(), s.end());
    }
    const auto back = decode_header(std::span(seen).first<vsock_header_size>());
    EXPECT_EQ(back.len, 3000u);
    EXPECT_EQ(back.dst_port, 2761u);
    EXPECT_TRUE(std::equal(payload.begin(), payload.end(), seen.begin() + 44));
  }
}

TEST(VsockPacket, ReadsPayloadStraightIntoGuestMemory) {
  fake_driver drv(16);
  auto q = drv.make_queue();
  drv.add_chain({{drv.alloc(30), 30, true}, {drv.alloc(100), 100, true}});
  auto c = q.pop();
  ASSERT_TRUE(c && c->has_value());
  const auto& chain = **c;
  EXPECT_EQ(payload_capacity(chain), 86u);
  auto spans = payload_buffers(chain, 1000);
  ASSERT_EQ(spans.size(), 1u);
  EXPECT_EQ(spans[0].size(), 86u);
  EXPECT_EQ(spans[0].data(), chain.writable[1].data() + 14);
  std::memset(spans[0].data(), 0x5a, 50);  // what a readv() would do
  auto h = sample_header(vsock_op::rw, 50);
  auto n = write_header(chain, h);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 94u);
  h.len = 87;
  EXPECT_FALSE(write_header(chain, h)) << "does not fit";
  EXPECT_EQ(payload_buffers(chain, 10)[0].size(), 10u);
}

TEST(VsockPacket, RefusesPacketsThatDoNotFit) {
  fake_driver drv(16);
  auto q = drv.make_queue();
  drv.add_chain({{drv.alloc(40), 40, true}});
  drv.add_chain({{drv.alloc(100), 100, true}});
  auto tiny = q.pop();
  auto small = q.pop();
  ASSERT_TRUE(tiny && tiny->has_value() && small && small->has_value());
  EXPECT_EQ(payload_capacity(**tiny), 0u);
  EXPECT_FALSE(write_packet(**tiny, sample_header(vsock_op::credit_update), {}));
  const auto payload = pattern(57);
  auto r = write_packet(**small, sample_header(vsock_op::rw), payload);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("does not fit"), std::string::npos);
  EXPECT_TRUE(write_packet(**small, sample_header(vsock_op::rw), std::span(payload).first(56)));
}

TEST(VsockPacket, DeviceConfigHoldsTheGuestCid) {
  const auto b = encode_config(0x1122334455667788);
  EXPECT_EQ(b[0], std::byte{0x88});
  EXPECT_EQ(b[7], std::byte{0x11});
  std::array<std::byte, 4> hi{};
  ASSERT_TRUE(read_config(0x1122334455667788, 4, hi));
  EXPECT_EQ(hi[0], std::byte{0x44});
  std::array<std::byte, 8> all{};
  ASSERT_TRUE(read_config(3, 0, all));
  EXPECT_EQ(all[0], std::byte{3});
  EXPECT_FALSE(read_config(3, 4, all)) << "runs past the config";
  EXPECT_FALSE(read_config(3, 0xffffffff, std::span(all).first(1)));
  EXPECT_TRUE(read_config(3, 8, std::span(all).first(0)));
}

}  // namespace
}  // namespace hvsock::virtio
