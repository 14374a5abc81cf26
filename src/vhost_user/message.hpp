// message: the vhost-user wire format (QEMU's docs/interop/vhost-user.rst),
// as the back-end sees it: a 12-byte header {request, flags, size}, a payload
// whose shape the request decides, and up to 8 file descriptors in the
// ancillary data of the same message.
//
// Everything here treats the front-end as untrusted: the header is checked
// (version 1, no reply bit, no reserved bit, a request this back-end knows, a
// size no larger than the largest payload) before any payload byte is read,
// and a payload is accepted only at exactly the size its request implies,
// with exactly the fds its request allows. Received fds are owned by
// unique_fd from the moment recvmsg returns, so every error path closes them.
// Numbers are in the machine's byte order, as the protocol says.
//
// Thread safety: none; a message_reader belongs to one connection.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <hvsock/result.hpp>
#include <hvsock/unique_fd.hpp>

namespace hvsock::vhost_user {

// The front-end requests a vhost-user-vsock back-end handles.
enum class request : std::uint32_t {
  get_features = 1,
  set_features = 2,
  set_owner = 3,
  reset_owner = 4,
  set_mem_table = 5,
  set_vring_num = 8,
  set_vring_addr = 9,
  set_vring_base = 10,
  get_vring_base = 11,
  set_vring_kick = 12,
  set_vring_call = 13,
  set_vring_err = 14,
  get_protocol_features = 15,
  set_protocol_features = 16,
  get_queue_num = 17,
  set_vring_enable = 18,
  get_config = 24,
  set_config = 25,
  get_max_mem_slots = 36,
};

// "SET_MEM_TABLE", or "request 99" for a code this back-end does not know.
std::string request_name(std::uint32_t code);
inline std::string request_name(request r) { return request_name(static_cast<std::uint32_t>(r)); }

// Header flags: the low two bits are the version.
inline constexpr std::uint32_t version_mask = 0x3;
inline constexpr std::uint32_t version_1 = 0x1;
inline constexpr std::uint32_t flag_reply = 0x4;
inline constexpr std::uint32_t flag_need_reply = 0x8;

// Feature bits (virtio and vhost-user) and protocol feature bits.
inline constexpr unsigned feature_protocol_features = 30;  // VHOST_USER_F_PROTOCOL_FEATURES
inline constexpr unsigned feature_version_1 = 32;          // VIRTIO_F_VERSION_1
inline constexpr unsigned protocol_feature_mq = 0;
inline constexpr unsigned protocol_feature_reply_ack = 3;
inline constexpr unsigned protocol_feature_config = 9;

// SET_VRING_KICK/CALL/ERR: bits 0-7 are the ring, bit 8 says "no fd".
inline constexpr std::uint64_t vring_index_mask = 0xff;
inline constexpr std::uint64_t vring_invalid_fd_flag = 0x100;

inline constexpr std::size_t header_size = 12;
inline constexpr std::size_t max_fds = 8;
inline constexpr std::size_t max_regions = 8;        // VHOST_MEMORY_BASELINE_NREGIONS
inline constexpr std::size_t max_config_size = 256;  // VHOST_USER_MAX_CONFIG_SIZE
inline constexpr std::size_t memory_table_header_size = 8;
inline constexpr std::size_t memory_region_size = 32;
inline constexpr std::size_t config_header_size = 12;
inline constexpr std::size_t vring_state_size = 8;
inline constexpr std::size_t vring_addr_size = 40;
// The largest payload of any request handled here (GET/SET_CONFIG).
inline constexpr std::size_t max_payload_size = config_header_size + max_config_size;

struct header {
  std::uint32_t request = 0;
  std::uint32_t flags = 0;
  std::uint32_t size = 0;  // of the payload
};

struct vring_state {
  std::uint32_t index = 0;
  std::uint32_t num = 0;
};

struct vring_addr {
  std::uint32_t index = 0;
  std::uint32_t flags = 0;       // bit 0: VHOST_VRING_F_LOG
  std::uint64_t descriptor = 0;  // front-end virtual addresses
  std::uint64_t used = 0;
  std::uint64_t available = 0;
  std::uint64_t log = 0;  // guest-physical, for dirty logging
};

struct memory_region {
  std::uint64_t guest_phys_addr = 0;
  std::uint64_t memory_size = 0;
  std::uint64_t userspace_addr = 0;
  std::uint64_t mmap_offset = 0;
};

struct memory_table {
  std::vector<memory_region> regions;  // at most max_regions
};

struct config_space {
  std::uint32_t offset = 0;
  std::uint32_t size = 0;  // == payload.size()
  std::uint32_t flags = 0;
  std::vector<std::byte> payload;
};

using payload = std::variant<std::monostate, std::uint64_t, vring_state, vring_addr, memory_table,
                             config_space>;

struct message {
  request code{};
  std::uint32_t flags = 0;
  payload body;
  std::vector<unique_fd> fds;  // exactly as many as `code` allows for this body

  bool need_reply() const { return (flags & flag_need_reply) != 0; }
};

// Checks a request header: version 1, neither the reply bit nor any reserved
// bit set, a known request, size <= max_payload_size. errc::protocol_error.
result<header> decode_header(std::span<const std::byte> bytes);

// Builds the message for a header that passed decode_header, its payload
// bytes (exactly h.size of them) and the fds that came with it. Refuses a
// payload of the wrong size for the request, more regions than max_regions,
// a config access larger than max_config_size, reserved bits in a vring fd
// request, and an fd count the request does not allow. The fds are closed on
// failure.
result<message> decode_message(const header& h, std::span<const std::byte> payload_bytes,
                               std::vector<unique_fd> fds);

// The bytes of a message: header then payload. Used for the back-end's
// replies and, in tests, to play the front-end.
std::vector<std::byte> encode(std::uint32_t code, std::uint32_t flags, const payload& body);

// Reads messages from a non-blocking AF_UNIX stream socket, a piece at a
// time: the header first, so that the payload read stops exactly at the end
// of this message and never consumes the next one (or its fds).
class message_reader {
 public:
  struct outcome {
    enum class kind { message, would_block, closed } what = kind::would_block;
    message msg;  // when what == message
  };

  // Reads until one message is complete, the socket has nothing more
  // (would_block) or the peer closed it cleanly between messages (closed).
  // A peer closing mid-message, a malformed header or payload, more than
  // max_fds fds, or a recvmsg error is a failure; the reader must not be used
  // after one.
  result<outcome> read(int socket);

  // True when part of a message has been read.
  bool partial() const { return have_ != 0 || !fds_.empty(); }

 private:
  std::array<std::byte, header_size + max_payload_size> buffer_{};
  std::size_t have_ = 0;
  header header_{};
  std::vector<unique_fd> fds_;
};

// Writes all of `bytes` without blocking or raising SIGPIPE. A peer that
// leaves the socket buffer full (EAGAIN) is an error: replies are tiny and a
// front-end waits for each one, so a full buffer means it stopped reading.
result<void> write_message(int socket, std::span<const std::byte> bytes);

}  // namespace hvsock::vhost_user
