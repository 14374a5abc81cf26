// The control protocol between libhvsock and hvsockd, spoken over a
// partition's control socket (AF_UNIX SOCK_SEQPACKET: one message per
// packet, fds attached with SCM_RIGHTS).
//
// One control connection does one job:
//   connect: client sends connect_request; daemon answers with a reply, and on
//            success attaches the client's end of the new stream. The client
//            then closes the control connection. A seqpacket connect gets
//            an AF_UNIX SOCK_SEQPACKET pair, and only a seqpacket listener
//            takes it (and the reverse).
//   connect a socket: client sends connect_socket_request with its own
//            unconnected AF_UNIX stream socket attached; on success the
//            daemon has connected that very socket (so the client's fd keeps
//            its identity: epoll registrations, flags) and the reply carries
//            no fd. The target may be given by vsock CID. Used by the preload
//            shim, whose application fds must stay the same file.
//   listen:  client sends bind_request; daemon answers with a reply. The
//            connection then *is* the listener: for each brokered connection
//            the daemon sends an incoming message with the listener's end of
//            the stream attached, and the client answers each with an
//            accepted message once it has taken it (so the daemon knows how
//            full the backlog is). Closing the connection unbinds.
//            A bind_request with backlog 0 only reserves the address (a
//            bound, not yet listening socket: connects to it are refused);
//            a later listen_request starts listening, or changes the backlog.
//   lookup:  client sends lookup_request with a name; the daemon answers with
//            a reply whose peer endpoint carries the answer and closes: a
//            service's GUID in peer.service; or a partition's VmId in
//            peer.vm and, in peer.service, how the switch names that
//            partition to the caller (LOOPBACK, PARENT, or its VmId). A
//            partition may also be named by its VmId in text form. Names are resolved as
//            the caller's partition sees them: a partition the caller may
//            not reach is refused with the router's reason. This is how
//            programs inside a partition use names without the management
//            socket, which is not reachable from there.
//
// Messages are fixed-size structs in host byte order (both ends are on one
// machine), each starting with a header whose magic, version and type are
// checked; anything of the wrong size or header is a protocol error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <hvsock/endpoint.hpp>
#include <hvsock/error.hpp>
#include <hvsock/socket_type.hpp>

namespace hvsock::detail::wire {

inline constexpr std::uint32_t magic = 0x4b535648;  // "HVSK"
// 2: connect, connect-socket and bind requests carry a socket type.
inline constexpr std::uint16_t version = 2;

enum class message_type : std::uint16_t {
  connect_request = 1,
  bind_request = 2,
  accepted = 3,
  reply = 4,
  incoming = 5,
  connect_socket_request = 6,
  listen_request = 7,
  lookup_request = 8,
};

struct header {
  std::uint32_t magic;
  std::uint16_t version;
  std::uint16_t type;
};

struct raw_endpoint {
  guid::bytes vm;
  guid::bytes service;
};

// The socket type field of connect, connect-socket and bind requests. Zero,
// what make() leaves, is a stream.
inline constexpr std::uint32_t socket_type_stream = 0;
inline constexpr std::uint32_t socket_type_seqpacket = 1;

constexpr std::uint32_t to_wire(socket_type type) {
  return type == socket_type::seqpacket ? socket_type_seqpacket : socket_type_stream;
}
// nullopt for a value no version of the protocol defines.
constexpr std::optional<socket_type> socket_type_from_wire(std::uint32_t value) {
  if (value == socket_type_stream) return socket_type::stream;
  if (value == socket_type_seqpacket) return socket_type::seqpacket;
  return std::nullopt;
}

struct connect_request {
  header head;
  raw_endpoint target;
  std::uint32_t socket_type;  // socket_type_stream or socket_type_seqpacket
};

// Flags of connect_socket_request.
inline constexpr std::uint32_t target_by_cid = 1;     // target_cid, not target.vm
inline constexpr std::uint32_t local_port_given = 2;  // the socket was bound to local_port

struct connect_socket_request {
  header head;
  raw_endpoint target;  // target.service always; target.vm unless target_by_cid
  std::uint32_t target_cid;
  std::uint32_t local_port;
  std::uint32_t flags;
  std::uint32_t socket_type;  // the attached socket's: stream or seqpacket
};

struct bind_request {
  header head;
  raw_endpoint local;
  std::uint32_t backlog;      // 0: reserve the address, listen later (listen_request)
  std::uint32_t socket_type;  // what it will accept: stream or seqpacket
};

struct listen_request {
  header head;
  std::uint32_t backlog;
};

struct accepted {
  header head;
};

enum class lookup_kind : std::uint32_t {
  service = 1,    // a registered service by its ElementName
  partition = 2,  // a partition by name or VmId, if the caller's partition may reach it
};

inline constexpr std::size_t max_lookup_name_length = 256;

struct lookup_request {
  header head;
  std::uint32_t kind;  // a lookup_kind
  std::uint16_t name_length;
  char name[max_lookup_name_length];
};

inline constexpr std::size_t max_reason_length = 480;

struct reply {
  header head;
  std::int32_t status;      // 0, or an hvsock::errc value
  raw_endpoint local;       // the caller's side as the switch sees it
  raw_endpoint peer;        // the other side (connect only)
  std::uint32_t local_cid;  // the vsock CIDs of the two partitions
  std::uint32_t peer_cid;
  std::uint16_t reason_length;
  char reason[max_reason_length];  // why it failed, for a person
};

struct incoming {
  header head;
  raw_endpoint local;       // the listener's side of the new connection
  raw_endpoint peer;        // the connecting side, as the listener's partition names it
  std::uint32_t local_cid;  // the vsock CIDs of the two partitions
  std::uint32_t peer_cid;
};

// The largest message either side sends; receivers use a buffer one byte
// larger and treat MSG_TRUNC as a protocol error.
inline constexpr std::size_t max_message_size = sizeof(reply);

raw_endpoint to_raw(const endpoint& ep);
endpoint from_raw(const raw_endpoint& raw);

template <class Message>
Message make(message_type type) {
  // Zero every byte, padding included: messages go over a socket as-is.
  Message m;
  std::memset(static_cast<void*>(&m), 0, sizeof m);
  m.head = header{magic, version, static_cast<std::uint16_t>(type)};
  return m;
}

reply make_reply(const failure& failure);
reply make_reply(const endpoint& local, const endpoint& peer, std::uint32_t local_cid = 0,
                 std::uint32_t peer_cid = 0);
std::string reply_reason(const reply& r);

// The type of a well-formed header, or nullopt (bad size, magic or version).
std::optional<message_type> peek_type(std::span<const std::byte> data);

// Decodes `data` as `Message` of `type`: exact size and header checked.
template <class Message>
std::optional<Message> decode(std::span<const std::byte> data, message_type type);

template <class Message>
std::span<const std::byte> as_bytes(const Message& m) {
  return {reinterpret_cast<const std::byte*>(&m), sizeof m};
}

}  // namespace hvsock::detail::wire
