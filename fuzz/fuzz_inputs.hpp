// fuzz_inputs: how the fuzzers in fuzz/ read their input bytes, shared with
// fuzz_seeds (which writes each target's seed corpus with the real encoders,
// so the seeds follow the wire formats when they change).
//
// Every format here is a thin framing around the real wire bytes: the
// fuzzer decides which connection, fds or destination a piece of input
// goes to; the bytes themselves reach the code under test unchanged.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include <hvsock/service_id.hpp>
#include <hvsock/vm_id.hpp>

namespace hvsock::fuzz {

inline void append(std::vector<std::byte>& out, std::span<const std::byte> bytes) {
  out.insert(out.end(), bytes.begin(), bytes.end());
}

// --- control_message_fuzzer -------------------------------------------------
// The input is a list of records, each one thing a client of hvsockd's
// control sockets does. A record starts with an op byte:
//   bits 0-1  the slot (one of four client connections)
//   bits 2-3  the partition whose control socket a closed slot connects to
//             when it is next used (0 host, 1 web, 2 box, 3 lone)
//   bits 4-6  the action (below)
//   bit 7     batch: the daemon does not run before the next record (so
//             messages pile up, as from a fast client)
// Send actions are followed by a u16 little-endian length and that many
// bytes (fewer if the input ends), sent as one SOCK_SEQPACKET message; a
// plain send of no bytes only connects the slot (a client that says
// nothing, which the daemon closes when its first-message timeout fires).
namespace control_input {

enum class action : std::uint8_t {
  send = 0,                   // the bytes alone
  send_unix_socket = 1,       // with an unconnected AF_UNIX stream socket attached
  send_pipe = 2,              // with the read end of a pipe attached
  send_two_sockets = 3,       // with two unconnected AF_UNIX stream sockets attached
  send_connected_socket = 4,  // with one end of a connected socketpair attached
  drain = 5,                  // read what the daemon sent the slot (closing received fds)
  close = 6,                  // close the slot's connection
  shutdown_write = 7,         // shutdown(SHUT_WR) on the slot's connection
};

inline constexpr std::uint8_t batch_bit = 0x80;
inline constexpr std::size_t slot_count = 4;

inline bool carries_bytes(action a) { return static_cast<std::uint8_t>(a) <= 4; }

// The partitions the fuzzer's switch has. The QEMU VM has no control
// socket; connects into it are answered by its (detached) vsock device.
inline constexpr std::string_view partition_names[4] = {"host", "web", "box", "lone"};
inline constexpr vm_id host_id = guid_literal("0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0");
inline constexpr vm_id web_id = guid_literal("11111111-2222-4333-8444-555555555555");    // VM
inline constexpr vm_id box_id = guid_literal("22222222-3333-4444-8555-666666666666");    // in web
inline constexpr vm_id lone_id = guid_literal("33333333-4444-4555-8666-777777777777");   // on host
inline constexpr vm_id guest_id = guid_literal("44444444-5555-4666-8777-888888888888");  // QEMU VM

// Registered services: "echo" (vsock port 5000), "off" (5001, disabled),
// "partly" (5002, disabled for web), "named" (not a vsock port).
inline constexpr std::uint32_t echo_port = 5000;
inline constexpr std::uint32_t off_port = 5001;
inline constexpr std::uint32_t partly_port = 5002;
inline constexpr service_id named_service = guid_literal("1f4e3b2a-5c6d-4e7f-8091-a2b3c4d5e6f7");

inline std::uint8_t op(action a, std::size_t slot, std::size_t partition = 0, bool batch = false) {
  return static_cast<std::uint8_t>((slot & 3) | ((partition & 3) << 2) |
                                   (static_cast<std::uint8_t>(a) << 4) | (batch ? batch_bit : 0));
}

// Appends one record; `bytes` only for send actions.
inline void record(std::vector<std::byte>& out, std::uint8_t op_byte,
                   std::span<const std::byte> bytes = {}) {
  out.push_back(std::byte{op_byte});
  if (!carries_bytes(static_cast<action>((op_byte >> 4) & 7))) return;
  out.push_back(static_cast<std::byte>(bytes.size() & 0xff));
  out.push_back(static_cast<std::byte>((bytes.size() >> 8) & 0xff));
  append(out, bytes);
}

}  // namespace control_input

// --- vhost_user_message_fuzzer ----------------------------------------------
// Byte 0 is a set of flags, the rest the byte stream a front-end writes to
// the back-end's socket.
namespace vhost_input {

// Attach fds as a front-end does: a memfd for each SET_MEM_TABLE region and
// an eventfd for SET_VRING_KICK/CALL/ERR without the no-fd flag. Without it
// no message carries an fd. With it the stream is sent one message at a
// time (split by each header's size field), as the fds need.
inline constexpr std::uint8_t attach_fds = 0x01;
// How the stream is written without attach_fds: bits 1-2 pick pieces of
// everything at once, 3, 13 or 100 bytes (partial messages).
inline constexpr unsigned piece_shift = 1;
inline constexpr std::size_t piece_sizes[4] = {0, 3, 13, 100};
// The device refuses to start rings (a hook failure ends the session).
inline constexpr std::uint8_t device_refuses = 0x08;

// The guest RAM behind every SET_MEM_TABLE region: one memfd of this size.
inline constexpr std::size_t ram_size = 1 << 20;

}  // namespace vhost_input

// --- agent_frame_fuzzer -----------------------------------------------------
// Byte 0 picks where a PUT's tree goes (its destination is the user's
// trusted path, so the fuzzer chooses it among these, all inside a fresh
// directory; the PUT's own destination is decoded and then replaced), the
// rest is the byte stream a client sends the agent: HELLO, a request, and
// what follows it.
namespace agent_input {

// Relative to the fresh directory's "inside": what a user could type.
inline constexpr std::string_view destinations[8] = {
    "",            // the existing directory itself: the tree goes in under its source name
    "new",         // does not exist: the top entry takes this name
    "new/",        // does not exist, must become a directory
    "sub",         // an existing directory with a file "old" in it
    "file",        // an existing regular file
    "sub/deeper",  // does not exist, in an existing directory
    "sub/old",     // an existing file below
    "sub/",        // the existing directory, with a trailing slash
};

}  // namespace agent_input

}  // namespace hvsock::fuzz
