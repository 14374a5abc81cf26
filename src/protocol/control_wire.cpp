#include "protocol/control_wire.hpp"

#include <algorithm>
#include <cstring>

namespace hvsock::detail::wire {

raw_endpoint to_raw(const endpoint& ep) {
  return raw_endpoint{ep.vm.to_windows_bytes(), ep.service.to_windows_bytes()};
}

endpoint from_raw(const raw_endpoint& raw) {
  return endpoint{guid::from_windows_bytes(raw.vm), guid::from_windows_bytes(raw.service)};
}

reply make_reply(const failure& failure) {
  auto r = make<reply>(message_type::reply);
  r.status = failure.code().category() == hvsock_category()
                 ? failure.code().value()
                 : static_cast<std::int32_t>(errc::protocol_error);
  const std::string& text = failure.message();
  const std::size_t n = std::min(text.size(), max_reason_length);
  std::memcpy(r.reason, text.data(), n);
  r.reason_length = static_cast<std::uint16_t>(n);
  return r;
}

reply make_reply(const endpoint& local, const endpoint& peer, std::uint32_t local_cid,
                 std::uint32_t peer_cid) {
  auto r = make<reply>(message_type::reply);
  r.status = 0;
  r.local = to_raw(local);
  r.peer = to_raw(peer);
  r.local_cid = local_cid;
  r.peer_cid = peer_cid;
  return r;
}

std::string reply_reason(const reply& r) {
  return std::string(r.reason, std::min<std::size_t>(r.reason_length, max_reason_length));
}

std::optional<message_type> peek_type(std::span<const std::byte> data) {
  if (data.size() < sizeof(header)) return std::nullopt;
  header h;
  std::memcpy(&h, data.data(), sizeof h);
  if (h.magic != magic || h.version != version) return std::nullopt;
  switch (static_cast<message_type>(h.type)) {
    case message_type::connect_request:
    case message_type::bind_request:
    case message_type::accepted:
    case message_type::reply:
    case message_type::incoming:
    case message_type::connect_socket_request:
    case message_type::listen_request:
    case message_type::lookup_request: return static_cast<message_type>(h.type);
  }
  return std::nullopt;
}

template <class Message>
std::optional<Message> decode(std::span<const std::byte> data, message_type type) {
  if (data.size() != sizeof(Message) || peek_type(data) != type) return std::nullopt;
  Message m;
  std::memcpy(&m, data.data(), sizeof m);
  return m;
}

template std::optional<connect_request> decode(std::span<const std::byte>, message_type);
template std::optional<bind_request> decode(std::span<const std::byte>, message_type);
template std::optional<accepted> decode(std::span<const std::byte>, message_type);
template std::optional<reply> decode(std::span<const std::byte>, message_type);
template std::optional<incoming> decode(std::span<const std::byte>, message_type);
template std::optional<connect_socket_request> decode(std::span<const std::byte>, message_type);
template std::optional<listen_request> decode(std::span<const std::byte>, message_type);
template std::optional<lookup_request> decode(std::span<const std::byte>, message_type);

}  // namespace hvsock::detail::wire
