#include "virtio/vsock_packet.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "virtio/guest_memory_guard.hpp"

namespace hvsock::virtio {
namespace {

// Explicit little-endian field access: the wire format is LE on every host.
template <class T>
void put_le(std::byte* p, T v) {
  for (std::size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
}

template <class T>
T get_le(const std::byte* p) {
  T v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(static_cast<T>(p[i]) << (8 * i));
  return v;
}

bool known_op(std::uint16_t op) {
  return op >= static_cast<std::uint16_t>(vsock_op::request) &&
         op <= static_cast<std::uint16_t>(vsock_op::credit_request);
}

// Copies [offset, offset + out.size()) of the concatenated buffers into out;
// returns the bytes copied (less when the buffers end first).
template <class Span>
std::size_t gather(const std::vector<Span>& buffers, std::size_t offset, std::span<std::byte> out) {
  std::size_t done = 0;
  for (const auto& b : buffers) {
    if (done == out.size()) break;
    if (offset >= b.size()) {
      offset -= b.size();
      continue;
    }
    const std::size_t n = std::min(b.size() - offset, out.size() - done);
    // A fault leaves the flag set for the device; the count stays honest
    // about the length, the bytes are garbage nobody will use.
    (void)guarded_copy(out.data() + done, b.data() + offset, n);
    done += n;
    offset = 0;
  }
  return done;
}

// Copies `in` into the concatenated buffers from `offset`; returns the bytes
// copied.
std::size_t scatter(const std::vector<std::span<std::byte>>& buffers, std::size_t offset,
                    std::span<const std::byte> in) {
  std::size_t done = 0;
  for (const auto& b : buffers) {
    if (done == in.size()) break;
    if (offset >= b.size()) {
      offset -= b.size();
      continue;
    }
    const std::size_t n = std::min(b.size() - offset, in.size() - done);
    (void)guarded_copy(b.data() + offset, in.data() + done, n);  // b is guest memory
    done += n;
    offset = 0;
  }
  return done;
}

// The sub-spans covering [offset, offset + length) of the concatenated buffers.
template <class Byte>
std::vector<std::span<Byte>> slice(const std::vector<std::span<std::byte>>& buffers,
                                   std::size_t offset, std::size_t length) {
  std::vector<std::span<Byte>> out;
  for (const auto& b : buffers) {
    if (length == 0) break;
    if (offset >= b.size()) {
      offset -= b.size();
      continue;
    }
    const std::size_t n = std::min(b.size() - offset, length);
    out.emplace_back(b.data() + offset, n);
    length -= n;
    offset = 0;
  }
  return out;
}

std::string describe(const virtio_vsock_hdr& h) {
  return std::to_string(h.src_cid) + ":" + std::to_string(h.src_port) + " -> " +
         std::to_string(h.dst_cid) + ":" + std::to_string(h.dst_port) + " type " +
         std::to_string(h.type) + " op " + std::to_string(h.op);
}

}  // namespace

vsock_header_bytes encode_header(const virtio_vsock_hdr& hdr) {
  vsock_header_bytes b{};
  put_le<std::uint64_t>(b.data() + 0, hdr.src_cid);
  put_le<std::uint64_t>(b.data() + 8, hdr.dst_cid);
  put_le<std::uint32_t>(b.data() + 16, hdr.src_port);
  put_le<std::uint32_t>(b.data() + 20, hdr.dst_port);
  put_le<std::uint32_t>(b.data() + 24, hdr.len);
  put_le<std::uint16_t>(b.data() + 28, hdr.type);
  put_le<std::uint16_t>(b.data() + 30, hdr.op);
  put_le<std::uint32_t>(b.data() + 32, hdr.flags);
  put_le<std::uint32_t>(b.data() + 36, hdr.buf_alloc);
  put_le<std::uint32_t>(b.data() + 40, hdr.fwd_cnt);
  return b;
}

virtio_vsock_hdr decode_header(std::span<const std::byte, vsock_header_size> b) {
  virtio_vsock_hdr h;
  h.src_cid = get_le<std::uint64_t>(b.data() + 0);
  h.dst_cid = get_le<std::uint64_t>(b.data() + 8);
  h.src_port = get_le<std::uint32_t>(b.data() + 16);
  h.dst_port = get_le<std::uint32_t>(b.data() + 20);
  h.len = get_le<std::uint32_t>(b.data() + 24);
  h.type = get_le<std::uint16_t>(b.data() + 28);
  h.op = get_le<std::uint16_t>(b.data() + 30);
  h.flags = get_le<std::uint32_t>(b.data() + 32);
  h.buf_alloc = get_le<std::uint32_t>(b.data() + 36);
  h.fwd_cnt = get_le<std::uint32_t>(b.data() + 40);
  return h;
}

void parsed_packet::copy_payload(std::span<std::byte> out) const {
  std::size_t done = 0;
  for (const auto& b : payload) {
    const std::size_t n = std::min(b.size(), out.size() - done);
    (void)guarded_copy(out.data() + done, b.data(), n);  // b is guest memory
    done += n;
  }
}

parsed_packet parse_packet(const descriptor_chain& chain, std::size_t max_payload) {
  parsed_packet p;
  vsock_header_bytes raw{};
  if (chain.readable_length < vsock_header_size ||
      gather(chain.readable, 0, raw) != vsock_header_size) {
    p.reason = "packet of " + std::to_string(chain.readable_length) +
               " readable bytes is shorter than the 44-byte header";
    return p;
  }
  p.header = decode_header(raw);
  const virtio_vsock_hdr& h = p.header;
  // The header's len must describe exactly what follows it: a mismatch means
  // the driver and device disagree on framing, and nothing in it is usable.
  const std::uint64_t carried = chain.readable_length - vsock_header_size;
  if (h.len != carried) {
    p.reason = describe(h) + ": header says " + std::to_string(h.len) + " payload bytes, " +
               std::to_string(carried) + " follow it";
    return p;
  }
  if (h.len > max_payload) {
    p.reason = describe(h) + ": payload of " + std::to_string(h.len) + " bytes exceeds " +
               std::to_string(max_payload);
    return p;
  }
  const bool is_rst = h.op == static_cast<std::uint16_t>(vsock_op::rst);
  if (h.type != static_cast<std::uint16_t>(vsock_type::stream) &&
      h.type != static_cast<std::uint16_t>(vsock_type::seqpacket)) {
    p.status = is_rst ? packet_status::ignore : packet_status::reply_rst;
    p.reason = describe(h) + ": unsupported socket type";
    return p;
  }
  if (!known_op(h.op)) {
    p.status = packet_status::reply_rst;
    p.reason = describe(h) + ": unknown operation";
    return p;
  }
  if (h.len != 0 && h.op != static_cast<std::uint16_t>(vsock_op::rw)) {
    p.reason = describe(h) + ": only RW packets carry a payload, this one has " +
               std::to_string(h.len) + " bytes";
    return p;
  }
  p.payload = slice<const std::byte>(chain.readable, vsock_header_size, h.len);
  p.status = packet_status::ok;
  return p;
}

virtio_vsock_hdr make_rst_reply(const virtio_vsock_hdr& to) {
  virtio_vsock_hdr r;
  r.src_cid = to.dst_cid;
  r.dst_cid = to.src_cid;
  r.src_port = to.dst_port;
  r.dst_port = to.src_port;
  r.type = to.type;
  r.op = static_cast<std::uint16_t>(vsock_op::rst);
  return r;
}

std::size_t payload_capacity(const descriptor_chain& chain) {
  return chain.writable_length < vsock_header_size ? 0 : chain.writable_length - vsock_header_size;
}

std::vector<std::span<std::byte>> payload_buffers(const descriptor_chain& chain, std::size_t max) {
  return slice<std::byte>(chain.writable, vsock_header_size,
                          std::min(max, payload_capacity(chain)));
}

result<std::uint32_t> write_header(const descriptor_chain& chain, const virtio_vsock_hdr& hdr) {
  if (chain.writable_length < vsock_header_size || hdr.len > payload_capacity(chain) ||
      hdr.len > UINT32_MAX - vsock_header_size)
    return failure(errc::invalid_argument, "vsock packet " + describe(hdr) + " with " +
                                               std::to_string(hdr.len) +
                                               " payload bytes does not fit a receive buffer of " +
                                               std::to_string(chain.writable_length) + " bytes");
  const auto bytes = encode_header(hdr);
  scatter(chain.writable, 0, bytes);
  return static_cast<std::uint32_t>(vsock_header_size + hdr.len);
}

result<std::uint32_t> write_packet(const descriptor_chain& chain, virtio_vsock_hdr hdr,
                                   std::span<const std::byte> payload) {
  if (payload.size() > payload_capacity(chain) || chain.writable_length < vsock_header_size)
    return failure(errc::invalid_argument, "vsock packet " + describe(hdr) + " with " +
                                               std::to_string(payload.size()) +
                                               " payload bytes does not fit a receive buffer of " +
                                               std::to_string(chain.writable_length) + " bytes");
  hdr.len = static_cast<std::uint32_t>(payload.size());
  scatter(chain.writable, vsock_header_size, payload);
  return write_header(chain, hdr);
}

vsock_config_bytes encode_config(std::uint64_t guest_cid) {
  vsock_config_bytes b{};
  put_le<std::uint64_t>(b.data() + vsock_config_guest_cid_offset, guest_cid);
  return b;
}

result<void> read_config(std::uint64_t guest_cid, std::uint32_t offset, std::span<std::byte> out) {
  if (offset > vsock_config_size || out.size() > vsock_config_size - offset)
    return failure(errc::invalid_argument, "vsock config: read of " + std::to_string(out.size()) +
                                               " bytes at offset " + std::to_string(offset) +
                                               " is outside its " +
                                               std::to_string(vsock_config_size) + " bytes");
  const auto bytes = encode_config(guest_cid);
  std::memcpy(out.data(), bytes.data() + offset, out.size());
  return {};
}

}  // namespace hvsock::virtio
