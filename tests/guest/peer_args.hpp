// The command-line words the guest test peers (echo_peer, seqpacket_peer)
// share: a number, a SERVICE (a vsock port number or a service GUID) and a
// VMID (parent, loopback, ... or a VmId GUID).
#pragma once

#include <charconv>
#include <cstdint>
#include <optional>
#include <string_view>

#include <hvsock/hvsock.hpp>

namespace peer_args {

inline std::optional<std::uint64_t> number(std::string_view text) {
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return v;
}

inline std::optional<hvsock::service_id> parse_service(std::string_view text) {
  if (auto port = number(text); port && *port <= 0xffffffffu)
    return hvsock::service_id_from_port(static_cast<std::uint32_t>(*port));
  if (auto g = hvsock::guid::parse(text)) return *g;
  return std::nullopt;
}

inline std::optional<hvsock::vm_id> parse_vm(std::string_view text) {
  if (auto word = hvsock::vm_id_from_word(text)) return word;
  if (auto g = hvsock::guid::parse(text)) return *g;
  return std::nullopt;
}

}  // namespace peer_args
