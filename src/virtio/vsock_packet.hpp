// vsock_packet: the virtio-vsock wire format (virtio spec, "Socket Device"):
// the 44-byte packet header, its constants, the device configuration, reading
// a packet out of a transmit-queue chain and writing one into a receive-queue
// chain.
//
// Parsing copies the header out of guest memory once and judges the copy, so
// a guest rewriting the buffer meanwhile changes nothing. The payload is
// handed out as spans into guest memory (no copy): its bytes are data, never
// interpreted here. Thread safety: free functions on caller-owned data.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <hvsock/result.hpp>

#include "virtio/split_virtqueue.hpp"

namespace hvsock::virtio {

// Feature bits of the socket device.
inline constexpr unsigned virtio_vsock_f_stream = 0;
inline constexpr unsigned virtio_vsock_f_seqpacket = 1;

// Queue indices.
inline constexpr std::uint16_t vsock_rx_queue = 0;     // device → driver packets
inline constexpr std::uint16_t vsock_tx_queue = 1;     // driver → device packets
inline constexpr std::uint16_t vsock_event_queue = 2;  // device → driver events

// Well-known CIDs.
inline constexpr std::uint64_t vmaddr_cid_hypervisor = 0;
inline constexpr std::uint64_t vmaddr_cid_local = 1;
inline constexpr std::uint64_t vmaddr_cid_host = 2;

enum class vsock_type : std::uint16_t {
  stream = 1,
  seqpacket = 2,  // needs VIRTIO_VSOCK_F_SEQPACKET
};

enum class vsock_op : std::uint16_t {
  invalid = 0,
  request = 1,
  response = 2,
  rst = 3,
  shutdown = 4,
  rw = 5,
  credit_update = 6,
  credit_request = 7,
};

// Flags of a SEQPACKET RW packet: the last fragment of a message (EOM), and
// of a message its sender ended with MSG_EOR (EOR, only together with EOM).
inline constexpr std::uint32_t vsock_seq_eom = 1;
inline constexpr std::uint32_t vsock_seq_eor = 2;

// Flags of a SHUTDOWN packet.
inline constexpr std::uint32_t vsock_shutdown_rcv = 1;   // the sender will receive no more
inline constexpr std::uint32_t vsock_shutdown_send = 2;  // the sender will send no more

// struct virtio_vsock_event::id
inline constexpr std::uint32_t vsock_event_transport_reset = 0;

// The packet header with fields in host byte order. On the wire it is these
// fields packed, little-endian (encode_header / decode_header convert).
struct [[gnu::packed]] virtio_vsock_hdr {
  std::uint64_t src_cid = 0;
  std::uint64_t dst_cid = 0;
  std::uint32_t src_port = 0;
  std::uint32_t dst_port = 0;
  std::uint32_t len = 0;  // payload bytes following the header
  std::uint16_t type = 0;
  std::uint16_t op = 0;
  std::uint32_t flags = 0;
  std::uint32_t buf_alloc = 0;  // sender's receive buffer size
  std::uint32_t fwd_cnt = 0;    // bytes the sender has consumed from its buffer
};

inline constexpr std::size_t vsock_header_size = 44;
static_assert(sizeof(virtio_vsock_hdr) == vsock_header_size);
static_assert(offsetof(virtio_vsock_hdr, src_cid) == 0);
static_assert(offsetof(virtio_vsock_hdr, dst_cid) == 8);
static_assert(offsetof(virtio_vsock_hdr, src_port) == 16);
static_assert(offsetof(virtio_vsock_hdr, dst_port) == 20);
static_assert(offsetof(virtio_vsock_hdr, len) == 24);
static_assert(offsetof(virtio_vsock_hdr, type) == 28);
static_assert(offsetof(virtio_vsock_hdr, op) == 30);
static_assert(offsetof(virtio_vsock_hdr, flags) == 32);
static_assert(offsetof(virtio_vsock_hdr, buf_alloc) == 36);
static_assert(offsetof(virtio_vsock_hdr, fwd_cnt) == 40);

using vsock_header_bytes = std::array<std::byte, vsock_header_size>;
vsock_header_bytes encode_header(const virtio_vsock_hdr& hdr);
virtio_vsock_hdr decode_header(std::span<const std::byte, vsock_header_size> bytes);

// The largest payload a packet may carry by default (Linux's
// VIRTIO_VSOCK_MAX_PKT_BUF_SIZE).
inline constexpr std::size_t default_max_payload = 64 * 1024;

// What the device should do with a packet taken from the transmit queue.
enum class packet_status {
  ok,         // well formed, known type and op: hand it to the connection layer
  reply_rst,  // well formed but unsupported type or op: drop it and answer with RST
  ignore,     // unsupported, but an RST itself: drop it without an answer (no RST ping-pong)
  malformed,  // header short, payload length wrong or too large: drop it silently
};

struct parsed_packet {
  packet_status status = packet_status::malformed;
  virtio_vsock_hdr header;  // meaningful unless the header itself was short
  // hdr.len bytes, in guest memory, possibly split over several buffers.
  std::vector<std::span<const std::byte>> payload;
  std::string reason;  // why it is not ok, for logs and counters

  std::size_t payload_size() const { return header.len; }
  // Copies the payload into `out` (which must hold payload_size() bytes).
  void copy_payload(std::span<std::byte> out) const;
};

// Reads the packet in `chain`'s readable buffers: the header (which may span
// buffers), then exactly hdr.len payload bytes, at most `max_payload`. Never
// fails: a bad packet is a status, since a packet is dropped, not the device.
parsed_packet parse_packet(const descriptor_chain& chain,
                           std::size_t max_payload = default_max_payload);

// The RST that answers `to`: addresses swapped, the same type echoed (as
// Linux does), so the guest finds and fails the socket that sent it; a guest
// never answers an RST, so an unknown type cannot start a ping-pong.
virtio_vsock_hdr make_rst_reply(const virtio_vsock_hdr& to);

// How many payload bytes fit in `chain`'s writable buffers after a header.
std::size_t payload_capacity(const descriptor_chain& chain);

// The writable space after the header, at most `max` bytes, for reading a
// payload straight into guest memory (readv); then call write_header.
std::vector<std::span<std::byte>> payload_buffers(const descriptor_chain& chain, std::size_t max);

// Writes `hdr` (as is, including hdr.len) into the start of `chain`'s
// writable buffers, after the payload was placed with payload_buffers().
// Returns the bytes used (header + hdr.len) for push_used(); fails when they
// do not fit.
result<std::uint32_t> write_header(const descriptor_chain& chain, const virtio_vsock_hdr& hdr);

// Writes `hdr` with len set to payload.size(), then the payload, scattered
// over `chain`'s writable buffers. Returns the bytes used for push_used().
result<std::uint32_t> write_packet(const descriptor_chain& chain, virtio_vsock_hdr hdr,
                                   std::span<const std::byte> payload);

// Device configuration space: struct virtio_vsock_config { le64 guest_cid; }.
inline constexpr std::size_t vsock_config_size = 8;
inline constexpr std::size_t vsock_config_guest_cid_offset = 0;
using vsock_config_bytes = std::array<std::byte, vsock_config_size>;
vsock_config_bytes encode_config(std::uint64_t guest_cid);
// Copies config bytes [offset, offset + out.size()) for a config read
// (vhost-user GET_CONFIG); fails when that range is outside the config.
result<void> read_config(std::uint64_t guest_cid, std::uint32_t offset, std::span<std::byte> out);

}  // namespace hvsock::virtio
